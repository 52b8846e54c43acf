"""``persona demo``: two users with different rules and a few A/B picks each answer the same
prompts beside the base model; their picks give each their own generated adapter (at a
strength that grows with that evidence), their rules go in the prompt."""

from __future__ import annotations

import tempfile
import time

from rich.table import Table

from persona_sdk.cli.render import console, emit_json, err_console
from persona_sdk.persona import Persona
from persona_sdk.reply import Reply

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


BASE = "(base model)"  # the column every user is compared with: no rules, no pairs


def add_demo_users(persona: Persona) -> None:
    """Store the demo users' rules and A/B picks in ``persona``."""
    for user_id, user_rules in DEMO_USERS.items():
        for text, context in user_rules:
            persona.user(user_id).add_rule(text, context=context)
        for prompt, chosen, rejected in DEMO_PAIRS[user_id]:
            persona.user(user_id).add_pair(prompt, chosen=chosen, rejected=rejected)


def demo_replies(persona: Persona, max_new_tokens: int) -> tuple[list[Reply], dict[str, Reply]]:
    """Every demo user's reply to every demo prompt (prompt-major, at each user's default
    strength) and the base model's reply to each prompt, all in one batch."""
    requests = [(u, p) for p in DEMO_PROMPTS for u in DEMO_USERS]
    base_id = "demo-base-model"  # never stored: no rules, no pairs, strength 0
    replies = persona.generate_batch(
        requests + [(base_id, p) for p in DEMO_PROMPTS], max_new_tokens=max_new_tokens
    )
    return replies[: len(requests)], dict(zip(DEMO_PROMPTS, replies[len(requests) :]))


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
            add_demo_users(persona)
            start = time.perf_counter()
            rows = len(DEMO_PROMPTS) * (len(DEMO_USERS) + 1)
            with err_console.status(f"generating {rows} replies in one batch…"):
                replies, base = demo_replies(persona, max_new_tokens)
            timings["generate_s"] = time.perf_counter() - start
    tokens = sum(r.tokens for r in replies) + sum(r.tokens for r in base.values())
    timings["tokens_per_s"] = tokens / timings["generate_s"]
    prompts = [p for p in DEMO_PROMPTS for _ in DEMO_USERS]
    result = {
        "model": host.name,
        "model_converted_now": host.converted,
        "users": {u: [t for t, _ in rs] for u, rs in DEMO_USERS.items()},
        "replies": [r.to_dict() | {"prompt": p} for p, r in zip(prompts, replies)],
        "base": [{"prompt": p, "text": r.text, "tokens": r.tokens} for p, r in base.items()],
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    if as_json:
        emit_json(result)
        return result
    console.print(_table(host.name, replies, base))
    converted = " (converted from GGUF this run)" if host.converted else ""
    console.print(
        f"[dim]model load {timings['model_load_s']:.2f} s{converted} · embedder load "
        f"{timings['embedder_load_s']:.2f} s · {len(replies) + len(base)} replies, {tokens} "
        f"tokens in {timings['generate_s']:.1f} s ({timings['tokens_per_s']:.0f} tok/s "
        "batched)[/]"
    )
    return result


def _cell(reply: Reply) -> str:
    """A user's reply with what shaped it: rules, strength, and what the guard did."""
    used = ", ".join(str(r.id) for r in reply.used_rules) or "none"
    notes = [f"rules used: {used}", f"strength {reply.strength:.2f}"]
    guard = reply.guard or {}
    if guard.get("capped_tokens"):
        notes.append(f"{guard['capped_tokens']} tokens held to the KL budget")
    if guard.get("tripped"):
        notes.append(f"guard tripped ({', '.join(guard['reasons'])}): base from token "
                     f"{guard['tripped_at_token']}")  # fmt: skip
    return f"{reply.text}\n[dim]({'; '.join(notes)})[/]"


def _table(model: str, replies: list[Reply], base: dict[str, Reply]) -> Table:
    table = Table(title=f"persona demo on {model}", show_lines=True)
    table.add_column("prompt", style="bold", max_width=24)
    table.add_column(BASE, ratio=1, style="dim")
    for user_id, user_rules in DEMO_USERS.items():
        rules = "; ".join(t + (f" (for {c})" if c else "") for t, c in user_rules)
        table.add_column(f"{user_id}: {rules}", ratio=1)
    users = list(DEMO_USERS)
    for i, prompt in enumerate(DEMO_PROMPTS):
        mine = replies[i * len(users) : (i + 1) * len(users)]
        table.add_row(prompt, base[prompt].text, *(_cell(r) for r in mine))
    return table
