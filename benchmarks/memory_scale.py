"""Parts 2 to 4 of ``bench_memory``: one user at growing scale (retrieval, index save, load
and rebuild, writes into a big user) and many users at once."""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from memory_harness import (  # benchmarks/ is on sys.path when run as a script
    Pools,
    close_persona,
    err,
    label,
    make_cached_embedder,
    pcts,
    probe_size,
    progress,
    show,
    time_calls,
)
from rich.table import Table

SEARCH_K = 32  # what Retriever asks FAISS for with the default top_k=5: max(4 * 5, 32)
ROW_BYTES = 2 * 384 * 4 + 400  # embedding + text_embedding BLOBs + text, context, timestamps
ONE_USER = "one-user"


def bench_scales(
    root: Path,
    args: argparse.Namespace,
    embedder,
    pools: Pools,
    probe_texts: dict[str, np.ndarray],
    rng: np.random.Generator,
    table: Table,
    results: dict,
) -> None:
    from persona_sdk import Persona
    from persona_sdk.memory.retrieval import Retriever

    probes = iter(probe_texts)
    persona = Persona.open(root / "single", embedder=make_cached_embedder(embedder, probe_texts))
    retriever = Retriever(persona.store, persona.indexes, persona.retrieval_config)
    count = 0
    for scale in args.scales:
        tag = label(scale)
        err.print(f"[bold]2. one user at {tag} memories[/]")
        count = fill_one_user(persona.store, pools, count, scale, rng)
        persona.indexes.get(ONE_USER)  # the first get after the bulk insert rebuilds from SQLite
        queries = pools.query_batch(args.queries + 50, rng)
        results |= time_one_user_retrieval(persona, retriever, queries, args, tag)
        show(table, 2, results, [k for k in results if k.endswith(f"_{tag}")])

        results |= time_index_save_load_rebuild(persona.indexes, scale, tag)
        show(table, 4, results, [f"index_save_s_{tag}", f"load_s_{tag}", f"rebuild_s_{tag}"])

        writes = time_writes_at_scale(persona, probes, scale, tag)
        count += probe_size(scale) * len(writes)  # one batch of probes per write rate
        results |= writes
        show(table, 1, results, list(writes))
    close_persona(persona)


def fill_one_user(store, pools: Pools, count: int, scale: int, rng: np.random.Generator) -> int:
    """Insert synthetic rows until the user holds ``scale`` memories; returns the count."""
    with progress() as bar:
        task = bar.add_task(f"insert to {label(scale)}", total=scale, completed=count)
        while count < scale:
            rows = pools.rows(min(10_000, scale - count), rng)
            store.add_memories(ONE_USER, rows)
            count += len(rows)
            bar.update(task, completed=count)
    return count


def retrieve_queries(warm_s: float, args: argparse.Namespace) -> int:
    """How many queries to time ``retrieve`` on: all, unless that would pass the budget
    (then fewer, with a floor)."""
    if warm_s * args.queries <= args.retrieve_budget_s:
        return args.queries
    return min(args.queries, max(args.min_queries, int(args.retrieve_budget_s / warm_s)))


def time_one_user_retrieval(
    persona, retriever, queries: np.ndarray, args: argparse.Namespace, tag: str
) -> dict[str, float]:
    """2. ``search`` and ``retrieve`` latency on the one user, and a fresh Retriever's first
    retrieve; the first 50 queries warm up."""
    from persona_sdk.memory.retrieval import Retriever

    indexes = persona.indexes
    warm_q, timed_q = [(q,) for q in queries[:50]], [(q,) for q in queries[50:]]

    def search(q):
        return indexes.get(ONE_USER).search(q, SEARCH_K)

    def retrieve(q):
        return retriever.retrieve(ONE_USER, q)

    time_calls(search, warm_q)
    s = time_calls(search, timed_q)
    n_retrieve = retrieve_queries(np.mean(time_calls(retrieve, warm_q[:20])), args)
    r = time_calls(retrieve, timed_q[:n_retrieve])
    mean_rules = np.mean([len(retrieve(q)) for (q,) in timed_q[:50]])
    cold = []  # a fresh Retriever reads the global rules first, as after any write
    for (q,) in warm_q[:5]:
        fresh = Retriever(persona.store, indexes, persona.retrieval_config)
        cold += time_calls(fresh.retrieve, [(ONE_USER, q)])
    results = {}
    results[f"search_p50_ms_{tag}"], results[f"search_p99_ms_{tag}"] = pcts(s)
    results[f"retrieve_p50_ms_{tag}"], results[f"retrieve_p99_ms_{tag}"] = pcts(r)
    results[f"retrieve_queries_{tag}"] = n_retrieve
    results[f"retrieve_mean_rules_{tag}"] = float(mean_rules)
    results[f"retrieve_cold_globals_ms_{tag}"] = float(np.median(cold) * 1000)
    return results


def time_index_save_load_rebuild(indexes, scale: int, tag: str) -> dict[str, float]:
    """4. Save the one user's index, load it from disk and rebuild it from SQLite."""
    reps = 3 if scale >= 50_000 else 5
    save_s = time_calls(indexes.flush, [()])[0]
    rebuilds = indexes.rebuilds
    loads = time_calls(indexes.refresh, [(ONE_USER,)] * reps)
    assert indexes.rebuilds == rebuilds, "the index was rebuilt, not loaded"
    builds = []
    for _ in range(reps):
        for path in indexes.paths(ONE_USER):
            path.unlink(missing_ok=True)
        builds += time_calls(indexes.refresh, [(ONE_USER,)])
    assert indexes.rebuilds == rebuilds + reps, "the index was loaded, not rebuilt"
    indexes.flush()
    return {
        f"index_save_s_{tag}": save_s,
        f"load_s_{tag}": float(np.median(loads)),
        f"rebuild_s_{tag}": float(np.median(builds)),
    }


def time_writes_at_scale(persona, probes: Iterator[str], scale: int, tag: str) -> dict[str, float]:
    """1. (continued) add_rules with precomputed vectors to a user this big: the first batch
    reads the user's rules (as the first write after a restart or another writer does), the
    next one reuses them."""
    n_probe = probe_size(scale)
    rates = {}
    for key in [f"write_only_per_s_at_{tag}_first", f"write_only_per_s_at_{tag}_next"]:
        batch = [next(probes) for _ in range(n_probe)]
        t = time.perf_counter()
        persona.user(ONE_USER).add_rules(batch)
        rates[key] = n_probe / (time.perf_counter() - t)
    persona.indexes.get(ONE_USER)
    return rates


def bench_many_users(
    root: Path,
    args: argparse.Namespace,
    embedder,
    pools: Pools,
    rng: np.random.Generator,
    table: Table,
    results: dict,
) -> None:
    from persona_sdk import Persona
    from persona_sdk.memory.retrieval import Retriever

    per_user = args.per_user
    users = users_that_fit(root, args.users, per_user)
    results |= {"multi_users": users, "multi_per_user": per_user}
    err.print(f"[bold]3. {users} users x {per_user} memories[/]")
    persona = Persona.open(root / "multi", embedder=embedder)
    store, indexes = persona.store, persona.indexes
    retriever = Retriever(store, indexes, persona.retrieval_config)
    ids = [f"user-{i:05d}" for i in range(users)]
    insert_s = insert_many_users(store, ids, per_user, pools, rng)
    store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db_gb = store.path.stat().st_size / 1e9
    cold = time_first_gets(indexes, ids)
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


def users_that_fit(root: Path, users: int, per_user: int) -> int:
    """``users``, or fewer when the disk under ``root`` is short (said on stderr)."""
    free = shutil.disk_usage(root).free
    if free < max(5e9, users * per_user * ROW_BYTES * 1.5 + 1e9):
        fit = max(1, int(max(0.0, free - 1e9) / (per_user * ROW_BYTES * 1.5)))
        err.print(
            f"[bold red]only {free / 1e9:.1f} GB free at {root}: scaling the many-user test "
            f"down from {users} to {fit} users[/]"
        )
        users = min(users, fit)
    return users


def insert_many_users(
    store, ids: list[str], per_user: int, pools: Pools, rng: np.random.Generator
) -> float:
    """Insert ``per_user`` synthetic rows for each user; returns the seconds taken."""
    group = max(1, 50_000 // per_user)  # users per outer transaction
    start = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("insert", total=len(ids) * per_user)
        for i in range(0, len(ids), group):
            with store.transaction():  # add_memories joins it: one commit per group
                for user in ids[i : i + group]:
                    store.add_memories(user, pools.rows(per_user, rng))
                    bar.advance(task, per_user)
    return time.perf_counter() - start


def time_first_gets(indexes, ids: list[str]) -> list[float]:
    """Each user's first ``indexes.get``, which rebuilds its index from SQLite."""
    cold = []
    with progress() as bar:
        task = bar.add_task("first get per user (rebuild)", total=len(ids))
        for user in ids:
            cold += time_calls(indexes.get, [(user,)])
            bar.advance(task)
    return cold
