"""Serving benchmark: `persona serve` on the embedded model, driven over loopback by the
real async `openai` client.

1. Batching: aggregate completion tokens/s with 8 concurrent users ÷ 1 user alone, in one
   run (same server, same prompts; the phases alternate so machine noise hits both).
2. Load: N simulated users for S seconds mixing streamed chat (TTFT and latency) with
   feedback writes (rules and pairs); every acknowledged write is then read back.

Run: .venv/bin/python benchmarks/bench_serve.py [--users 16] [--seconds 60] [--tokens 48]
Traffic goes only to 127.0.0.1 and is bounded in time. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time

import httpx
import openai

from persona_sdk.serving.launch import spawn

PROMPTS = ["Explain what a black hole is.", "Give me tips to sleep better.",
           "Write a short note to my manager asking for Friday off.",
           "Why do leaves change color in autumn?"]  # fmt: skip
RULES = ["Answer in one sentence.", "Use plain words, no jargon.", "Use a bulleted list."]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


async def chat(client, user: str, tokens: int, stats: dict) -> None:
    """One streamed chat request: TTFT, latency, completion tokens."""
    started, first = time.perf_counter(), None
    stream = await client.chat.completions.create(
        model="persona", messages=[{"role": "user", "content": random.choice(PROMPTS)}],
        max_tokens=tokens, stream=True, stream_options={"include_usage": True},
        temperature=0.0, extra_body={"persona": {"user_id": user, "strength": 1.0}})  # fmt: skip
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            stats["tokens"] += chunk.usage.completion_tokens
    stats["latency"].append(time.perf_counter() - started)
    stats["ttft"].append(first if first is not None else time.perf_counter() - started)


async def feedback(http: httpx.AsyncClient, user: str, i: int, acked: list) -> None:
    """A rule or a pair write; acknowledged ones are remembered by memory id."""
    if i % 2:
        body = {"text": f"{random.choice(RULES)} (note {i})"}
        response = await http.post(f"/v1/users/{user}/rules", json=body)
    else:
        body = {
            "prompt": random.choice(PROMPTS),
            "chosen": f"Short answer {i}.",
            "rejected": f"A much longer and more winding answer, number {i}, that rambles.",
        }
        response = await http.post(f"/v1/users/{user}/pairs", json=body)
    response.raise_for_status()
    acked.extend((user, m["id"]) for m in response.json()["results"])


async def simulated_user(url: str, user: str, until: float, tokens: int, write_share: float,
                         stats: dict, acked: list) -> None:  # fmt: skip
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        i = 0
        while time.perf_counter() < until:
            i += 1
            try:
                if random.random() < write_share:
                    await feedback(http, user, i, acked)
                    stats["writes"] += 1
                else:
                    await chat(client, user, tokens, stats)
                    stats["chats"] += 1
            except Exception as exc:  # counted, not fatal: the run reports errors
                stats["errors"].append(type(exc).__name__)


def new_stats() -> dict:
    return {"tokens": 0, "latency": [], "ttft": [], "chats": 0, "writes": 0, "errors": []}


async def phase(url: str, users: int, seconds: float, tokens: int, write_share: float) -> dict:
    stats, acked = new_stats(), []
    until = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*[simulated_user(url, f"user{i}", until, tokens, write_share, stats,
                                          acked) for i in range(users)])  # fmt: skip
    stats["seconds"] = time.perf_counter() - started
    stats["acked"] = acked
    return stats


async def run(args) -> dict:
    data = tempfile.mkdtemp(prefix="bench-serve-")
    proc, url = spawn(data, [], ["--no-auth", "--threads", str(args.threads)])
    try:
        ratio_runs = []
        for _ in range(args.rounds):  # alternate 1 and 8 users so noise hits both
            one = await phase(url, 1, args.ratio_seconds, args.tokens, 0.0)
            eight = await phase(url, 8, args.ratio_seconds, args.tokens, 0.0)
            ratio_runs.append((one["tokens"] / one["seconds"], eight["tokens"] / eight["seconds"]))
        load = await phase(url, args.users, args.seconds, args.tokens, args.write_share)
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            stored = set()
            for user in {u for u, _ in load["acked"]}:
                rules = (await http.get(f"/v1/users/{user}/memories")).json()["results"]
                stored |= {(user, m["id"]) for m in rules}
        lost = len(set(load["acked"]) - stored)
    finally:
        proc.terminate()
        proc.wait(120)
    one_tps = statistics.mean(r[0] for r in ratio_runs)
    eight_tps = statistics.mean(r[1] for r in ratio_runs)
    return {
        "users": args.users, "seconds": round(load["seconds"], 1), "tokens": args.tokens,
        "chats": load["chats"], "writes": load["writes"], "errors": len(load["errors"]),
        "error_kinds": sorted(set(load["errors"])), "lost_writes": lost,
        "requests_per_s": round((load["chats"] + load["writes"]) / load["seconds"], 2),
        "tokens_per_s": round(load["tokens"] / load["seconds"], 1),
        "latency_p50_s": pct(load["latency"], 0.5), "latency_p99_s": pct(load["latency"], 0.99),
        "ttft_p50_s": pct(load["ttft"], 0.5), "ttft_p99_s": pct(load["ttft"], 0.99),
        "tokens_per_s_1_user": round(one_tps, 1), "tokens_per_s_8_users": round(eight_tps, 1),
        "ratio_8_over_1": round(eight_tps / one_tps, 2) if one_tps else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ratio-seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--write-share", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)  # best on a shared 2-core box
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
