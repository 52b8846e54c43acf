"""Guided decoding's cost at the decode loop: plain tokens/s against guided (the user's
adapter at strength 1, mixed with the base under the guard's per-token KL budget), at
batch 1 and 8, with the shipped SmolLM2 basis adapters and one user's coefficients.

Below the API (no retrieval, reward or text checks): what the guard's base copy and the
routed LoRA cost per step. ``--model`` is the model folder (default: the embedded model,
converted); ``--random-weights`` keeps its config and tokenizer but draws new weights,
which is how this runs on a machine the real weights cannot reach (the text is noise, so
the guard's trip-wire is off and every row decodes to the token limit).

Run: .venv/bin/python benchmarks/bench_guided.py [--device cuda] [--dtype bfloat16]
[--tokens 64] [--rounds 3]. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from persona_sdk.adapters.combine import BasisAdapters, coefficients
from persona_sdk.adapters.guidance import RowPlan, guided_forward
from persona_sdk.adapters.manifest import AdapterManifest
from persona_sdk.adapters.serving import AdapterServer, Slot
from persona_sdk.config import GuardConfig, package_data
from persona_sdk.decoding.guard import DecodeGuard
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
from persona_sdk.decoding.models import ModelHost, load_model

PROMPTS = [
    "Explain what a black hole is.",
    "Give me tips to sleep better.",
    "Write a short note to my manager asking for Friday off.",
    "Why do leaves change color in autumn?",
]


def load_host(args: argparse.Namespace) -> ModelHost:
    dtype = getattr(torch, args.dtype)
    if not args.random_weights:
        return load_model(args.model, device=args.device, dtype=args.dtype, shared=False)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_config(config).to(args.device, dtype)
    host = ModelHost(model, AutoTokenizer.from_pretrained(args.model), "random-weights")
    host.stop_token_ids = []  # noise text: every row runs to the token limit
    return host


def basis_adapters(host: ModelHost) -> BasisAdapters:
    """The shipped SmolLM2 basis adapters, on the host's device and dtype."""
    folder = package_data("adapters") / "smollm2-135m-instruct"
    m = AdapterManifest.load(folder)
    return BasisAdapters.load(folder, m.base_model, m.base_fingerprint, m.basis_id,
                              len(m.directions), host.device,
                              next(host.model.parameters()).dtype)  # fmt: skip


def slot_for(host: ModelHost, server: AdapterServer, adapters: BasisAdapters,
             weights: np.ndarray, key: str) -> Slot:  # fmt: skip
    """A generated user adapter (its coefficients over the shared factors), cached."""
    scale = adapters.scale(coefficients(weights)).to(host.device)
    return server.put(key, Slot(key, adapters.factors, scale))


def user_slot(host: ModelHost, server: AdapterServer) -> Slot:
    """One fixed user (weights drawn once) over the shipped basis adapters."""
    adapters = basis_adapters(host)
    weights = np.random.default_rng(0).standard_normal(adapters.rank)
    return slot_for(host, server, adapters, weights, "bench-user")


def decode(host: ModelHost, server: AdapterServer, slot: Slot | None, batch: int,
           tokens: int) -> tuple[int, float, int]:  # fmt: skip
    """(tokens, seconds, capped tokens) of one batch; guided when ``slot`` is given."""
    prompts = [host.chat_ids([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
               for i in range(batch)]  # fmt: skip
    params = SamplingParams(max_new_tokens=tokens)
    forward, processors, guard = None, [], None
    if slot is not None:
        guard = DecodeGuard([1.0] * batch, [None] * batch, GuardConfig(trip_wire=False),
                            host.device)  # fmt: skip
        forward = guided_forward(host, server, [RowPlan(slot, 1.0)] * batch, guard)
        processors = [guard]
    gen = BatchGeneration(host, prompts, params, forward, processors)
    sync = torch.cuda.synchronize if host.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    rows = gen.run()
    sync()
    seconds = time.perf_counter() - start
    capped = (
        sum(int(guard.report(i, "", None)["capped_tokens"]) for i in range(batch)) if guard else 0
    )
    return sum(len(r.tokens) for r in rows), seconds, capped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Model folder (default: the embedded one).")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    host = load_host(args)
    server = AdapterServer(host)
    slot = user_slot(host, server)
    decode(host, server, slot, 2, 4)  # warm-up: kernels, allocator, the wrapped layers
    decode(host, server, None, 2, 4)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        rates = {"plain": [], "guided": []}
        capped = 0
        for _ in range(args.rounds):  # alternate, so drift hits both alike
            for kind in ("plain", "guided"):
                n, seconds, c = decode(host, server, slot if kind == "guided" else None, batch,
                                       args.tokens)  # fmt: skip
                rates[kind].append(n / seconds)
                capped += c
        plain, guided = statistics.median(rates["plain"]), statistics.median(rates["guided"])
        rows.append({"batch": batch, "plain_tok_s": plain, "guided_tok_s": guided,
                     "guided_over_plain": guided / plain, "capped_tokens": capped})  # fmt: skip
    report(args, host, rows)


def report(args: argparse.Namespace, host: ModelHost, rows: list[dict]) -> None:
    device = torch.cuda.get_device_name() if host.device.type == "cuda" else "cpu"
    table = Table(title=f"guided vs plain decoding: {host.name}, {device}, {args.dtype}, "
                        f"{args.tokens} tokens")  # fmt: skip
    for column in ("batch", "plain tok/s", "guided tok/s", "guided ÷ plain", "capped tokens"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["batch"]), f"{r['plain_tok_s']:.1f}", f"{r['guided_tok_s']:.1f}",
                      f"{r['guided_over_plain']:.3f}", str(r["capped_tokens"]))  # fmt: skip
    Console().print(table)
    print(json.dumps({"benchmark": "bench_guided", "model": host.name, "device": device,
                      "config": {k: v for k, v in vars(args).items()}, "rows": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
