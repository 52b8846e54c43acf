"""Issue 18's reproducer: the demo's user ana asks "Give me tips to sleep better." at her
default strength and at 0.5, 1 and 1.5 (greedy, one batch), with the decode guard on and
off, on the embedded model. Prints a table and a final JSON line.

Run: .venv/bin/python benchmarks/guard_reproducer.py [--tokens 80] [--guard-only]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from rich.console import Console
from rich.table import Table

from persona_sdk import Persona
from persona_sdk.cli.demo import add_demo_users
from persona_sdk.config import GenerationConfig, GuardConfig
from persona_sdk.quality import degenerate_reasons

PROMPT = "Give me tips to sleep better."
STRENGTHS = (None, 0.5, 1.0, 1.5)


def run(guard: GuardConfig, tokens: int) -> tuple[float, list[dict], float]:
    """ana's default strength, one row per strength, and the batch's seconds."""
    config = GenerationConfig(guard=guard)
    with tempfile.TemporaryDirectory() as folder, Persona.open(folder, generation=config) as p:
        add_demo_users(p)
        default = p.default_strength("ana")
        started = time.perf_counter()
        replies = p.generate_batch(
            [("ana", PROMPT)] * len(STRENGTHS), strength=list(STRENGTHS), max_new_tokens=tokens
        )
        seconds = time.perf_counter() - started
    rows = [
        {"requested": "default" if s is None else s, "applied": r.strength, "text": r.text,
         "reasons": degenerate_reasons(r.text, PROMPT), "guard": r.guard}
        for s, r in zip(STRENGTHS, replies)
    ]  # fmt: skip
    return default, rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=80)
    parser.add_argument("--guard-only", action="store_true", help="skip the guard-off run")
    args = parser.parse_args()
    settings = [("on", GuardConfig())]
    if not args.guard_only:
        settings.append(("off", GuardConfig(enabled=False)))
    table = Table("guard", "strength", "degenerate reasons", "tripped", "reply")
    results: dict = {}
    for label, guard in settings:
        default, rows, seconds = run(guard, args.tokens)
        results[label] = {"default_strength": default, "seconds": round(seconds, 1), "rows": rows}
        for row in rows:
            tripped = bool((row["guard"] or {}).get("tripped"))
            table.add_row(label, str(row["requested"]), ", ".join(row["reasons"]) or "-",
                          str(tripped), row["text"][:70].replace("\n", " / "))  # fmt: skip
    Console().print(table)
    broken = {k: sum(bool(r["reasons"]) for r in v["rows"]) for k, v in results.items()}
    print(json.dumps({"tokens": args.tokens, "degenerate_replies": broken, "results": results},
                     default=str))  # fmt: skip


if __name__ == "__main__":
    main()
