"""Issue 18's mixture sweep: users drawn from the population prior × guidance strengths ×
held-out prompts, with the decode guard off (before issue 18) and on, on the embedded
model. Reports the degenerate rate per strength beside the base model's, and which basis
directions dominate the broken mixtures.

Each user's adapter is their weights' coefficients over the shipped basis adapters, as
``Persona`` builds it; replies are greedy, below the API (no rules, no retrieval). The
guard is the product's default (KL budget, trip-wire, restart). Resumable: each finished
(strength, guard) setting is appended to ``--out`` (JSON lines) and skipped on a rerun.

Run: .venv/bin/python benchmarks/mixture_sweep.py [--users 100] [--prompts 24]
[--tokens 32] [--out benchmarks/results/mixture_sweep.jsonl] [--plot …png]. Prints a
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_guided import basis_adapters, slot_for

from persona_sdk.adapters.build import is_held_out
from persona_sdk.adapters.dpo import prompt_ids
from persona_sdk.adapters.guidance import RowPlan, guided_forward
from persona_sdk.adapters.serving import AdapterServer
from persona_sdk.config import GuardConfig
from persona_sdk.decoding.guard import DecodeGuard
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
from persona_sdk.decoding.models import load_model
from persona_sdk.quality import degenerate_reasons
from persona_sdk.reward.basis import RewardBasis, default_basis_path
from persona_sdk.reward.pool import load_pool

STRENGTHS = (0.5, 1.0, 1.5)


def held_out_prompts(n: int) -> list[str]:
    prompts = sorted({e.prompt for e in load_pool() if is_held_out(e.prompt)})
    if len(prompts) < n:
        raise SystemExit(f"only {len(prompts)} held-out prompts in the pool")
    return prompts[:n]


def decode_rows(host, server, rows: list[tuple[int, str]], slots, strength: float | None,
                guard_on: bool, tokens: int) -> list[dict]:  # fmt: skip
    """One batch: (user, prompt) rows at ``strength`` (None: the base model)."""
    prompts = [prompt_ids(host, p) for _, p in rows]
    params = SamplingParams(max_new_tokens=tokens)
    forward, processors, guard = None, [], None
    if strength is not None:
        plans = [RowPlan(slots[u], strength) for u, _ in rows]
        if guard_on:
            guard = DecodeGuard([strength] * len(rows), [p for _, p in rows], GuardConfig(),
                                host.device)  # fmt: skip
            processors = [guard]
        forward = guided_forward(host, server, plans, guard)
    out = []
    for i, row in enumerate(BatchGeneration(host, prompts, params, forward, processors).run()):
        text = row.text.strip()
        report = guard.report(i, text, rows[i][1]) if guard else {}
        out.append({"user": rows[i][0], "prompt": rows[i][1], "text": text,
                    "reasons": degenerate_reasons(text, rows[i][1]),
                    "tripped": bool(report.get("tripped"))})  # fmt: skip
    return out


def run_setting(host, server, slots, users: int, prompts: list[str], strength, guard_on,
                tokens: int, batch_users: int, progress) -> dict:  # fmt: skip
    pairs = [(u, p) for u in range(users) for p in prompts]
    step = batch_users * len(prompts)
    name = "base" if strength is None else f"α={strength} guard {'on' if guard_on else 'off'}"
    task = progress.add_task(name, total=len(pairs))
    rows, started = [], time.perf_counter()
    for start in range(0, len(pairs), step):
        rows += decode_rows(host, server, pairs[start : start + step], slots, strength, guard_on,
                            tokens)  # fmt: skip
        progress.advance(task, len(pairs[start : start + step]))
    broken = [bool(r["reasons"]) for r in rows]
    return {"strength": strength, "guard": guard_on, "n": len(rows),
            "degenerate_rate": float(np.mean(broken)), "degenerate": int(sum(broken)),
            "tripped": sum(r["tripped"] for r in rows), "seconds": time.perf_counter() - started,
            "rows": rows}  # fmt: skip


def dominant_directions(setting: dict, coefficients: np.ndarray, names: list[str]) -> list:
    """Per direction: mean |coefficient| over broken mixtures ÷ over all users."""
    broken = sorted({r["user"] for r in setting["rows"] if r["reasons"]})
    if not broken:
        return []
    overall = np.abs(coefficients).mean(0)
    ratio = np.abs(coefficients[broken]).mean(0) / overall
    order = np.argsort(-ratio)
    return [{"direction": int(k), "name": names[k], "ratio": float(ratio[k])} for k in order]


def settings(users: int) -> list[tuple[float | None, bool, int]]:
    """(strength, guard, users): the base once, then strength 1 (the target's), then the
    others; guard on first in each."""
    order = (1.0, 0.5, 1.5)
    return [(None, False, 1)] + [(s, g, users) for s in order for g in (True, False)]


def load_done(path: Path) -> dict:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            setting = json.loads(line)
            done[(setting["strength"], setting["guard"])] = setting
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch-users", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mixture_sweep.jsonl"))
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--report-only", action="store_true", help="Report what --out holds.")
    args = parser.parse_args()
    host = load_model(progress=False)
    basis = RewardBasis.load(default_basis_path())
    adapters, server = basis_adapters(host), AdapterServer(host)
    rng = np.random.default_rng(args.seed)
    weights = rng.multivariate_normal(basis.prior_mean, basis.prior_cov, size=args.users)
    slots = [slot_for(host, server, adapters, w, f"sweep-{u}") for u, w in enumerate(weights)]
    prompts = held_out_prompts(args.prompts)
    done = load_done(args.out)
    with Progress(console=Console(stderr=True)) as progress:
        for strength, guard_on, users in settings(args.users):
            if (strength, guard_on) in done or args.report_only:
                continue
            setting = run_setting(host, server, slots, users, prompts, strength, guard_on,
                                  args.tokens, args.batch_users, progress)  # fmt: skip
            with args.out.open("a") as handle:
                handle.write(json.dumps(setting) + "\n")
            done[(strength, guard_on)] = setting
    coefficients = np.stack([w / np.abs(w).sum() for w in weights])
    report(args, done, coefficients, list(basis.axis_names))


def report(args, done: dict, coefficients: np.ndarray, names: list[str]) -> None:
    base = done[(None, False)]
    table = Table(title=f"mixture sweep: {args.users} prior users × {args.prompts} held-out "
                        f"prompts, {args.tokens} tokens; base degenerate "
                        f"{base['degenerate_rate']:.3f}")  # fmt: skip
    for column in ("strength", "guard off: degenerate", "guard on: degenerate", "guard trips",
                   "on − base (points)"):  # fmt: skip
        table.add_column(column, justify="right")
    summary = []
    for s in STRENGTHS:
        if (s, False) not in done or (s, True) not in done:
            table.add_row(f"{s}", "not run", "not run", "—", "—")
            continue
        off, on = done[(s, False)], done[(s, True)]
        delta = 100 * (on["degenerate_rate"] - base["degenerate_rate"])
        table.add_row(f"{s}", f"{off['degenerate_rate']:.3f} ({off['degenerate']})",
                      f"{on['degenerate_rate']:.3f} ({on['degenerate']})", str(on["tripped"]),
                      f"{delta:+.1f}")  # fmt: skip
        summary.append({"strength": s, "off": off["degenerate_rate"], "on": on["degenerate_rate"],
                        "trips": on["tripped"], "on_minus_base_points": delta,
                        "dominant_when_off": dominant_directions(off, coefficients, names)[:3],
                        "dominant_when_on": dominant_directions(on, coefficients, names)[:3],
                        })  # fmt: skip
    console = Console()
    console.print(table)
    for row in summary:
        top = ", ".join(f"{d['direction']} {d['name']} ×{d['ratio']:.2f}"
                        for d in row["dominant_when_off"])  # fmt: skip
        console.print(f"α={row['strength']}: broken mixtures without the guard lean on: {top}")
    if args.plot is not None:
        plot(args, base["degenerate_rate"], summary)
    print(json.dumps({"benchmark": "mixture_sweep", "config": vars(args) | {"out": str(args.out),
                      "plot": str(args.plot)}, "base_degenerate_rate": base["degenerate_rate"],
                      "strengths": summary}))  # fmt: skip


def plot(args, base_rate: float, summary: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(summary))
    figure, axis = plt.subplots(figsize=(7, 4.2))
    axis.bar(x - 0.2, [r["off"] for r in summary], 0.4, label="guard off (before issue 18)")
    axis.bar(x + 0.2, [r["on"] for r in summary], 0.4, label="guard on")
    axis.axhline(base_rate, color="gray", linestyle="--", label="base model")
    axis.set_xticks(x, [f"α = {r['strength']}" for r in summary])
    axis.set(ylabel="degenerate replies (share)",
             title=f"{args.users} prior users × {args.prompts} held-out prompts")  # fmt: skip
    axis.legend()
    axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
