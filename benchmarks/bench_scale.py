"""Scale-out benchmark (issue 21), in one run on the embedded model:

- chat throughput of ``persona serve`` as Ray Serve replicas, with 1 and with 2 engine
  replicas on the same cores (1 replica × 2 torch threads against 2 × 1), the same users
  and requests in both;
- the warm-route hit rate: of a user's requests after their first, the share served by
  the replica that served their previous one (where their index and adapter are warm);
- store writes per second on SQLite and on PostgreSQL (a throwaway server with fsync on):
  one transaction per write, each one pair with its 384-d embedding, as ``add_pairs``
  stores it.

On a 2-core machine two replicas share the cores one replica had: the figure shows
routing, not speed-up. Run: .venv/bin/python benchmarks/bench_scale.py [--users 8]
[--rounds 3] [--tokens 24] [--writes 400]. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.postgres_server starts the throwaway PostgreSQL

PROMPTS = [
    "Give me tips to sleep better.",
    "Write a short note to my manager asking for Friday off.",
    "Why do leaves change color in autumn?",
    "Explain what a black hole is.",
]
RULES = ["Answer in one sentence.", "Use plain words, no jargon.", "Never use emojis."]
PAIRS = [
    ("How do I boil an egg?", "Boil it for 9 minutes.",
     "Boiling an egg is a simple process that many people enjoy in the morning."),
    ("Why is the sky blue?", "Air scatters blue light more than red light.",
     "Great question! The sky looks blue because of a fascinating effect called scattering."),
]  # fmt: skip


def store_writes(url: str | None, writes: int) -> float:
    """Writes per second of one-pair transactions, spread over 8 users."""
    from persona_sdk.memory.store import MemoryStore

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((writes, 384)).astype(np.float32)
    with tempfile.TemporaryDirectory() as data:
        store = MemoryStore(data, url=url)
        start = time.perf_counter()
        for i in range(writes):
            prompt, chosen, rejected = PAIRS[i % len(PAIRS)]
            row = {"kind": "pair", "prompt": f"{prompt} ({i})", "chosen": chosen,
                   "rejected": rejected, "embedding": vectors[i]}  # fmt: skip
            store.add_memories(f"writer{i % 8}", [row])
        rate = writes / (time.perf_counter() - start)
        store.close()
    return rate


def postgres_writes(writes: int) -> float | None:
    from tests.postgres_server import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    # A durable server, unlike the tests' (which turn fsync off for speed).
    server = PostgresServer(bin_dir, settings={"fsync": "on", "full_page_writes": "on"}).start()
    try:
        return store_writes(server.create_database("bench_scale"), writes)
    finally:
        server.stop()


def seed_users(data: str, users: int) -> list[str]:
    """Users with stated rules and a few picks (so they have evidence and an adapter)."""
    from persona_sdk import Persona

    names = [f"user{i}" for i in range(users)]
    with Persona.open(data) as persona:
        for i, name in enumerate(names):
            user = persona.user(name)
            user.add_rules(RULES[: 1 + i % len(RULES)])
            user.add_pairs(PAIRS if i % 2 else [(p, b, a) for p, a, b in PAIRS])
    return names


def chat_round(url: str, users: list[str], round_: int, tokens: int) -> list[tuple[str, str, int]]:
    """One request per user, all at once: (user, replica, completion tokens)."""
    import openai

    from persona_sdk.serving.cluster import REPLICA_HEADER

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)

    def one(i_user: tuple[int, str]) -> tuple[str, str, int]:
        i, user = i_user
        raw = client.chat.completions.with_raw_response.create(
            model="persona", user=user, max_tokens=tokens, temperature=0,
            messages=[{"role": "user", "content": PROMPTS[(i + round_) % len(PROMPTS)]}],
        )  # fmt: skip
        return user, raw.headers[REPLICA_HEADER], raw.parse().usage.completion_tokens

    with ThreadPoolExecutor(len(users)) as pool:
        return list(pool.map(one, enumerate(users)))


def hit_rate(served: list[tuple[str, str, int]]) -> float:
    """Share of each user's later requests served where their previous one was."""
    last: dict[str, str] = {}
    hits = total = 0
    for user, replica, _ in served:
        if user in last:
            total += 1
            hits += replica == last[user]
        last[user] = replica
    return hits / total if total else float("nan")


def replicas_run(data: str, users: list[str], replicas: int, rounds: int, tokens: int) -> dict:
    from ray import serve

    from persona_sdk.serving.cluster import run
    from persona_sdk.serving.engine import EngineConfig
    from persona_sdk.serving.launch import free_port
    from persona_sdk.serving.state import ServeConfig

    threads = max(1, 2 // replicas)  # the same two cores in both runs
    config = ServeConfig(no_auth=True, engine=EngineConfig(max_rows=16, torch_threads=threads))
    port = free_port()
    started = time.perf_counter()
    run(data, port=port, replicas=replicas, config=config, replica_cpus=threads)
    ready_s = time.perf_counter() - started
    url = f"http://127.0.0.1:{port}"
    try:
        warm = chat_round(url, users, -1, 4)  # every user gets a home, adapters load
        served, start = [], time.perf_counter()
        for round_ in range(rounds):
            served += chat_round(url, users, round_, tokens)
        seconds = time.perf_counter() - start
    finally:
        serve.shutdown()
    completion = sum(n for *_, n in served)
    return {
        "replicas": replicas,
        "ready_s": ready_s,
        "requests": len(served),
        "completion_tokens": completion,
        "tokens_per_s": completion / seconds,
        "requests_per_s": len(served) / seconds,
        "warm_route_hit_rate": hit_rate(warm + served),  # the warm-up's replica is home
        "replicas_used": len({r for _, r, _ in served}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--writes", type=int, default=400)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["PERSONA_STORE"] = ""  # the store each figure names, not the shell's
    import ray

    writes = {"sqlite": store_writes(None, args.writes), "postgresql": postgres_writes(args.writes)}
    with tempfile.TemporaryDirectory() as data:
        users = seed_users(data, args.users)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false",
                                           "PERSONA_STORE": ""}})  # fmt: skip
        try:
            runs = [replicas_run(data, users, n, args.rounds, args.tokens) for n in (1, 2)]
        finally:
            ray.shutdown()
    report(args, writes, runs)


def report(args: argparse.Namespace, writes: dict, runs: list[dict]) -> None:
    table = Table(title=f"scale-out: {args.users} users × {args.rounds} rounds, "
                        f"{args.tokens} tokens, embedded model, 2 cores")  # fmt: skip
    for column in ("replicas", "tokens/s", "requests/s", "warm-route hits", "replicas used",
                   "ready (s)"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(str(r["replicas"]), f"{r['tokens_per_s']:.1f}", f"{r['requests_per_s']:.2f}",
                      f"{r['warm_route_hit_rate']:.1%}", str(r["replicas_used"]),
                      f"{r['ready_s']:.0f}")  # fmt: skip
    console = Console()
    console.print(table)
    pg = writes["postgresql"]
    console.print(f"store writes/s: SQLite {writes['sqlite']:.0f}, PostgreSQL "
                  f"{'n/a (no server binaries)' if pg is None else f'{pg:.0f}'}")  # fmt: skip
    result = {
        "benchmark": "bench_scale",
        "config": vars(args),
        "runs": runs,
        "two_over_one_replica_tokens_per_s": runs[1]["tokens_per_s"] / runs[0]["tokens_per_s"],
        "store_writes_per_s": writes,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
