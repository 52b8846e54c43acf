"""Generation benchmark on the embedded model: load times; plain vs rule-prompted vs fully
personalized (rules + the user's adapter at strength 1, guard on unless --no-guard) tokens/s
and time to first token at batch 1, with how often the guard fired; and 8 different users
(at their default strengths) in one batch vs the same 8 served one after another.

Run: .venv/bin/python benchmarks/bench_generate.py [--tokens 64] [--rounds 3] [--no-guard]
Prints a table, then one JSON line. The kinds of request alternate within one run, so
their ratios are robust to machine noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

PROMPTS = [
    "Explain what a black hole is.",
    "Give me tips to sleep better.",
    "Write a short note to my manager asking for Friday off.",
    "Why do leaves change color in autumn?",
]
RULES = [
    ("Answer in one sentence.", None),
    ("Use plain words, no jargon.", None),
    ("Keep emails to my manager under 100 words.", "emails and notes to my manager"),
]
LOAD_SNIPPET = (
    "import json, time; t = time.perf_counter();"
    "from persona_sdk.decoding.models import load_model;"
    "h = load_model(shared=False, progress=False);"
    "print(json.dumps({'load_s': h.load_seconds, 'converted': h.converted,"
    " 'process_s': time.perf_counter() - t}))"
)


def measure_loads(cache_dir: str) -> tuple[dict, dict]:
    """Cold (GGUF conversion) and warm (cached) loads, each in a fresh process."""
    env = {**os.environ, "PERSONA_CACHE": cache_dir}
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", LOAD_SNIPPET],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    assert runs[0]["converted"] and not runs[1]["converted"]
    return runs[0], runs[1]


PAIRS = [
    ("Write a note to my team about Friday", "Team: Friday is off. Enjoy!",
     "Dear team,\n\nI am writing to let you know that the office will be closed on Friday."),
    ("How do I boil an egg?", "1. Boil water.\n2. Add the egg.\n3. Wait 9 minutes.",
     "Boiling an egg is a simple process that many people enjoy in the morning."),
    ("Why is the sky blue?", "Air scatters blue light more than red light.",
     "Great question! The sky looks blue because of a fascinating effect called scattering."),
]  # fmt: skip
KINDS = {  # kind -> (user, strength)
    "plain": ("plain", 0.0),
    "rule_prompted": ("ruled", 0.0),
    "personalized": ("ruled", 1.0),
}


def one_request(persona, kind: str, prompt: str, max_new_tokens: int) -> dict:
    user, strength = KINDS[kind]
    reply = persona.generate(user, prompt, strength=strength, max_new_tokens=max_new_tokens)
    rate = reply.tokens / (reply.timings["generate"] / 1000)
    guard = reply.guard or {}
    return {
        "rate": rate,
        "tokens": reply.tokens,
        "ttft_ms": reply.timings["ttft"],
        "capped": guard.get("capped_tokens", 0),
        "tripped": bool(guard.get("tripped")),
    }


def eight_users(persona, max_new_tokens: int) -> tuple[float, float]:
    """Aggregate tokens/s for 8 users' requests batched, and served one after another."""
    requests = [(f"user{i}", PROMPTS[i % len(PROMPTS)]) for i in range(8)]
    start = time.perf_counter()
    batch = persona.generate_batch(requests, max_new_tokens=max_new_tokens)
    batched = sum(r.tokens for r in batch) / (time.perf_counter() - start)
    start = time.perf_counter()
    replies = [persona.generate(u, p, max_new_tokens=max_new_tokens) for u, p in requests]
    sequential = sum(r.tokens for r in replies) / (time.perf_counter() - start)
    return batched, sequential


def measure_requests(generation, rounds: int, tokens: int) -> dict:
    """Plain, rule-prompted and personalized requests alternating, then eight users
    batched against the same eight served one after another."""
    from persona_sdk import Persona

    with tempfile.TemporaryDirectory() as data:
        persona = Persona.open(data, generation=generation)
        for text, context in RULES:
            persona.user("ruled").add_rule(text, context=context)
        persona.user("ruled").add_pairs(PAIRS)
        for i in range(8):  # each flips a different subset of the pairs: eight adapters
            flipped = [(p, b, a) if i >> k & 1 else (p, a, b) for k, (p, a, b) in enumerate(PAIRS)]
            persona.user(f"user{i}").add_pairs(flipped)
        one_request(persona, "personalized", PROMPTS[0], 8)  # warm-up (loads the adapters)
        runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        for _ in range(rounds):
            for prompt in PROMPTS:  # alternate, so drift hits every kind alike
                for kind in KINDS:
                    runs[kind].append(one_request(persona, kind, prompt, tokens))
        batched, sequential = eight_users(persona, tokens)
        persona.close()

    rate = {kind: statistics.median(r["rate"] for r in rows) for kind, rows in runs.items()}
    ttft = {kind: statistics.median(r["ttft_ms"] for r in rows) for kind, rows in runs.items()}
    return {
        "plain_tok_s": rate["plain"],
        "rule_prompted_tok_s": rate["rule_prompted"],
        "personalized_tok_s": rate["personalized"],
        "rule_prompted_over_plain": rate["rule_prompted"] / rate["plain"],
        "personalized_over_plain": rate["personalized"] / rate["plain"],
        "ttft_ms_plain": ttft["plain"],
        "ttft_ms_personalized": ttft["personalized"],
        "batch8_users_tok_s": batched,
        "sequential8_users_tok_s": sequential,
        "batch8_over_sequential": batched / sequential,
        "personalized_capped_tokens": sum(r["capped"] for r in runs["personalized"]),
        "personalized_trips": sum(r["tripped"] for r in runs["personalized"]),
        "requests_per_kind": len(runs["plain"]),
        "tokens_per_kind": {kind: sum(r["tokens"] for r in rows) for kind, rows in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per reply")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the prompts")
    parser.add_argument("--skip-cold", action="store_true", help="skip the conversion timing")
    parser.add_argument("--no-guard", action="store_true", help="turn the decode guard off")
    args = parser.parse_args()

    from persona_sdk.config import GenerationConfig, GuardConfig

    generation = GenerationConfig(guard=GuardConfig(enabled=not args.no_guard))
    results: dict = {"model": "smollm2-135m-instruct", "device": "cpu", "guard": not args.no_guard}
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as cache:
            cold, warm = measure_loads(cache)
        results |= {
            "cold_load_s": cold["load_s"],
            "warm_load_s": warm["load_s"],
            "warm_load_process_s": warm["process_s"],
        }

    results |= measure_requests(generation, args.rounds, args.tokens)
    table = Table(title="bench_generate (embedded SmolLM2-135M, CPU)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
