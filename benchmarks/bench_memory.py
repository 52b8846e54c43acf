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
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from memory_texts import (  # benchmarks/ is on sys.path when run as a script
    ASKS,
    DOCUMENTS,
    INSTRUCTIONS,
    TOPICS,
    distinct_by_meaning,
    rule_texts,
    shuffled,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

SEED = 20261123
NOISE = 0.03  # per-dimension sigma: a perturbed vector keeps cosine ~0.85 with its base
QUERY_NOISE = 0.02
GLOBAL_FRACTION = 0.10
SEARCH_K = 32  # what Retriever asks FAISS for with the default top_k=5: max(4 * 5, 32)
ROW_BYTES = 2 * 384 * 4 + 400  # embedding + text_embedding BLOBs + text, context, timestamps

err = Console(stderr=True)

# -- helpers ------------------------------------------------------------------------------


def label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def pcts(samples_s: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    p50, p99 = np.percentile(np.asarray(samples_s) * 1000, [50, 99])
    return float(p50), float(p99)


def perturb(base: np.ndarray, picks: np.ndarray, rng: np.random.Generator, noise: float):
    vectors = base[picks] + rng.normal(0.0, noise, (len(picks), base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


class Pools:
    """Real MiniLM embeddings of rule texts, contexts and queries: bases for synthetic rows."""

    def __init__(self, embedder, texts: list[str], ctxs: list[str], query_texts: list[str]):
        self.texts, self.text_vecs = texts, embedder.encode(texts)
        self.ctxs, self.ctx_vecs = ctxs, embedder.encode(ctxs)
        self.query_vecs = embedder.encode(query_texts)

    def rows(self, count: int, rng: np.random.Generator) -> list[dict]:
        """Synthetic rules: 10% global (found by their text), 90% with a context."""
        is_global = rng.random(count) < GLOBAL_FRACTION
        t = rng.integers(len(self.texts), size=count)
        c = rng.integers(len(self.ctxs), size=count)
        text_vecs = perturb(self.text_vecs, t, rng, NOISE)
        ctx_vecs = perturb(self.ctx_vecs, c, rng, NOISE)
        return [
            {
                "kind": "rule",
                "text": self.texts[t[i]],
                "context": None if is_global[i] else self.ctxs[c[i]],
                "embedding": text_vecs[i] if is_global[i] else ctx_vecs[i],
                "text_embedding": text_vecs[i],
            }
            for i in range(count)
        ]

    def query_batch(self, count: int, rng: np.random.Generator) -> np.ndarray:
        picks = rng.integers(len(self.query_vecs), size=count)
        return perturb(self.query_vecs, picks, rng, QUERY_NOISE)


def progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=err, transient=True)


def make_cached_embedder(inner, table: dict[str, np.ndarray]):
    """An Embedder that looks vectors up instead of running MiniLM: isolates write cost."""
    from persona_sdk.decoding.embedder import Embedder

    class CachedEmbedder(Embedder):
        def __init__(self):  # the real one's state (same identity), no model call
            self.__dict__.update(inner.__dict__)
            self._lock = threading.Lock()

        def encode(self, texts, batch_size: int = 64):
            return np.stack([table[t] for t in texts]).astype(np.float32)

    return CachedEmbedder()


def close_persona(persona) -> None:
    """Close without writing every dirty index to disk (the data is deleted anyway)."""
    persona.store.close()
    persona.close()


def time_calls(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return out


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def show(table, part: int, results: dict, keys) -> None:
    table.add_section()
    for key in keys:
        table.add_row(f"{part}. {key}", fmt(results[key]))


def probe_size(scale: int) -> int:
    """Rules added through add_rules to a user of this size (fewer when each is slow)."""
    return max(8, min(64, 640_000 // scale))


# -- the five measurements ---------------------------------------------------------------


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


def bench_scales(root: Path, args, embedder, pools: Pools, probe_texts, rng, table, results):
    from persona_sdk import Persona
    from persona_sdk.memory.retrieval import Retriever

    probes = iter(probe_texts)
    persona = Persona.open(root / "single", embedder=make_cached_embedder(embedder, probe_texts))
    store, indexes = persona.store, persona.indexes
    retriever = Retriever(store, indexes, persona.retrieval_config)
    user, count = "one-user", 0
    for scale in args.scales:
        tag = label(scale)
        err.print(f"[bold]2. one user at {tag} memories[/]")
        with progress() as bar:
            task = bar.add_task(f"insert to {tag}", total=scale, completed=count)
            while count < scale:
                rows = pools.rows(min(10_000, scale - count), rng)
                store.add_memories(user, rows)
                count += len(rows)
                bar.update(task, completed=count)
        indexes.get(user)  # the first get after the bulk insert rebuilds from SQLite
        qs = pools.query_batch(args.queries + 50, rng)
        warm_q, timed_q = [(q,) for q in qs[:50]], [(q,) for q in qs[50:]]

        def search(q):
            return indexes.get(user).search(q, SEARCH_K)

        def retrieve(q):
            return retriever.retrieve(user, q)

        time_calls(search, warm_q)
        s = time_calls(search, timed_q)
        warm = np.mean(time_calls(retrieve, warm_q[:20]))
        n_retrieve = args.queries
        if warm * args.queries > args.retrieve_budget_s:  # slow: fewer queries, with a floor
            n_retrieve = min(
                args.queries, max(args.min_queries, int(args.retrieve_budget_s / warm))
            )
        r = time_calls(retrieve, timed_q[:n_retrieve])
        mean_rules = np.mean([len(retrieve(q)) for (q,) in timed_q[:50]])
        cold = []  # a fresh Retriever reads the global rules first, as after any write
        for (q,) in warm_q[:5]:
            fresh = Retriever(store, indexes, persona.retrieval_config)
            cold += time_calls(fresh.retrieve, [(user, q)])
        results[f"search_p50_ms_{tag}"], results[f"search_p99_ms_{tag}"] = pcts(s)
        results[f"retrieve_p50_ms_{tag}"], results[f"retrieve_p99_ms_{tag}"] = pcts(r)
        results[f"retrieve_queries_{tag}"] = n_retrieve
        results[f"retrieve_mean_rules_{tag}"] = float(mean_rules)
        results[f"retrieve_cold_globals_ms_{tag}"] = float(np.median(cold) * 1000)
        show(table, 2, results, [k for k in results if k.endswith(f"_{tag}")])

        # 4. save, load from disk and rebuild from SQLite
        reps = 3 if scale >= 50_000 else 5
        save_s = time_calls(indexes.flush, [()])[0]
        rebuilds = indexes.rebuilds
        loads = time_calls(indexes.refresh, [(user,)] * reps)
        assert indexes.rebuilds == rebuilds, "the index was rebuilt, not loaded"
        builds = []
        for _ in range(reps):
            for path in indexes.paths(user):
                path.unlink(missing_ok=True)
            builds += time_calls(indexes.refresh, [(user,)])
        assert indexes.rebuilds == rebuilds + reps, "the index was loaded, not rebuilt"
        indexes.flush()
        results[f"index_save_s_{tag}"] = save_s
        results[f"load_s_{tag}"] = float(np.median(loads))
        results[f"rebuild_s_{tag}"] = float(np.median(builds))
        show(table, 4, results, [f"index_save_s_{tag}", f"load_s_{tag}", f"rebuild_s_{tag}"])

        # 1. (continued) add_rules with precomputed vectors to a user this big: the first
        # batch reads the user's rules (as the first write after a restart or another
        # writer does), the next one reuses them
        n_probe = probe_size(scale)
        keys = [f"write_only_per_s_at_{tag}_first", f"write_only_per_s_at_{tag}_next"]
        for key in keys:
            batch = [next(probes) for _ in range(n_probe)]
            t = time.perf_counter()
            persona.user(user).add_rules(batch)
            results[key] = n_probe / (time.perf_counter() - t)
            count += n_probe
        indexes.get(user)
        show(table, 1, results, keys)
    close_persona(persona)


def bench_many_users(root: Path, args, embedder, pools: Pools, rng, table, results) -> None:
    from persona_sdk import Persona
    from persona_sdk.memory.retrieval import Retriever

    users, per_user = args.users, args.per_user
    free = shutil.disk_usage(root).free
    if free < max(5e9, users * per_user * ROW_BYTES * 1.5 + 1e9):
        fit = max(1, int(max(0.0, free - 1e9) / (per_user * ROW_BYTES * 1.5)))
        err.print(
            f"[bold red]only {free / 1e9:.1f} GB free at {root}: scaling the many-user test "
            f"down from {users} to {fit} users[/]"
        )
        users = min(users, fit)
    results |= {"multi_users": users, "multi_per_user": per_user}
    err.print(f"[bold]3. {users} users x {per_user} memories[/]")
    persona = Persona.open(root / "multi", embedder=embedder)
    store, indexes = persona.store, persona.indexes
    retriever = Retriever(store, indexes, persona.retrieval_config)
    ids = [f"user-{i:05d}" for i in range(users)]
    group = max(1, 50_000 // per_user)  # users per outer transaction
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("insert", total=users * per_user)
        for i in range(0, users, group):
            with store.transaction():  # add_memories joins it: one commit per group
                for user in ids[i : i + group]:
                    store.add_memories(user, pools.rows(per_user, rng))
                    bar.advance(task, per_user)
    insert_s = time.perf_counter() - start
    store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db_gb = store.path.stat().st_size / 1e9

    cold = []
    with progress() as bar:
        task = bar.add_task("first get per user (rebuild)", total=users)
        for user in ids:
            cold += time_calls(indexes.get, [(user,)])
            bar.advance(task)
    n = args.multi_queries
    picks = [ids[i] for i in rng.integers(users, size=n + 100)]
    pairs = list(zip(picks, pools.query_batch(n + 100, rng)))

    def search(user, q):
        return indexes.get(user).search(q, SEARCH_K)

    def timed(fn):
        time_calls(fn, pairs[:100])
        return time_calls(fn, pairs[100:])

    # the first retrieve per user reads its global rules; warm them all, as a server would
    time_calls(retriever.retrieve, [(user, pairs[0][1]) for user in ids])
    s, r = timed(search), timed(retriever.retrieve)
    results |= {
        "multi_user_rows": users * per_user,
        "multi_user_insert_s": insert_s,
        "multi_user_insert_per_s": users * per_user / insert_s,
        "multi_user_db_gb": db_gb,
        "multi_user_queries": n,
    }
    results["multi_user_search_p50_ms"], results["multi_user_search_p99_ms"] = pcts(s)
    results["multi_user_retrieve_p50_ms"], results["multi_user_retrieve_p99_ms"] = pcts(r)
    results["multi_user_first_get_p50_ms"], results["multi_user_first_get_p99_ms"] = pcts(cold)
    close_persona(persona)
    show(table, 3, results, [k for k in results if k.startswith("multi_")])


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
    needed = args.add + n_base + sum(2 * probe_size(scale) for scale in args.scales)
    # distinct in meaning too: consolidation would merge near-duplicates into one rule
    most = len(TOPICS) * len(INSTRUCTIONS)
    candidates = rule_texts(min(most, int(needed * 1.1) + 32), text_rng)
    all_texts = distinct_by_meaning(candidates, embedder.encode(candidates), needed)
    add_texts = all_texts[: args.add]
    base_texts = all_texts[args.add : args.add + n_base]
    probe_list = all_texts[args.add + n_base :]
    ctxs = [f"{doc} about {topic}" for doc, topic in shuffled(text_rng, DOCUMENTS, TOPICS)]
    combos = shuffled(text_rng, ASKS, DOCUMENTS, TOPICS)
    query_texts = [f"{ask} {doc} about {topic}?" for ask, doc, topic in combos]
    query_texts = query_texts[: max(args.query_embeds, 20 + 200) + n_base]

    results: dict = {
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
    table = Table(title="bench_memory (embedded all-MiniLM-L6-v2, SQLite + FAISS, CPU)")
    table.add_column("measure")
    table.add_column("value", justify="right")

    with tempfile.TemporaryDirectory(prefix="bench_memory_", dir=args.tmpdir) as tmp:
        root = Path(tmp)
        # 5 first: its texts also give the real query embeddings the synthetic ones perturb
        bench_query_embed(embedder, query_texts[: args.query_embeds], table, results)
        pools = Pools(embedder, base_texts, ctxs[:n_base], query_texts[-n_base:])
        probe_texts = dict(zip(probe_list, embedder.encode(probe_list)))
        bench_add(root, embedder, add_texts, args.batch, table, results)
        bench_scales(root, args, embedder, pools, probe_texts, rng, table, results)
        bench_many_users(root, args, embedder, pools, rng, table, results)
        err.print("cleaning up")
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
    Console().print(table)
    Console().print(f"[dim]{results['synthetic_vectors']}[/]")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
