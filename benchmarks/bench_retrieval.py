"""Same-topic retrieval benchmark: which of a user's 8-12 rules on one topic a request needs.

Run: .venv/bin/python benchmarks/bench_retrieval.py [--data FILE.jsonl] [--latency 10000]

Each user's rules go into a real store (``MemoryStore`` rows with embedded all-MiniLM-L6-v2
vectors and the store's FTS5 lexical index, written by the product's own insert path;
consolidation is bypassed so every hand-written rule stays). For every case the user's
rules are ranked three ways, exactly as :mod:`persona_sdk.memory.retrieval` ranks them:

- dense: cosine between the request's and each rule's embedding;
- lexical: :func:`persona_sdk.memory.lexical.search` (BM25 over stemmed words and concepts);
- hybrid: :func:`persona_sdk.memory.lexical.fuse` (reciprocal-rank fusion of the two);
- fusion ceiling (recall@3 only): the target is in dense's top 3 or among the rules lexical
  matched at all, i.e. what an oracle choosing per case between the two could reach.

Prints recall@1 and recall@3 per method (and per domain), then one JSON line. With
``--latency N`` (default 10000; 0 skips it) it also times ``Retriever.retrieve`` for one
user holding N memories (the benchmark's rule texts, numbered, on perturbed real vectors;
10% global rules), dense only (no request text, as bench_memory.py) and hybrid (with it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "same_topic_retrieval.jsonl"
METHODS = ("dense", "lexical", "hybrid")


def rankings(store, embedder, user_id: str, ids: list[int], vectors: np.ndarray, request: str):
    """The user's rule ids ranked by each method, best first."""
    from persona_sdk.memory import lexical

    query = embedder.encode_one(request)
    dense = [ids[i] for i in np.argsort(-(vectors @ query), kind="stable")]
    found = lexical.search(store.query, user_id, request, len(ids))
    lexical_ids = list(found) + [i for i in dense if i not in found]  # unmatched: dense order
    fused = lexical.fuse([dense, list(found)])
    hybrid = sorted(dense, key=lambda i: -fused.get(i, 0.0))
    return {"dense": dense, "lexical": lexical_ids, "hybrid": hybrid, "matched": list(found)}


def run(path: Path) -> dict:
    from persona_sdk.decoding.embedder import load_embedder
    from persona_sdk.memory.store import MemoryStore

    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    embedder = load_embedder(None, "cpu")
    hits = {m: {1: [], 3: []} for m in METHODS}
    ceiling: list[int] = []
    by_domain: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    users: dict[str, tuple[list[int], np.ndarray]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(tmp)
        for case in cases:
            user_id = case["user"]
            if user_id not in users:
                vectors = embedder.encode(case["rules"])
                rows = [{"kind": "rule", "source": "stated", "text": t, "embedding": v,
                         "text_embedding": v} for t, v in zip(case["rules"], vectors)]  # fmt: skip
                users[user_id] = (store.add_memories(user_id, rows).ids, vectors)
            ids, vectors = users[user_id]
            target = ids[case["target"]]
            ranked = rankings(store, embedder, user_id, ids, vectors, case["request"])
            ceiling.append(int(target in ranked["dense"][:3] or target in ranked["matched"]))
            for method in METHODS:
                order = ranked[method]
                for k in (1, 3):
                    hits[method][k].append(int(target in order[:k]))
                by_domain[case["domain"]][method].append(int(target in order[:3]))
        store.close()
    recall = {m: {f"recall@{k}": round(float(np.mean(hits[m][k])), 3) for k in (1, 3)}
              for m in METHODS}  # fmt: skip
    domains = {d: {m: round(float(np.mean(v)), 3) for m, v in r.items()}
               for d, r in sorted(by_domain.items())}  # fmt: skip
    seconds = round(time.perf_counter() - started, 1)
    return {"cases": len(cases), "users": len(users), "recall": recall,
            "fusion_ceiling_recall@3": round(float(np.mean(ceiling)), 3),
            "recall@3_by_domain": domains, "seconds": seconds}  # fmt: skip


def latency(path: Path, n: int, queries: int = 500, seed: int = 19) -> dict:
    """p50/p99 of whole retrieval (ms) at ``n`` memories, dense only and hybrid."""
    from persona_sdk.config import RetrievalConfig
    from persona_sdk.decoding.embedder import load_embedder
    from persona_sdk.memory.index import IndexManager
    from persona_sdk.memory.retrieval import Retriever
    from persona_sdk.memory.store import MemoryStore

    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rules = sorted({r for c in cases for r in c["rules"]})
    requests = [c["request"] for c in cases]
    embedder = load_embedder(None, "cpu")
    base, asked = embedder.encode(rules), embedder.encode(requests)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(rules), n)
    vectors = base[picks] + rng.normal(0, 0.03, (n, base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{"kind": "rule", "text": f"{rules[p]} ({i})", "embedding": v, "text_embedding": v,
             "context": None if i % 10 == 0 else rules[(p + 7) % len(rules)]}
            for i, (p, v) in enumerate(zip(picks, vectors))]  # fmt: skip
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(tmp)
        store.add_memories("u", rows)
        retriever = Retriever(store, IndexManager(store, base.shape[1]), RetrievalConfig())
        for mode in ("dense", "hybrid"):
            times = []
            for k in range(queries + 50):
                q = k % len(requests)
                text = requests[q] if mode == "hybrid" else None
                start = time.perf_counter()
                retriever.retrieve("u", asked[q], text=text)
                if k >= 50:  # warm-up
                    times.append((time.perf_counter() - start) * 1000)
            p50, p99 = np.percentile(times, [50, 99])
            out[mode] = {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}
        store.close()
    return {"memories": n, "queries": queries, **out}


def show(result: dict) -> None:
    console = Console(stderr=True)
    table = Table(title=f"same-topic retrieval: {result['cases']} cases, {result['users']} users")
    for column in ("method", "recall@1", "recall@3"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for method in METHODS:
        r = result["recall"][method]
        table.add_row(method, f"{r['recall@1']:.3f}", f"{r['recall@3']:.3f}")
    table.add_row("fusion ceiling", "", f"{result['fusion_ceiling_recall@3']:.3f}")
    console.print(table)
    table = Table(title="recall@3 by domain")
    table.add_column("domain")
    for method in METHODS:
        table.add_column(method, justify="right")
    for domain, r in result["recall@3_by_domain"].items():
        table.add_row(domain, *(f"{r[m]:.3f}" for m in METHODS))
    console.print(table)
    if "latency" in result:
        lat = result["latency"]
        table = Table(title=f"whole retrieval, one user with {lat['memories']} memories")
        for column in ("mode", "p50 ms", "p99 ms"):
            table.add_column(column)
        for mode in ("dense", "hybrid"):
            table.add_row(mode, f"{lat[mode]['p50_ms']:.3f}", f"{lat[mode]['p99_ms']:.3f}")
        console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--latency", type=int, default=10_000, help="memories (0: skip)")
    args = parser.parse_args()
    result = run(args.data)
    if args.latency:
        result["latency"] = latency(args.data, args.latency)
    show(result)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
