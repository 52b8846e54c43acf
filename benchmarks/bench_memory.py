"""Memory benchmark: add throughput, retrieval latency by scale, many users, index rebuild.

Run: .venv/bin/python benchmarks/bench_memory.py [--quick] [--users 1000] [--per-user 1000]

Measures only the product's own paths, on the embedded all-MiniLM-L6-v2 (CPU), SQLite, FAISS:
1. ``user.add_rules`` in batches, embedding included, beside the embedding-only and write-only
   rates for the same texts, and the write rate into a user holding 1k / 10k / 100k memories.
2. One user at 1k, 10k, 100k memories: ``indexes.get(user).search`` and ``Retriever.retrieve``
   (no query embedding), p50/p99, and a fresh Retriever's first retrieve, which reads the
   user's global rules (``retrieve_cold_globals_ms``, as after any write). Rows go in through
   ``MemoryStore.add_memories`` with synthetic vectors: a few hundred real MiniLM embeddings
   plus Gaussian noise, renormalised; 10% global rules, 90% contextual.
3. The same across many users (default 1,000 x 1,000 memories), random (user, query) pairs.
4. Index save, load from disk and rebuild from SQLite, one user at each scale.
5. Query embedding latency (one query, MiniLM).

The 1-minute load average is recorded at start and end (a shared machine moves timings). All
data lives in a temporary directory deleted at the end, SIGTERM included (~4 GB at full scale;
the many-user test scales down when the disk is short). Prints a table, then one JSON line.
``--quick`` is a smoke run of well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from memory_harness import (  # benchmarks/ is on sys.path when run as a script
    GLOBAL_FRACTION,
    NOISE,
    Pools,
    close_persona,
    err,
    fmt,
    make_cached_embedder,
    pcts,
    probe_size,
    show,
    time_calls,
)
from memory_scale import bench_many_users, bench_scales
from memory_texts import (
    ASKS,
    DOCUMENTS,
    INSTRUCTIONS,
    TOPICS,
    distinct_by_meaning,
    rule_texts,
    shuffled,
)
from rich.console import Console
from rich.table import Table

SEED = 20261123

# -- parts 1 and 5 (2 to 4 are in memory_scale) ------------------------------------------


def bench_add(root: Path, embedder, texts: list[str], batch: int, table, results: dict) -> None:
    from persona_sdk import Persona

    n = len(texts)
    err.print(f"[bold]1. add throughput[/]: {n} distinct rules, fresh user, batches of {batch}")
    chunks = [(texts[i : i + batch],) for i in range(0, n, batch)]

    def e2e(name: str, emb):
        persona = Persona.open(root / name, embedder=emb)
        persona.user("warm").add_rules(texts[:8])  # warm-up: embedder, store, index
        took = time_calls(persona.user("bench").add_rules, chunks)
        stored = len(persona.user("bench").rules())
        close_persona(persona)
        return n / sum(took), [len(c) / s for (c,), s in zip(chunks, took)], stored

    embedder.encode(texts[:64])  # embedding only, the same texts and chunks
    embed_rate = n / sum(time_calls(embedder.encode, chunks))
    cache = make_cached_embedder(embedder, dict(zip(texts, embedder.encode(texts))))
    add_rate, rates, stored = e2e("add_e2e", embedder)
    write_rate, write_rates, write_stored = e2e("add_write", cache)
    assert write_stored == stored, (write_stored, stored)
    results |= {
        "add_memories": n,
        "add_batch": batch,
        "add_per_s": add_rate,
        "add_per_s_first_batch": rates[0],
        "add_per_s_last_batch": rates[-1],
        "add_stored_rules": stored,
        "embed_per_s": embed_rate,
        "write_only_per_s": write_rate,
        "write_only_per_s_first_batch": write_rates[0],
        "write_only_per_s_last_batch": write_rates[-1],
    }
    show(table, 1, results, [k for k in results if k.startswith(("add_", "embed_", "write_"))])


def bench_query_embed(embedder, texts: list[str], table, results: dict) -> None:
    for text in texts[:20]:
        embedder.encode_one(text)
    p50, p99 = pcts(time_calls(embedder.encode_one, [(t,) for t in texts[20:]]))
    results |= {"query_embed_p50_ms": p50, "query_embed_p99_ms": p99}
    results["query_embeds"] = len(texts) - 20
    show(table, 5, results, ["query_embed_p50_ms", "query_embed_p99_ms", "query_embeds"])


def git_state() -> str:
    """The commit measured, and whether product files differed from it."""

    def git(*cmd: str) -> str:
        here = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", *cmd], cwd=here, capture_output=True, text=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--", "persona_sdk", "memory").splitlines()
    except OSError:
        return "unknown"
    changed = sum(1 for line in dirty if line.strip())
    return f"{commit}+{changed} changed files" if changed else commit


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small smoke run (~1 min)")
    parser.add_argument("--tmpdir", default=None, help="where the temporary data goes")
    for flag, default, help_ in [
        ("--add", 2048, "memories for add throughput"),
        ("--batch", 128, "add_rules batch size"),
        ("--scales", "1000,10000,100000", "one-user sizes, comma-separated"),
        ("--queries", 1000, "queries per one-user scale"),
        ("--min-queries", 300, "floor when retrieve is slow"),
        ("--retrieve-budget-s", 120.0, "time cap per retrieve loop"),
        ("--users", 1000, "users in the many-user test"),
        ("--per-user", 1000, "memories per user there"),
        ("--multi-queries", 2000, "random (user, query)"),
        ("--query-embeds", 300, "queries to embed, timed"),
    ]:
        parser.add_argument(flag, type=type(default), default=default, help=help_)
    args = parser.parse_args()
    if args.quick:
        args.add, args.batch, args.scales, args.queries = 128, 64, "1000,3000", 200
        args.users, args.per_user, args.multi_queries = 30, 300, 200
        args.min_queries, args.retrieve_budget_s, args.query_embeds = 100, 5.0, 120
    args.scales = [int(s) for s in args.scales.split(",")]
    return args


@dataclass
class BenchTexts:
    """Distinct rule texts split by use, and the contexts and queries to embed."""

    add: list[str]  # part 1, through add_rules
    base: list[str]  # real embeddings the synthetic rows perturb
    probes: list[str]  # writes into a big user, with precomputed vectors
    contexts: list[str]
    queries: list[str]


def bench_texts(embedder, args: argparse.Namespace, n_base: int, rng: random.Random) -> BenchTexts:
    """Rules distinct in meaning too (consolidation would merge near-duplicates into one),
    contexts and queries, all drawn from ``rng``."""
    needed = args.add + n_base + sum(2 * probe_size(scale) for scale in args.scales)
    most = len(TOPICS) * len(INSTRUCTIONS)
    candidates = rule_texts(min(most, int(needed * 1.1) + 32), rng)
    all_texts = distinct_by_meaning(candidates, embedder.encode(candidates), needed)
    ctxs = [f"{doc} about {topic}" for doc, topic in shuffled(rng, DOCUMENTS, TOPICS)]
    combos = shuffled(rng, ASKS, DOCUMENTS, TOPICS)
    query_texts = [f"{ask} {doc} about {topic}?" for ask, doc, topic in combos]
    return BenchTexts(
        add=all_texts[: args.add],
        base=all_texts[args.add : args.add + n_base],
        probes=all_texts[args.add + n_base :],
        contexts=ctxs,
        queries=query_texts[: max(args.query_embeds, 20 + 200) + n_base],
    )


def environment(
    embedder, n_base: int, load_start: float, torch: ModuleType, faiss: ModuleType
) -> dict:
    """What the run measured on: the model, code, threads, load and how rows are made."""
    return {
        "embedder": embedder.identity,
        "device": str(embedder.model.device),
        "code": git_state(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "loadavg_1m_start": load_start,
        "synthetic_vectors": (
            f"one-user scales and many-user rows use {n_base} real MiniLM embeddings each of "
            f"rules, contexts and queries, perturbed with N(0, {NOISE}) noise and "
            f"renormalised; {GLOBAL_FRACTION:.0%} global rules, rest contextual; rows carry "
            "both BLOBs"
        ),
    }


def run_parts(
    embedder,
    args: argparse.Namespace,
    texts: BenchTexts,
    n_base: int,
    rng: np.random.Generator,
    table: Table,
    results: dict,
) -> None:
    """The five measurements, in a temporary data directory deleted at the end."""
    with tempfile.TemporaryDirectory(prefix="bench_memory_", dir=args.tmpdir) as tmp:
        root = Path(tmp)
        # 5 first: its texts also give the real query embeddings the synthetic ones perturb
        bench_query_embed(embedder, texts.queries[: args.query_embeds], table, results)
        pools = Pools(embedder, texts.base, texts.contexts[:n_base], texts.queries[-n_base:])
        probe_texts = dict(zip(texts.probes, embedder.encode(texts.probes)))
        bench_add(root, embedder, texts.add, args.batch, table, results)
        bench_scales(root, args, embedder, pools, probe_texts, rng, table, results)
        bench_many_users(root, args, embedder, pools, rng, table, results)
        err.print("cleaning up")


def finish(results: dict, began: float, torch: ModuleType, faiss: ModuleType, table: Table) -> None:
    """Add the end-of-run state and the targets to ``results`` and to the table."""
    results["runtime_s"] = time.perf_counter() - began
    results["loadavg_1m_end"] = os.getloadavg()[0]
    results["torch_threads_end"] = torch.get_num_threads()
    results["faiss_omp_threads_end"] = faiss.omp_get_max_threads()

    ten_k = results.get("search_p99_ms_10k")
    results["targets"] = {
        "add_per_s>=200": results["add_per_s"] >= 200,
        "search_p99_ms_10k<=2": None if ten_k is None else ten_k <= 2,
    }
    keys = ["runtime_s", "code", "cpu_count", "torch_threads", "torch_threads_end"]
    keys += ["faiss_omp_threads", "faiss_omp_threads_end", "loadavg_1m_start", "loadavg_1m_end"]
    table.add_section()
    for key in keys:
        table.add_row(key, fmt(results[key]))
    for key, ok in results["targets"].items():
        table.add_row(f"target {key}", {True: "met", False: "MISSED", None: "n/a"}[ok])


def main() -> None:
    args = parse_args()
    # A terminated run still deletes its temporary data (SIGTERM unwinds like Ctrl-C).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # persona_sdk before torch, as an app that starts with `from persona_sdk import Persona`
    # would: importing it sets FAISS's OpenMP threads before torch initialises its runtime.
    from persona_sdk.decoding.embedder import load_embedder

    random.seed(SEED)
    np.random.seed(SEED)
    import faiss
    import torch

    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    text_rng = random.Random(SEED)
    began = time.perf_counter()
    load_start = os.getloadavg()[0]

    err.print("loading MiniLM")
    embedder = load_embedder()
    n_base = 96 if args.quick else 320
    texts = bench_texts(embedder, args, n_base, text_rng)
    results = environment(embedder, n_base, load_start, torch, faiss)
    table = Table(title="bench_memory (embedded all-MiniLM-L6-v2, SQLite + FAISS, CPU)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    run_parts(embedder, args, texts, n_base, rng, table, results)
    finish(results, began, torch, faiss, table)
    Console().print(table)
    Console().print(f"[dim]{results['synthetic_vectors']}[/]")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
