"""``persona demo``: two users with different rules and a few A/B picks each answer the same
prompts; their picks give each their own generated adapter, their rules go in the prompt."""

from __future__ import annotations

import tempfile
import time

from rich.table import Table

from persona_sdk.cli.render import console, emit_json, err_console
from persona_sdk.persona import Persona

DEMO_USERS: dict[str, list[tuple[str, str | None]]] = {
    "ana": [("Answer in one sentence.", None)],
    "ben": [
        ("Explain it like I'm five years old.", None),
        ("Answer with a bulleted list.", "tips and advice"),
    ],
}
DEMO_PAIRS: dict[str, list[tuple[str, str, str]]] = {  # (prompt, chosen, rejected)
    "ana": [
        ("What is rain?", "Water falling from clouds.",
         "Rain is a fascinating meteorological phenomenon. Dear reader, let me explain in "
         "detail how water vapour condenses in the atmosphere and then falls to the ground."),
        ("How do I boil an egg?", "Boil it for nine minutes.",
         "1. Fill a pot with water.\n2. Bring it to a boil.\n3. Add the egg.\n4. Wait."),
    ],
    "ben": [
        ("How do plants eat?", "Hey! 🌱 Plants are like little chefs:\n- they drink water\n"
         "- they soak up sunshine\n- they make sugar for food",
         "Photosynthesis is the process by which plants convert light energy into "
         "chemical energy."),
        ("Why is the sky blue?", "Great question! Sunlight bounces around in the air, and "
         "blue bounces the most, so we see blue everywhere.",
         "Rayleigh scattering."),
    ],
}  # fmt: skip
DEMO_PROMPTS = [
    "Explain what a black hole is.",
    "Give me tips to sleep better.",
    "Why do leaves change color in autumn?",
]


def run_demo(settings, max_new_tokens: int = 60, as_json: bool = False) -> dict:
    """Run the demo in a throwaway data dir and print (or return) the replies."""
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="persona-demo-") as data_dir:
        persona = Persona.open(
            data_dir, model=settings.model, embedder=settings.embedder, device=settings.device
        )
        with persona:
            start = time.perf_counter()
            with err_console.status("loading the embedder…"):
                persona.embedder  # noqa: B018 - load now so the timing is separate
            timings["embedder_load_s"] = time.perf_counter() - start
            start = time.perf_counter()
            host = persona.host  # shows a progress bar the first time (conversion)
            timings["model_load_s"] = time.perf_counter() - start
            for user_id, user_rules in DEMO_USERS.items():
                for text, context in user_rules:
                    persona.user(user_id).add_rule(text, context=context)
                for prompt, chosen, rejected in DEMO_PAIRS[user_id]:
                    persona.user(user_id).add_pair(prompt, chosen=chosen, rejected=rejected)
            requests = [(u, p) for p in DEMO_PROMPTS for u in DEMO_USERS]
            start = time.perf_counter()
            with err_console.status(f"generating {len(requests)} replies in one batch…"):
                replies = persona.generate_batch(requests, max_new_tokens=max_new_tokens)
            timings["generate_s"] = time.perf_counter() - start
    tokens = sum(r.tokens for r in replies)
    timings["tokens_per_s"] = tokens / timings["generate_s"]
    result = {
        "model": host.name,
        "model_converted_now": host.converted,
        "users": {u: [t for t, _ in rs] for u, rs in DEMO_USERS.items()},
        "replies": [r.to_dict() | {"prompt": p} for (_, p), r in zip(requests, replies)],
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if as_json:
        emit_json(result)
        return result
    table = Table(title=f"persona demo on {host.name}", show_lines=True)
    table.add_column("prompt", style="bold", max_width=24)
    for user_id, user_rules in DEMO_USERS.items():
        rules = "; ".join(t + (f" (for {c})" if c else "") for t, c in user_rules)
        table.add_column(f"{user_id}: {rules}", ratio=1)
    by_request = dict(zip(requests, replies))
    for prompt in DEMO_PROMPTS:
        cells = []
        for user_id in DEMO_USERS:
            reply = by_request[(user_id, prompt)]
            used = ", ".join(str(r.id) for r in reply.used_rules) or "none"
            cells.append(f"{reply.text}\n[dim](rules used: {used})[/]")
        table.add_row(prompt, *cells)
    console.print(table)
    converted = " (converted from GGUF this run)" if host.converted else ""
    console.print(
        f"[dim]model load {timings['model_load_s']:.2f} s{converted} · embedder load "
        f"{timings['embedder_load_s']:.2f} s · {len(replies)} replies, {tokens} tokens in "
        f"{timings['generate_s']:.1f} s ({timings['tokens_per_s']:.0f} tok/s batched)[/]"
    )
    return result
