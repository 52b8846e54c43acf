"""User-adapter speed on the embedded model: generating a user's adapter (their coefficients
over the shipped basis adapters' shared factors, cached in the server), a cached switch,
memory per cached adapter, decode speed with and without an adapter, and the recorded
build time.

Usage: ``python benchmarks/bench_adapters.py [--repeats 30] [--tokens 48]``.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from bench_reward import percentiles  # run as a script: benchmarks/ is on sys.path
from rich.console import Console
from rich.table import Table

from persona_sdk import Persona
from persona_sdk.adapters.combine import BasisAdapters
from persona_sdk.adapters.manager import UserAdapters
from persona_sdk.adapters.serving import AdapterServer, Slot
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
from persona_sdk.decoding.models import ModelHost

PAIRS = [
    ("Write a note to my team about Friday", "Team: Friday is off. Enjoy!",
     "Dear team,\n\nI am writing to let you know that the office will be closed on Friday."),
    ("How do I boil an egg?", "1. Boil water.\n2. Add the egg.\n3. Wait 9 minutes.",
     "Boiling an egg is a simple process that many people enjoy in the morning."),
]  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=48)
    return parser.parse_args()


def time_generate_and_switch(
    manager: UserAdapters, repeats: int
) -> tuple[list[float], list[float], Slot]:
    """Milliseconds to generate the user's adapter (cache dropped first) and to switch to it
    on a cache hit; also the last adapter generated."""
    generate_ms, switch_ms = [], []
    for _ in range(repeats):
        manager.server.drop_user(manager._key("bench"))
        t = time.perf_counter()
        slot = manager.activate("bench")  # read the weights, make the adapter, cache it
        generate_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        with manager.server.active(manager.activate("bench")):  # cache hit + switch
            pass
        switch_ms.append((time.perf_counter() - t) * 1000)
    return generate_ms, switch_ms, slot


def decode_speeds(host: ModelHost, server: AdapterServer, adapter: Slot, tokens: int) -> dict:
    """Decode tokens per second without, with and again without ``adapter``."""
    ids = [host.chat_ids([{"role": "user", "content": "Explain how a rainbow forms."}])]
    params = SamplingParams(max_new_tokens=tokens)
    speeds = {}
    for label, active in (("plain", None), ("adapter", adapter), ("plain again", None)):
        with server.active(active):
            gen = BatchGeneration(host, ids, params)
            gen.run()
        speeds[label] = len(gen.rows[0].tokens) / gen.timings["total"]
    return speeds


def build_stats(basis_adapters: BasisAdapters) -> tuple[list[float], list[int], int]:
    """Seconds per direction, the distinct step counts and the total steps of the build;
    directions may be retrained with more steps (their stats say), so also per step."""
    stats = [e["stats"] for e in basis_adapters.manifest.directions.values()]
    seconds = [s["seconds"] for s in stats]
    return seconds, sorted({s["steps"] for s in stats}), sum(s["steps"] for s in stats)


def results_table(result: dict, load_s: float, plain: float, adapter_speed: float) -> Table:
    table = Table(title="user adapters on SmolLM2-135M (CPU)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        "generate a user's adapter p50 / p99",
        "{p50:.1f} / {p99:.1f} ms".format(**result["generate_adapter_ms"]),
    )
    table.add_row(
        "cached switch p50 / p99", "{p50:.3f} / {p99:.3f} ms".format(**result["cached_switch_ms"])
    )
    table.add_row("memory per cached generated adapter", f"{result['cached_adapter_bytes']} bytes")
    table.add_row("shared basis factors (once per model)",
                  f"{result['shared_basis_megabytes']} MB")  # fmt: skip
    table.add_row(
        "standalone adapter (export, fine-tune)",
        f"{result['standalone_adapter_megabytes']} MB (rank {result['adapter_rank']})",
    )
    table.add_row("load + verify basis adapters", f"{load_s:.2f} s")
    table.add_row("decode tok/s plain / adapter", f"{plain:.1f} / {adapter_speed:.1f}")
    steps = "/".join(map(str, result["build_steps_per_direction"]))
    table.add_row(
        "build time per direction",
        f"{result['build_seconds_per_direction']} s ({steps} DPO steps, "
        f"{result['build_seconds_per_step']} s per step)",
    )
    return table


def main() -> None:
    args = parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, Persona.open(tmp) as persona:
        user = persona.user("bench")
        for prompt, chosen, rejected in PAIRS:
            user.add_pair(prompt, chosen=chosen, rejected=rejected)
        manager = persona.adapters
        start = time.perf_counter()
        basis_adapters = manager.basis_adapters  # read + verify the K adapters once
        load_s = time.perf_counter() - start
        manager.activate("bench")  # warm: the first adapter wraps the target layers
        generate_ms, switch_ms, generated = time_generate_and_switch(manager, args.repeats)
        slot = manager.activate("bench")
        adapter = manager.resolve("bench")  # the same update as a standalone PEFT state
        speeds = decode_speeds(persona.host, manager.server, generated, args.tokens)
        plain = 0.5 * (speeds["plain"] + speeds["plain again"])

    per_direction, steps, total_steps = build_stats(basis_adapters)
    result = {
        "generate_adapter_ms": percentiles(generate_ms),
        "cached_switch_ms": percentiles(switch_ms),
        "cached_adapter_bytes": slot.nbytes,
        "shared_basis_megabytes": round(basis_adapters.factors.nbytes / 2**20, 2),
        "standalone_adapter_megabytes": round(adapter.nbytes / 2**20, 2),
        "adapter_rank": adapter.rank,
        "basis_adapters_load_s": round(load_s, 3),
        "decode_tokens_per_s": {"plain": round(plain, 2), "adapter": round(speeds["adapter"], 2)},
        "adapter_over_plain": round(speeds["adapter"] / plain, 3),
        "build_seconds_per_direction": round(float(np.mean(per_direction)), 1),
        "build_steps_per_direction": steps,
        "build_seconds_per_step": round(sum(per_direction) / total_steps, 2),
    }
    console.print(results_table(result, load_s, plain, speeds["adapter"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
