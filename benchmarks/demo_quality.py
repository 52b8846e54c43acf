"""Quality guards for the demo's users on the embedded model: their replies at the default
(evidence-scaled) strength and at strength 1, beside the base model's (strength 0):
degenerate rate, base-model NLL per token and prompt relevance. Prints a table and a
final JSON line.

Run: .venv/bin/python benchmarks/demo_quality.py [--tokens 48]
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
from rich.console import Console
from rich.table import Table

from persona_sdk import Persona
from persona_sdk.cli.demo import DEMO_PROMPTS, DEMO_USERS, add_demo_users
from persona_sdk.quality import degenerate_reasons, relevance, score_replies

SETTINGS = (("base (strength 0)", 0.0), ("default strength", None), ("strength 1", 1.0))


def measure(persona: Persona, strength: float | None, tokens: int) -> dict:
    """Quality of every demo user's reply to every demo prompt at ``strength``."""
    requests = [(user, prompt) for prompt in DEMO_PROMPTS for user in DEMO_USERS]
    replies = persona.generate_batch(requests, strength=strength, max_new_tokens=tokens)
    prompts, texts = [p for _, p in requests], [r.text for r in replies]
    host = persona.host
    prompt_ids = [host.chat_ids([{"role": "user", "content": p}]) for p in prompts]
    reply_ids = [host.tokenizer.encode(t, add_special_tokens=False) for t in texts]
    return {
        "replies": len(replies),
        "degenerate_rate": float(
            np.mean([bool(degenerate_reasons(t, p)) for t, p in zip(texts, prompts)])
        ),
        "nll_per_token": float(-np.nanmean(score_replies(host.model, prompt_ids, reply_ids))),
        "relevance": float(relevance(persona.embedder.encode, prompts, texts).mean()),
        "strengths": sorted({round(r.strength, 3) for r in replies}),
        "guard_trips": sum(bool(r.guard and r.guard["tripped"]) for r in replies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Persona.open(folder) as persona:
        add_demo_users(persona)
        results = {label: measure(persona, s, args.tokens) for label, s in SETTINGS}
    table = Table("setting", "degenerate", "NLL/token", "relevance", "strengths", "trips")
    for label, r in results.items():
        figures = (r["degenerate_rate"], r["nll_per_token"], r["relevance"])
        cells = [f"{x:.3f}" for x in figures] + [str(r["strengths"]), str(r["guard_trips"])]
        table.add_row(label, *cells)
    Console().print(table)
    print(json.dumps({"tokens": args.tokens, "results": results}))


if __name__ == "__main__":
    main()
