"""Output helpers for the CLI: JSON for scripts, rich tables for people, one-line errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from persona_sdk.constraints.select import EnforcedRule, rule_constraints
from persona_sdk.memory.retrieval import CutRule, RetrievedRule
from persona_sdk.memory.store import Memory
from persona_sdk.reward.profile import Profile, contradicts
from persona_sdk.reward.profile import label as contrast_label
from persona_sdk.reward.rewards import RewardProfile

console = Console()
err_console = Console(stderr=True)


# C0/C1 controls (ESC starts terminal escape sequences; BEL, backspace, CR rewrite lines)
# and bidi overrides, which reorder what a reader sees; newlines and tabs are kept
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: object) -> str:
    """Stored or user-given text made safe for a terminal: control characters removed."""
    return _CONTROLS.sub("", str(text))


def safe(text: object) -> str:
    """Text to embed in a rich markup string: cleaned, and its brackets escaped."""
    return escape(clean(text))


def plain(text: object) -> Text:
    """A table cell or title shown as it is (no markup parsing), cleaned."""
    return Text(clean(text))


def emit_json(data: object) -> None:
    """Print ``data`` as JSON on stdout (nothing else goes there with --json)."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def report(as_json: bool, data: object, message: str) -> None:
    """JSON for scripts, or one plain line for people."""
    if as_json:
        emit_json(data)
    else:
        console.print(plain(message), highlight=False)


def short(text: str | None, width: int = 80) -> str:
    text = " ".join(clean(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def rules_table(rules: Iterable[Memory], title: str) -> Table:
    table = Table(title=plain(title), title_justify="left")
    for column in ("id", "rule", "context", "source", "support", "confidence", "status",
                   "enforced as"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for rule in rules:
        status = "valid" if rule.is_valid else f"superseded by {rule.superseded_by}"
        table.add_row(
            str(rule.id),
            plain(rule.text or ""),
            plain(rule.context or "(everywhere)"),
            rule.source,
            str(rule.support),
            f"{rule.confidence:.2f}",
            status,
            plain(enforced_as(rule.text) if rule.is_valid else "—"),
        )
    return table


def enforced_as(text: str | None) -> str:
    """The constraints a rule is enforced as while decoding, or "prompt only"."""
    found = rule_constraints(text or "")
    return constraint_list(found) if found else "prompt only"


def constraint_list(constraints: Iterable) -> str:
    """Constraints as ``kind(parameter=value, ...)``: what is enforced, with which values."""
    shown = []
    for c in constraints:
        params = {k: v for k, v in c.to_dict().items() if k != "kind"}
        shown.append(c.kind + "(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")")
    return "; ".join(shown)


def memories_table(memories: Iterable[Memory], title: str) -> Table:
    table = Table(title=plain(title), title_justify="left")
    for column in ("id", "kind", "prompt", "chosen", "rejected", "created"):
        table.add_column(column, overflow="fold")
    for memory in memories:
        table.add_row(
            str(memory.id),
            memory.kind,
            plain(short(memory.prompt, 40)),
            plain(short(memory.chosen, 40)),
            plain(short(memory.rejected, 40)),
            memory.created_at[:19],
        )
    return table


def used_rules_table(
    rules: list[RetrievedRule],
    title: str = "rules used",
    cut: Iterable[CutRule] = (),
    enforced: Iterable[EnforcedRule] = (),
) -> Table:
    """The rules a request used, then any applying rule that was cut, with why; with
    ``enforced``, what each is enforced as (after the newest-wins merge)."""
    table = Table(title=plain(title), title_justify="left")
    held = {r.rule_id: constraint_list(r.constraints) for r in enforced}
    for column in ("id", "rule", "similarity", "why", "enforced as"):
        table.add_column(column, overflow="fold")
    for rule in rules:
        why = "applies everywhere" if rule.is_global else f"context: {rule.context}"
        table.add_row(str(rule.id), plain(rule.text), f"{rule.similarity:.3f}", plain(why),
                      plain(held.get(rule.id, "prompt only")))  # fmt: skip
    for rule in cut:
        table.add_row(str(rule.id), plain(rule.text), "cut", plain(rule.reason),
                      plain(held.get(rule.id, "—")))  # fmt: skip
    return table


def weight_bars(profile: RewardProfile, width: int = 16) -> Table:
    """Axis weights as bars centred on zero (left: less of the axis, right: more)."""
    peak = max([abs(w) for w in profile.weights] + [1e-9])
    state = f"{profile.n_pairs} pairs" if profile.personalized else "population default"
    table = Table(title=f"reward weights of {profile.user_id} ({state})", title_justify="left")
    table.add_column("axis")
    table.add_column("weight", no_wrap=True)
    table.add_column("value", justify="right")
    for k, (name, w, s) in enumerate(zip(profile.axes, profile.weights, profile.std)):
        name = axis_display_name(name, k)
        cells = round(abs(w) / peak * width)
        left = " " * (width - cells) + "█" * cells if w < 0 else " " * width
        right = "█" * cells + " " * (width - cells) if w > 0 else " " * width
        table.add_row(name, f"[red]{left}[/]│[green]{right}[/]", f"{w:+.2f} ± {s:.2f}")
    return table


def axis_display_name(name: str, k: int) -> str:
    """An axis's name for people: axes named after no style feature ("content 8") are
    shown as "other", since their sign says nothing a person can check."""
    return f"other (axis {k + 1})" if name.startswith("content ") else name


def revealed_table(profile: Profile) -> Table:
    """What the user's pairs and edits revealed, with the model's probed agreement."""
    table = Table(title=f"revealed by {profile.n_signals} pairs and edits", title_justify="left")
    for column in ("prefers", "signals", "edits", "confidence", "model P", "check"):
        table.add_column(column, justify="left" if column in ("prefers", "check") else "right")
    for r in profile.revealed:
        probe = profile.probed_for(r.measure)
        p = "—" if probe is None or not r.direction else f"{probe.p_of(r.direction):.2f}"
        check = "[red]contradicted[/]" if contradicts(r, probe) else ""
        table.add_row(r.label, r.counts, str(r.edits), f"{r.confidence:.2f}", p, check)
    return table


def probed_table(profile: Profile) -> Table:
    """What the reward model prefers on minimal pairs (same reply with and without)."""
    state = "" if profile.personalized else " (population default)"
    table = Table(title=f"reward model, probed on minimal pairs{state}", title_justify="left")
    for column in ("prefers", "over", "P", "probes"):
        table.add_column(column, justify="right" if column in ("P", "probes") else "left")
    for p in profile.probed:
        side = p.direction or 1
        table.add_row(
            contrast_label(p.measure, side), contrast_label(p.measure, -side),
            f"{p.p_of(side):.2f}", str(p.probes),
        )  # fmt: skip
    return table
