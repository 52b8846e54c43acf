"""Output helpers for the CLI: JSON for scripts, rich tables for people, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.table import Table

from persona_sdk.memory.retrieval import RetrievedRule
from persona_sdk.memory.store import Memory
from persona_sdk.reward.rewards import RewardProfile

console = Console()
err_console = Console(stderr=True)


def emit_json(data: object) -> None:
    """Print ``data`` as JSON on stdout (nothing else goes there with --json)."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def report(as_json: bool, data: object, message: str) -> None:
    """JSON for scripts, or one plain line for people."""
    if as_json:
        emit_json(data)
    else:
        console.print(message, highlight=False)


def short(text: str | None, width: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def rules_table(rules: Iterable[Memory], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "rule", "context", "source", "support", "confidence", "status"):
        table.add_column(column, overflow="fold")
    for rule in rules:
        status = "valid" if rule.is_valid else f"superseded by {rule.superseded_by}"
        table.add_row(
            str(rule.id),
            rule.text or "",
            rule.context or "(everywhere)",
            rule.source,
            str(rule.support),
            f"{rule.confidence:.2f}",
            status,
        )
    return table


def memories_table(memories: Iterable[Memory], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "kind", "prompt", "chosen", "rejected", "created"):
        table.add_column(column, overflow="fold")
    for memory in memories:
        table.add_row(
            str(memory.id),
            memory.kind,
            short(memory.prompt, 40),
            short(memory.chosen, 40),
            short(memory.rejected, 40),
            memory.created_at[:19],
        )
    return table


def used_rules_table(rules: list[RetrievedRule], title: str = "rules used") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "rule", "similarity", "why"):
        table.add_column(column, overflow="fold")
    for rule in rules:
        why = "applies everywhere" if rule.is_global else f"context: {rule.context}"
        table.add_row(str(rule.id), rule.text, f"{rule.similarity:.3f}", why)
    return table


def weight_bars(profile: RewardProfile, width: int = 16) -> Table:
    """Axis weights as bars centred on zero (left: less of the axis, right: more)."""
    peak = max([abs(w) for w in profile.weights] + [1e-9])
    state = f"{profile.n_pairs} pairs" if profile.personalized else "population default"
    table = Table(title=f"reward weights of {profile.user_id} ({state})", title_justify="left")
    table.add_column("axis")
    table.add_column("weight", no_wrap=True)
    table.add_column("value", justify="right")
    for name, w, s in zip(profile.axes, profile.weights, profile.std):
        cells = round(abs(w) / peak * width)
        left = " " * (width - cells) + "█" * cells if w < 0 else " " * width
        right = "█" * cells + " " * (width - cells) if w > 0 else " " * width
        table.add_row(name, f"[red]{left}[/]│[green]{right}[/]", f"{w:+.2f} ± {s:.2f}")
    return table
