"""Memory benchmark: add throughput, retrieval latency by scale, many users, index rebuild.

Run: .venv/bin/python benchmarks/bench_memory.py [--quick] [--users 1000] [--per-user 1000]

Measures, on the embedded all-MiniLM-L6-v2 (CPU) and the real SQLite store and FAISS indexes:

1. Adding short rules with ``user.add_rules`` in batches, embedding included (memories/s),
   with the embedding-only and write-only rates for the same texts, alternative embedding
   configurations (batch size, texts pre-sorted by length, one torch thread, a fresh
   process with torch initialised before persona_sdk is imported), and the write rate
   into a user who already holds 1k / 10k / 100k memories.
2. Retrieval latency for one user at 1k, 10k and 100k memories: the FAISS search
   (``indexes.get(user).search``) and the whole retrieval step without query embedding
   (``Retriever.retrieve``), p50/p99. Rows are inserted with ``MemoryStore.add_memories``;
   their vectors are synthetic: a few hundred real MiniLM embeddings, perturbed with
   Gaussian noise and renormalised. 10% are global rules, 90% contextual.
3. The same across many users (default 1,000 users x 1,000 memories), random pairs.
4. Index rebuild from SQLite, and load from disk, for one user at each scale.
5. Query embedding latency (one query, MiniLM).

Alternatives measured beside the product's own path, labelled in the keys: FAISS with the
other OpenMP thread count (``_omp<n>``), SQLite planner statistics (``_analyzed``: ANALYZE,
dropped again after), and the first retrieve that has to read the user's global rules
(``retrieve_cold_globals_ms``, as after any write). Timings on a shared 2-core machine move
with other load, so the 1-minute load average is recorded at the start and end.

Everything lives in a temporary directory that is deleted at the end (~4 GB at full
scale; the many-user test scales down when the disk has less than it needs). Prints a
table, then one JSON line with every figure. ``--quick`` is a smoke run of under 2 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
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

# -- realistic texts, generated combinatorially -------------------------------------------

TOPICS = [
    "tax returns", "marathon training", "sourdough baking", "tomato gardening",
    "job interviews", "apartment hunting", "wedding planning", "home workouts",
    "learning Spanish", "credit card debt", "camping trips", "houseplants",
    "buying a used car", "retirement savings", "kids' birthday parties", "coffee brewing",
    "cycling routes", "film photography", "podcast editing", "board games", "meal prep",
    "dog training", "sleep habits", "public speaking", "chess openings", "bird watching",
    "vegetable soups", "budget travel in Japan", "kitchen renovation", "salary negotiation",
    "wine tasting", "yoga for beginners", "moving abroad", "freelance invoices",
    "mortgage refinancing", "piano practice", "skin care", "hiking in the Alps",
    "electric cars", "cat nutrition", "spreadsheet formulas", "museum visits",
    "family reunions", "running shoes", "jazz history", "climate news", "index funds",
    "knitting patterns", "smart home devices", "solar panels", "rock climbing",
    "home espresso machines", "vintage furniture", "aquarium fish", "beekeeping",
    "language exchange apps", "sailing lessons", "car insurance", "pottery classes",
    "school applications", "bathroom tiling", "astronomy for amateurs", "fermented foods",
    "city breaks in Italy",
]  # fmt: skip
INSTRUCTIONS = [
    "mention the total cost in euros", "give metric units first, imperial in brackets",
    "cite a source I can check myself", "suggest a cheaper alternative",
    "warn me about common mistakes", "recommend one option instead of several",
    "assume I am a complete beginner", "assume I already know the basics",
    "compare two options side by side", "include a rough time estimate",
    "tell me what to buy and where", "mention the best season for it", "use British spelling",
    "keep my budget of 500 dollars in mind", "suggest something I can do this weekend",
    "mention safety risks first", "prefer vegetarian options", "focus on options near Lisbon",
    "skip the history and background", "explain the reasoning behind each recommendation",
    "give me a fallback plan", "tell me which choice you would pick",
    "keep my two young kids in mind", "mention wheelchair accessibility",
    "avoid naming specific brands", "favour second-hand options", "highlight what is free",
    "remember that I work night shifts", "relate it to my engineering background",
    "point out the environmental impact", "mention what my partner, who is vegan, can eat",
    "assume I live in a small flat without a garden", "give prices for Portugal",
    "tell me the one thing to do first", "mention how to undo it if it goes wrong",
    "include what it costs per month", "warn me if it needs a permit",
    "remind me that I have a bad knee", "assume I only have weekends free",
    "suggest how to involve my teenage son", "mention any apps that help",
    "say what a typical beginner gets wrong", "tell me how long results take to show",
    "give me a realistic worst case", "favour options that need no car",
    "assume I have a very old laptop", "mention local Lisbon clubs or groups",
    "think about my lactose intolerance", "mention the quietest times to go",
    "tell me what I can skip", "suggest a small first experiment",
    "point out scams to watch for", "assume I am left-handed",
    "mention anything that is cheaper online", "use plain words, like you would with a friend",
    "tell me what experts disagree about", "give the answer in Celsius",
    "assume my German is better than my English", "mention what to do on a rainy day",
    "keep my fear of heights in mind", "consider my tight deadline this month",
    "remind me to check with my doctor when health is involved",
    "suggest how to track my progress", "mention what it is like in winter",
]  # fmt: skip
FAMILIES = [
    "When I ask about {topic}, {instr}.",
    "For anything involving {topic}, please {instr}.",
    "If the conversation turns to {topic}, {instr}.",
    "In answers about {topic}, always {instr}.",
    "Whenever {topic} comes up, {instr}.",
]
DOCUMENTS = [
    "emails to my manager", "messages to my landlord", "weeknight dinner ideas",
    "travel itineraries", "workout plans", "cover letters", "birthday card messages",
    "product reviews", "bedtime stories for my kids", "meeting summaries", "blog posts",
    "explanations of science news", "restaurant recommendations", "book recommendations",
    "monthly budget planning", "apology notes", "packing for trips", "shopping for electronics",
    "health worries", "school homework help",
]  # fmt: skip
ASKS = [
    "Can you help me with",
    "I need some help with",
    "Give me ideas for",
    "Draft",
    "What do you suggest for",
    "Help me plan",
    "Write",
    "I'm stuck on",
]


def rule_texts(count: int, rng: random.Random) -> list[str]:
    """Distinct rules, one per (topic, instruction) pair, none naming a style template
    (those would contradict or reinforce each other)."""
    from persona_sdk.memory.edits import classify_rule

    pairs = list(itertools.product(TOPICS, INSTRUCTIONS))
    rng.shuffle(pairs)
    texts = []
    for topic, instr in pairs:
        text = rng.choice(FAMILIES).format(topic=topic, instr=instr)
        if classify_rule(text) is None and len(text.split()) <= 30:
            texts.append(text)
        if len(texts) == count:
            return texts
    raise SystemExit(f"the text generator yields only {len(texts)} distinct rules, not {count}")


def contexts(count: int, rng: random.Random) -> list[str]:
    pairs = list(itertools.product(DOCUMENTS, TOPICS))
    rng.shuffle(pairs)
    return [f"{doc} about {topic}" for doc, topic in pairs[:count]]


def queries(count: int, rng: random.Random) -> list[str]:
    combos = list(itertools.product(ASKS, DOCUMENTS, TOPICS))
    rng.shuffle(combos)
    return [f"{ask} {doc} about {topic}?" for ask, doc, topic in combos[:count]]


def distinct_by_meaning(texts: list[str], vectors: np.ndarray, count: int) -> list[str]:
    """The first ``count`` texts, skipping any within the duplicate threshold of a kept one."""
    from persona_sdk.config import MemoryConfig

    limit = MemoryConfig().duplicate_similarity - 0.01
    sims = vectors @ vectors.T
    kept: list[int] = []
    for i in range(len(texts)):
        if not kept or float(sims[i, kept].max()) < limit:
            kept.append(i)
            if len(kept) == count:
                return [texts[k] for k in kept]
    raise SystemExit(f"only {len(kept)} rules are distinct in meaning, not {count}")


# -- helpers ------------------------------------------------------------------------------


def label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
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

    def __init__(self, texts, text_vecs, ctxs, ctx_vecs, query_vecs):
        self.texts, self.text_vecs = texts, text_vecs
        self.ctxs, self.ctx_vecs = ctxs, ctx_vecs
        self.query_vecs = query_vecs

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
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def make_cached_embedder(inner, table: dict[str, np.ndarray]):
    """An Embedder that looks vectors up instead of running MiniLM: isolates write cost."""
    from persona_sdk.embedder import Embedder

    class CachedEmbedder(Embedder):
        def __init__(self):  # the real one's state (same identity), no model call
            self.__dict__.update(inner.__dict__)
            self._lock = threading.Lock()

        def encode(self, texts, batch_size: int = 64):
            return np.stack([table[t] for t in texts]).astype(np.float32)

    return CachedEmbedder()


@contextlib.contextmanager
def faiss_threads(n: int):
    """FAISS OpenMP threads set to ``n`` for the block (the product's choice restored after)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@contextlib.contextmanager
def analyzed(store):
    """Alternative: SQLite planner statistics (ANALYZE), dropped again afterwards. Without
    them the ids lookup of retrieval scans all of the user's rows via (user_id, kind)."""
    with store.transaction() as conn:
        conn.execute("ANALYZE")
    try:
        yield
    finally:  # the planner keeps loaded statistics until told to reload them
        with store.transaction() as conn:
            conn.execute("DELETE FROM sqlite_stat1")
            conn.execute("ANALYZE sqlite_schema")


def ids_lookup_plan(store, user_id: str) -> str:
    """How SQLite runs retrieval's ``user_id = ? AND id IN (...)`` lookup right now."""
    ids = [
        r[0]
        for r in store.db.execute("SELECT id FROM memories WHERE user_id = ? LIMIT 40", (user_id,))
    ]
    marks = ", ".join("?" * len(ids))
    detail = store.db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM memories WHERE user_id = ? AND valid_to IS NULL "
        f"AND id IN ({marks}) ORDER BY id",
        (user_id, *ids),
    ).fetchall()[0][-1]
    return "rowid lookups" if "PRIMARY KEY" in detail else detail.replace("SEARCH memories ", "")


EMBED_SNIPPET = """
import json, sys, time
if sys.argv[1] == "torch-first":  # an app that used torch before importing persona_sdk
    import torch
    torch.get_num_threads()
from persona_sdk.embedder import load_embedder
import torch
texts = json.load(open(sys.argv[2]))
embedder = load_embedder()
embedder.encode(texts[:64])
start = time.perf_counter()
for i in range(0, len(texts), 128):
    embedder.encode(texts[i : i + 128])
rate = len(texts) / (time.perf_counter() - start)
print(json.dumps({"per_s": rate, "torch_threads": torch.get_num_threads()}))
"""


def embed_in_fresh_process(texts: list[str], mode: str, tmp: Path) -> dict:
    path = tmp / "embed_texts.json"
    path.write_text(json.dumps(texts))
    out = subprocess.run(
        [sys.executable, "-c", EMBED_SNIPPET, mode, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def add_all(persona, user_id: str, texts: list[str], batch: int) -> tuple[float, list[float]]:
    """Add ``texts`` through ``user.add_rules`` in batches: (seconds, per-batch rates)."""
    user = persona.user(user_id)
    rates = []
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        chunk = texts[i : i + batch]
        t = time.perf_counter()
        user.add_rules(chunk)
        rates.append(len(chunk) / (time.perf_counter() - t))
    return time.perf_counter() - start, rates


def close_persona(persona) -> None:
    """Close without writing every dirty index to disk (the data is deleted anyway)."""
    persona.store.close()
    persona.close()


def show(table, part: int, results: dict, keys) -> None:
    table.add_section()
    for key in keys:
        table.add_row(f"{part}. {key}", fmt(results[key]))


# -- the five measurements ---------------------------------------------------------------


def bench_add(root: Path, embedder, texts: list[str], batch: int, table, results: dict) -> None:
    import torch

    from persona_sdk import Persona

    n = len(texts)
    err.print(f"[bold]1. add throughput[/]: {n} distinct rules, fresh user, batches of {batch}")

    def e2e(name: str, emb, user_texts: list[str], b: int):
        persona = Persona.open(root / name, embedder=emb)
        persona.user("warm").add_rules(user_texts[:8])  # warm-up: embedder, store, index
        elapsed, rates = add_all(persona, "bench", user_texts, b)
        stored = len(persona.user("bench").rules())
        close_persona(persona)
        return n / elapsed, rates, stored

    def embed_rate(bs: int, sort: bool = False) -> float:
        order = sorted(texts, key=len) if sort else texts
        start = time.perf_counter()
        for i in range(0, n, batch):
            embedder.encode(order[i : i + batch], batch_size=bs)
        return n / (time.perf_counter() - start)

    # embedding only, the same texts and chunks, several configurations
    embedder.encode(texts[:64])
    embed = {
        "embed_per_s": embed_rate(64),
        "embed_per_s_bs32": embed_rate(32),
        "embed_per_s_bs128": embed_rate(128),
        "embed_per_s_sorted": embed_rate(64, sort=True),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    embed["embed_per_s_1thread"] = embed_rate(64)
    torch.set_num_threads(threads)
    sample = texts[: min(n, 512)]
    fresh = embed_in_fresh_process(sample, "plain", root)
    first = embed_in_fresh_process(sample, "torch-first", root)
    embed |= {
        "embed_per_s_fresh_process": fresh["per_s"],
        "torch_threads_fresh_process": fresh["torch_threads"],
        "embed_per_s_torch_imported_first": first["per_s"],
        "torch_threads_torch_imported_first": first["torch_threads"],
    }

    vectors = embedder.encode(texts)
    cache = make_cached_embedder(embedder, dict(zip(texts, vectors)))
    add_rate, rates, stored = e2e("add_e2e", embedder, texts, batch)
    add64_rate, _, _ = e2e("add_e2e_b64", embedder, texts, 64)
    write_rate, write_rates, write_stored = e2e("add_write", cache, texts, batch)

    # raw insert: MemoryStore.add_memories with the same vectors, no consolidation or index
    persona = Persona.open(root / "add_raw", embedder=cache)
    rows = [
        {"kind": "rule", "text": t, "embedding": v, "text_embedding": v}
        for t, v in zip(texts, vectors)
    ]
    start = time.perf_counter()
    for i in range(0, n, batch):
        persona.store.add_memories("bench", rows[i : i + batch])
    raw_rate = n / (time.perf_counter() - start)
    close_persona(persona)

    results |= {
        "add_memories": n,
        "add_batch": batch,
        "add_per_s": add_rate,
        "add_per_s_batch64": add64_rate,
        "add_per_s_first_batch": rates[0],
        "add_per_s_last_batch": rates[-1],
        "add_stored_rules": stored,
        **embed,
        "write_only_per_s": write_rate,
        "write_only_per_s_first_batch": write_rates[0],
        "write_only_per_s_last_batch": write_rates[-1],
        "raw_insert_per_s": raw_rate,
    }
    assert write_stored == stored, (write_stored, stored)
    keys = ["add_per_s", "add_per_s_batch64", "add_per_s_first_batch", "add_per_s_last_batch"]
    keys += ["add_stored_rules", *embed, "write_only_per_s", "write_only_per_s_first_batch"]
    keys += ["write_only_per_s_last_batch", "raw_insert_per_s"]
    show(table, 1, results, keys)


def time_calls(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return out


def probe_size(scale: int) -> int:
    """Rules added through add_rules to a user of this size (fewer when each is slow)."""
    return max(8, min(64, 640_000 // scale))


def bench_scales(
    root: Path, args, embedder, pools: Pools, probe_texts, rng, table, results: dict
) -> None:
    import faiss

    from persona_sdk import Persona
    from persona_sdk.memory.retrieval import Retriever

    cache = make_cached_embedder(embedder, probe_texts)
    probes = iter(probe_texts)
    persona = Persona.open(root / "single", embedder=cache)
    store, indexes = persona.store, persona.indexes
    retriever = Retriever(store, indexes, persona.retrieval)
    alt = (os.cpu_count() or 2) if faiss.omp_get_max_threads() == 1 else 1
    user = "one-user"
    count = 0
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
        index = indexes.get(user)
        time_calls(index.search, [(q, SEARCH_K) for q in qs[:50]])
        f = time_calls(index.search, [(q, SEARCH_K) for q in qs[50:]])
        with faiss_threads(alt):
            time_calls(index.search, [(q, SEARCH_K) for q in qs[:50]])
            o = time_calls(index.search, [(q, SEARCH_K) for q in qs[50:]])
        warm = time_calls(retrieve, warm_q[:20])
        n_retrieve = args.queries
        if np.mean(warm) * args.queries > args.retrieve_budget_s:
            n_retrieve = max(args.min_queries, int(args.retrieve_budget_s / np.mean(warm)))
            n_retrieve = min(n_retrieve, args.queries)
        r = time_calls(retrieve, timed_q[:n_retrieve])
        mean_rules = np.mean([len(retrieve(q)) for (q,) in timed_q[:50]])
        cold = []  # a fresh Retriever reads the global rules first, as after any write
        for (q,) in warm_q[:5]:
            fresh = Retriever(store, indexes, persona.retrieval)
            cold += time_calls(fresh.retrieve, [(user, q)])
        plan = ids_lookup_plan(store, user)
        with analyzed(store):
            plan_analyzed = ids_lookup_plan(store, user)
            time_calls(retrieve, warm_q[:20])
            x = time_calls(retrieve, timed_q[:n_retrieve])
        assert ids_lookup_plan(store, user) == plan, "planner statistics were not dropped"
        results[f"search_p50_ms_{tag}"], results[f"search_p99_ms_{tag}"] = pcts(s)
        results[f"faiss_only_p50_ms_{tag}"], results[f"faiss_only_p99_ms_{tag}"] = pcts(f)
        o50, o99 = pcts(o)
        r50, r99 = pcts(r)
        x50, x99 = pcts(x)
        results |= {
            f"faiss_only_p50_ms_{tag}_omp{alt}": o50,
            f"faiss_only_p99_ms_{tag}_omp{alt}": o99,
            f"retrieve_p50_ms_{tag}": r50,
            f"retrieve_p99_ms_{tag}": r99,
            f"retrieve_queries_{tag}": n_retrieve,
            f"retrieve_mean_rules_{tag}": float(mean_rules),
            f"retrieve_cold_globals_ms_{tag}": float(np.median(cold) * 1000),
            f"ids_lookup_plan_{tag}": plan,
            f"retrieve_p50_ms_{tag}_analyzed": x50,
            f"retrieve_p99_ms_{tag}_analyzed": x99,
            f"ids_lookup_plan_{tag}_analyzed": plan_analyzed,
        }
        part2 = [k for k in results if k.endswith((f"_{tag}", f"_{tag}_omp{alt}"))]
        part2 += [f"retrieve_p50_ms_{tag}_analyzed", f"retrieve_p99_ms_{tag}_analyzed"]
        part2 += [f"ids_lookup_plan_{tag}_analyzed"]
        show(table, 2, results, part2)

        # 4. load from disk and rebuild from SQLite
        reps = 3 if scale >= 50_000 else 5
        start = time.perf_counter()
        indexes.flush()
        save_s = time.perf_counter() - start
        rebuilds = indexes.rebuilds
        loads = []
        for _ in range(reps):
            t = time.perf_counter()
            indexes.refresh(user)
            loads.append(time.perf_counter() - t)
        assert indexes.rebuilds == rebuilds, "the index was rebuilt, not loaded"
        builds = []
        for _ in range(reps):
            for path in indexes.paths(user):
                path.unlink(missing_ok=True)
            t = time.perf_counter()
            indexes.refresh(user)
            builds.append(time.perf_counter() - t)
        assert indexes.rebuilds == rebuilds + reps, "the index was loaded, not rebuilt"
        indexes.flush()
        results |= {
            f"index_save_s_{tag}": save_s,
            f"load_s_{tag}": float(np.median(loads)),
            f"rebuild_s_{tag}": float(np.median(builds)),
        }
        show(table, 4, results, [f"index_save_s_{tag}", f"load_s_{tag}", f"rebuild_s_{tag}"])

        # 1. (continued) add_rules with precomputed vectors to a user this big: the first
        # batch reads the user's rules (as the first write after a restart or another
        # writer does), the next one reuses them
        n_probe = probe_size(scale)
        for key in (f"write_only_per_s_at_{tag}_first", f"write_only_per_s_at_{tag}_next"):
            batch_texts = [next(probes) for _ in range(n_probe)]
            t = time.perf_counter()
            persona.user(user).add_rules(batch_texts)
            results[key] = n_probe / (time.perf_counter() - t)
            count += n_probe
        indexes.get(user)
        show(
            table,
            1,
            results,
            [f"write_only_per_s_at_{tag}_first", f"write_only_per_s_at_{tag}_next"],
        )
    close_persona(persona)


def bench_many_users(root: Path, args, embedder, pools: Pools, rng, table, results) -> None:
    import faiss

    from persona_sdk import Persona
    from persona_sdk.memory.retrieval import Retriever

    users, per_user = args.users, args.per_user
    free = shutil.disk_usage(root).free
    need = users * per_user * ROW_BYTES * 1.5 + 1e9
    if free < max(5e9, need):
        fit = int(max(0.0, free - 1e9) / (per_user * ROW_BYTES * 1.5))
        err.print(
            f"[bold red]only {free / 1e9:.1f} GB free at {root}: scaling the many-user test "
            f"down from {users} to {max(fit, 1)} users[/]"
        )
        users = max(1, min(users, fit))
    results |= {"multi_users": users, "multi_per_user": per_user}
    err.print(f"[bold]3. {users} users x {per_user} memories[/]")
    persona = Persona.open(root / "multi", embedder=embedder)
    store, indexes = persona.store, persona.indexes
    retriever = Retriever(store, indexes, persona.retrieval)
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
            t = time.perf_counter()
            indexes.get(user)
            cold.append(time.perf_counter() - t)
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
    s = timed(search)
    alt = (os.cpu_count() or 2) if faiss.omp_get_max_threads() == 1 else 1
    with faiss_threads(alt):
        o = timed(search)
    r = timed(retriever.retrieve)
    results["multi_user_ids_lookup_plan"] = ids_lookup_plan(store, ids[0])
    with analyzed(store):
        results["multi_user_ids_lookup_plan_analyzed"] = ids_lookup_plan(store, ids[0])
        x = timed(retriever.retrieve)
    results["multi_user_rows"] = users * per_user
    results["multi_user_insert_s"] = insert_s
    results["multi_user_insert_per_s"] = users * per_user / insert_s
    results["multi_user_db_gb"] = db_gb
    results["multi_user_queries"] = n
    results["multi_user_search_p50_ms"], results["multi_user_search_p99_ms"] = pcts(s)
    o50, o99 = pcts(o)
    results[f"multi_user_search_p50_ms_omp{alt}"] = o50
    results[f"multi_user_search_p99_ms_omp{alt}"] = o99
    results["multi_user_retrieve_p50_ms"], results["multi_user_retrieve_p99_ms"] = pcts(r)
    x50, x99 = pcts(x)
    results["multi_user_retrieve_p50_ms_analyzed"] = x50
    results["multi_user_retrieve_p99_ms_analyzed"] = x99
    c50, c99 = pcts(cold)
    results["multi_user_first_get_p50_ms"] = c50
    results["multi_user_first_get_p99_ms"] = c99
    close_persona(persona)
    show(table, 3, results, [k for k in results if k.startswith("multi_")])


def bench_query_embed(embedder, texts: list[str], table, results: dict) -> None:
    for text in texts[:20]:
        embedder.encode_one(text)
    p50, p99 = pcts(time_calls(embedder.encode_one, [(t,) for t in texts[20:]]))
    results |= {
        "query_embed_p50_ms": p50,
        "query_embed_p99_ms": p99,
        "query_embeds": len(texts) - 20,
    }
    show(table, 5, results, ["query_embed_p50_ms", "query_embed_p99_ms", "query_embeds"])


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def git_state() -> str:
    """The commit measured, and whether product files differed from it."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "persona_sdk", "memory"],
            cwd=here,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "unknown"
    changed = sum(1 for line in dirty if line.strip())
    return f"{commit}+{changed} changed files" if changed else commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 2 min)")
    parser.add_argument("--add", type=int, default=2048, help="memories for add throughput")
    parser.add_argument("--batch", type=int, default=128, help="add_rules batch size")
    parser.add_argument(
        "--scales", default="1000,10000,100000", help="one-user sizes, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=1000, help="queries per one-user scale")
    parser.add_argument("--min-queries", type=int, default=300, help="floor when retrieve is slow")
    parser.add_argument(
        "--retrieve-budget-s", type=float, default=120.0, help="time cap per retrieve loop"
    )
    parser.add_argument("--users", type=int, default=1000, help="users in the many-user test")
    parser.add_argument("--per-user", type=int, default=1000, help="memories per user there")
    parser.add_argument("--multi-queries", type=int, default=2000, help="random (user, query)")
    parser.add_argument("--query-embeds", type=int, default=300, help="queries to embed, timed")
    parser.add_argument("--tmpdir", default=None, help="where the temporary data goes")
    args = parser.parse_args()
    if args.quick:
        args.add, args.batch, args.scales, args.queries = 128, 64, "1000,3000", 200
        args.users, args.per_user, args.multi_queries = 30, 300, 200
        args.min_queries, args.retrieve_budget_s, args.query_embeds = 100, 5.0, 120
    args.scales = [int(s) for s in args.scales.split(",")]

    # A terminated run still deletes its temporary data (SIGTERM unwinds like Ctrl-C).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # persona_sdk before torch, as an app that starts with `from persona_sdk import Persona`
    # would: importing it sets FAISS's OpenMP threads, which lands in torch's OpenMP runtime
    # when torch was initialised first (measured separately: *_torch_imported_first).
    from persona_sdk.embedder import load_embedder

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
    n_probes = sum(2 * probe_size(scale) for scale in args.scales)
    needed = args.add + n_base + n_probes
    # distinct in meaning too: consolidation would merge near-duplicates into one rule
    most = len(TOPICS) * len(INSTRUCTIONS)
    candidates = rule_texts(min(most, int(needed * 1.1) + 32), text_rng)
    all_texts = distinct_by_meaning(candidates, embedder.encode(candidates), needed)
    add_texts = all_texts[: args.add]
    base_texts = all_texts[args.add : args.add + n_base]
    probe_list = all_texts[args.add + n_base :]
    ctxs = contexts(n_base, text_rng)
    query_texts = queries(max(args.query_embeds, 20 + 200) + n_base, text_rng)

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
        pools = Pools(
            base_texts,
            embedder.encode(base_texts),
            ctxs,
            embedder.encode(ctxs),
            embedder.encode(query_texts[-n_base:]),
        )
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
