"""How best-of-N's sampling settings trade the user's utility against fluency.

Run: .venv/bin/python benchmarks/best_of_sampling.py [--users 8] [--prompts 10]

``persona eval generation``'s design (unseen simulated users with rules and 16 picks,
held-out prompts, the embedded model) restricted to the base, rules only and the full
pipeline (rules + guidance at strength 1 + best-of-4), once per sampling setting of the
best-of candidates (``GenerationConfig.best_of_temperature`` and ``best_of_top_p``). The same
users, prompts and seeds every time, so the settings compare paired. Per setting: the full
pipeline's quality-adjusted utility, its paired gain over rules only, the base model's NLL
per token after the plain prompt and after the prompt the reply was written from,
relevance and degenerate rate. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "0.8:1.0,0.6:1.0,0.8:0.9"  # temperature:top_p (0.8:0.9 ships)


def parse_settings(text: str) -> list[tuple[float, float]]:
    pairs = [item.split(":") for item in text.split(",") if item.strip()]
    return [(float(t), float(p)) for t, p in pairs]


def measure(persona, config, temperature: float, top_p: float) -> dict:
    """One setting: the full pipeline against base and rules only."""
    from persona_sdk.evals.generation import FULL_PIPELINE, run_generation_eval

    persona.generation_config.best_of_temperature = temperature
    persona.generation_config.best_of_top_p = top_p
    result = run_generation_eval(persona, config, methods=[])
    by = {m["method"]: m for m in result.methods}
    full, base = by[FULL_PIPELINE], by["base"]
    gain = result.gains["rules only"]
    return {
        "temperature": temperature,
        "top_p": top_p,
        "full_adjusted": full["quality_adjusted"]["mean"],
        "full_adjusted_ci95": full["quality_adjusted"]["ci95"],
        "rules_only_adjusted": by["rules only"]["quality_adjusted"]["mean"],
        "gain_over_rules_only": gain["mean"],
        "gain_over_rules_only_ci95": gain["ci95"],
        "nll_delta": full["quality"]["nll_per_token"] - base["quality"]["nll_per_token"],
        "nll_as_prompted_delta": full["quality"]["nll_per_token_as_prompted"]
        - base["quality"]["nll_per_token"],
        "relevance_delta": full["quality"]["relevance"] - base["quality"]["relevance"],
        "degenerate_rate": full["quality"]["degenerate_rate"],
    }


def show(rows: list[dict]) -> None:
    table = Table(title="best-of-4 sampling: utility against fluency (full pipeline)")
    columns = ("temperature", "top_p", "adjusted utility", "gain over rules only", "NLL − base",
               "NLL as prompted − base", "relevance − base", "degenerate")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            f"{r['temperature']:.2f}", f"{r['top_p']:.2f}",
            f"{r['full_adjusted']:.4f} ± {r['full_adjusted_ci95']:.4f}",
            f"{r['gain_over_rules_only']:+.4f} ± {r['gain_over_rules_only_ci95']:.4f}",
            f"{r['nll_delta']:+.3f}", f"{r['nll_as_prompted_delta']:+.3f}",
            f"{r['relevance_delta']:+.3f}", f"{r['degenerate_rate']:.3f}",
        )  # fmt: skip
    Console(stderr=True, width=160).print(table)


def main() -> None:
    from persona_sdk import Persona
    from persona_sdk.evals.generation import GenerationEvalConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--settings", default=SETTINGS, help="temperature:top_p,...")
    args = parser.parse_args()
    config = GenerationEvalConfig(users=args.users, prompts=args.prompts,
                                  max_new_tokens=args.tokens, users_per_batch=8)  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Persona.open(tmp) as persona:
        for temperature, top_p in parse_settings(args.settings):
            rows.append(measure(persona, config, temperature, top_p))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    show(rows)
    print(json.dumps({"users": args.users, "prompts": args.prompts, "settings": rows}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
