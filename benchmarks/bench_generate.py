"""Generation benchmark on the embedded model: load times, plain vs rule-prompted tokens/s.

Run: .venv/bin/python benchmarks/bench_generate.py [--tokens 64] [--rounds 3]
Prints a table, then one JSON line. Plain and rule-prompted requests alternate within one
run, so their ratio is robust to machine noise.
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
    "from persona_sdk.models import load_model;"
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


def tokens_per_second(persona, user_id: str, prompt: str, max_new_tokens: int) -> tuple[float, int]:
    reply = persona.generate(user_id, prompt, max_new_tokens=max_new_tokens)
    return reply.tokens / (reply.timings["generate"] / 1000), reply.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per reply")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the prompts")
    parser.add_argument("--skip-cold", action="store_true", help="skip the conversion timing")
    args = parser.parse_args()

    from persona_sdk import Persona

    results: dict = {"model": "smollm2-135m-instruct", "device": "cpu"}
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as cache:
            cold, warm = measure_loads(cache)
        results |= {
            "cold_load_s": cold["load_s"],
            "warm_load_s": warm["load_s"],
            "warm_load_process_s": warm["process_s"],
        }

    with tempfile.TemporaryDirectory() as data:
        persona = Persona.open(data)
        for text, context in RULES:
            persona.user("ruled").add_rule(text, context=context)
        tokens_per_second(persona, "plain", PROMPTS[0], 8)  # warm-up
        plain, ruled, plain_tokens, ruled_tokens = [], [], 0, 0
        for _ in range(args.rounds):
            for prompt in PROMPTS:  # alternate, so drift hits both sides alike
                rate, n = tokens_per_second(persona, "plain", prompt, args.tokens)
                plain.append(rate)
                plain_tokens += n
                rate, n = tokens_per_second(persona, "ruled", prompt, args.tokens)
                ruled.append(rate)
                ruled_tokens += n
        start = time.perf_counter()
        batch = persona.generate_batch(
            [("ruled", p) for p in PROMPTS * 2], max_new_tokens=args.tokens
        )
        batch_rate = sum(r.tokens for r in batch) / (time.perf_counter() - start)
        persona.close()

    results |= {
        "plain_tok_s": statistics.median(plain),
        "rule_prompted_tok_s": statistics.median(ruled),
        "rule_prompted_over_plain": statistics.median(ruled) / statistics.median(plain),
        "batch8_rule_prompted_tok_s": batch_rate,
        "requests_per_side": len(plain),
        "tokens_plain": plain_tokens,
        "tokens_rule_prompted": ruled_tokens,
    }
    table = Table(title="bench_generate (embedded SmolLM2-135M, CPU)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
