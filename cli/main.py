"""The ``persona`` command: a thin CLI over the Python API."""

from __future__ import annotations

from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from persona_sdk.cli import adapter_cmds, eval_cmds, memory_cmds, reward_cmds, serve_cmds
from persona_sdk.cli.common import JsonOption, Settings, existing_user, open_persona
from persona_sdk.cli.render import (
    clean,
    console,
    emit_json,
    err_console,
    memories_table,
    probed_table,
    report,
    revealed_table,
    rules_table,
    safe,
    used_rules_table,
    weight_bars,
)
from persona_sdk.config import default_data_dir
from persona_sdk.errors import PersonaError
from persona_sdk.persona import Persona


class PersonaGroup(TyperGroup):
    """Turns every expected error into one line on stderr and exit code 2."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _one_line_summaries(self)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PersonaError as exc:
            err_console.print(
                f"[bold red]error:[/] {safe(exc)}", markup=True, highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None  # typer's own Exit: it vendors click


def _one_line_summaries(command: click.Command) -> None:
    """Command lists show each docstring's first paragraph on one line (rich help would
    otherwise keep the docstring's own line breaks mid-sentence)."""
    if command.help and not command.short_help:
        command.short_help = " ".join(command.help.split("\n\n")[0].split())
    for sub in getattr(command, "commands", {}).values():
        _one_line_summaries(sub)


app = typer.Typer(
    cls=PersonaGroup,
    help="Personalize one shared LLM for every user: rules, memories, generation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    data: Path = typer.Option(
        None, "--data", help="Data dir (default: $PERSONA_HOME or ~/.persona)."
    ),
    model: str = typer.Option(
        None,
        "--model",
        help="HF id or local path of the base model (default: the embedded SmolLM2-135M-Instruct).",
    ),
    embedder: str = typer.Option(
        None,
        "--embedder",
        help="sentence-transformers id or path (default: the embedded all-MiniLM-L6-v2).",
    ),
    device: str = typer.Option(
        None, "--device", help="cpu, cuda, cuda:1... (default: cuda if available)."
    ),
    store: str = typer.Option(
        None,
        "--store",
        envvar="PERSONA_STORE",
        show_envvar=True,
        help="postgresql://… to keep memories in PostgreSQL (default: persona.db, SQLite, "
        "in the data dir).",
    ),
) -> None:
    ctx.obj = Settings(data or default_data_dir(), model, embedder, device, store)


@app.command()
def users(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """List users with stored data."""
    with open_persona(ctx) as persona:
        ids = persona.users()
        counts = {uid: persona.store.count_memories(uid) for uid in ids}
    if json_:
        emit_json([{"user_id": uid, **counts[uid]} for uid in ids])
        return
    if not ids:
        console.print("no users yet: add one with [bold]persona add-rule USER TEXT[/]")
    for uid in ids:
        c = counts[uid]
        console.print(
            f"{uid}  rules={c['rule']} pairs={c['pair']} edits={c['edit']}", highlight=False
        )


@app.command()
def show(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    axes: bool = typer.Option(False, "--axes", help="Also show the reward basis axis weights."),
    json_: bool = JsonOption,
) -> None:
    """Show a user's profile (rules, what their pairs and edits revealed, what their reward
    model prefers on minimal pairs, contradictions), then their pairs and edits."""
    with open_persona(ctx) as persona:
        user = existing_user(persona, user_id)
        rules = user.rules(include_superseded=True)
        others = [m for m in user.memories() if m.kind != "rule"]
        counts = persona.store.count_memories(user.id)
        profile = user.profile()
        weights = user.reward_profile() if axes else None
    if json_:
        shown = {
            "user_id": user.id,
            "counts": counts,
            "profile": profile.to_dict(),
            "rules": [r.to_dict() for r in rules],
            "memories": [m.to_dict() for m in others],
        }
        emit_json(shown if weights is None else {**shown, "reward": weights.to_dict()})
        return
    console.print(
        f"[bold]{user.id}[/]: {counts['rule']} rules, {counts['pair']} pairs, "
        f"{counts['edit']} edits"
    )
    console.print(rules_table(rules, "rules"))
    if profile.revealed:
        console.print(revealed_table(profile))
    console.print(probed_table(profile))
    if profile.contradictions:
        console.print(
            "[bold red]low confidence:[/] the reward model goes against "
            + ", ".join(profile.contradictions), highlight=False,
        )  # fmt: skip
    if others:
        console.print(memories_table(others, "pairs and edits"))
    if weights is not None:
        console.print(weight_bars(weights))


@app.command()
def rules(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    all_: bool = typer.Option(False, "--all", help="Include superseded rules."),
    json_: bool = JsonOption,
) -> None:
    """List a user's rules."""
    with open_persona(ctx) as persona:
        found = existing_user(persona, user_id).rules(include_superseded=all_)
    if json_:
        emit_json([r.to_dict() for r in found])
    else:
        console.print(rules_table(found, f"rules of {user_id}"))


@app.command("add-rule")
def add_rule(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    text: str = typer.Argument(..., help="The rule, e.g. 'Answer in one sentence.'"),
    context: str = typer.Option(None, "--context", help="Only apply to requests like this."),
    json_: bool = JsonOption,
) -> None:
    """Add a stated rule for a user (creates the user)."""
    with open_persona(ctx) as persona:
        user = persona.user(user_id)
        with err_console.status("embedding…"):
            memory = user.add_rule(text, context=context)
    report(json_, memory.to_dict(), f"added rule {memory.id} for {user.id}")


@app.command("delete-memory")
def delete_memory(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    memory_id: int = typer.Argument(..., metavar="MEMORY_ID"),
    json_: bool = JsonOption,
) -> None:
    """Delete one memory (rule, pair or edit) of a user."""
    with open_persona(ctx) as persona:
        existing_user(persona, user_id).delete_memory(memory_id)
    report(
        json_,
        {"user_id": user_id, "deleted": memory_id},
        f"deleted memory {memory_id} of {user_id}",
    )


@app.command()
def forget(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    json_: bool = JsonOption,
) -> None:
    """Delete every trace of a user: memories, vectors, indexes, adapters, caches."""
    with open_persona(ctx) as persona:
        user = existing_user(persona, user_id)
        if not yes and not typer.confirm(f"Forget {user.id} and all their data?"):
            err_console.print("aborted; nothing was deleted")
            raise typer.Exit(1)
        user.forget()
    report(json_, {"user_id": user_id, "forgotten": True}, f"forgot {user_id}")


@app.command()
def explain(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    prompt: str = typer.Argument(...),
    json_: bool = JsonOption,
) -> None:
    """Show which rules a request would use, and why."""
    with open_persona(ctx) as persona:
        explanation = existing_user(persona, user_id).explain(prompt)
    if json_:
        emit_json(explanation.to_dict())
    else:
        console.print(used_rules_table(explanation.rules, f"rules for: {prompt}", explanation.cut,
                                       explanation.enforced))  # fmt: skip


def _load_model(persona: Persona) -> None:
    with err_console.status("loading model…"):
        persona.host  # noqa: B018 - load now so the spinner covers it


@app.command()
def generate(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    prompt: str = typer.Argument(...),
    strength: float = typer.Option(
        None,
        help="Guidance strength: 0 = base model, 1 = user adapter (default: grows with the "
        "user's own evidence, 0 with no pairs).",
    ),
    best_of: int = typer.Option(
        1, "--best-of", help="Sample N candidates, keep the one the user's reward ranks first."
    ),
    max_new_tokens: int = typer.Option(200, help="Most tokens to generate."),
    temperature: float = typer.Option(None, help="0 = greedy (the default; 0.8 with --best-of)."),
    seed: int = typer.Option(None, help="Seed for sampling."),
    stream: bool = typer.Option(False, "--stream", help="Print tokens as they come."),
    json_: bool = JsonOption,
) -> None:
    """Generate a personalized reply: rules retrieved into the prompt, decoding guided by
    the user's adapter at --strength, optionally reranked (--best-of)."""
    with open_persona(ctx) as persona:
        _load_model(persona)
        kwargs = dict(strength=strength, max_new_tokens=max_new_tokens, temperature=temperature,
                      seed=seed, best_of=best_of)  # fmt: skip
        if stream and not json_:
            chunks = persona.generate(user_id, prompt, stream=True, **kwargs)
            for chunk in chunks:
                console.out(clean(chunk), end="", highlight=False)
            console.out("")
            reply = chunks.reply
        else:
            reply = persona.generate(user_id, prompt, **kwargs)
            if not json_:
                console.out(clean(reply.text), highlight=False)
    if json_:
        emit_json(reply.to_dict())
        return
    cut = getattr(reply.used_rules, "cut", [])
    if reply.used_rules or cut:
        err_console.print(used_rules_table(reply.used_rules, cut=cut))
    err_console.print(
        f"[dim]{reply.tokens} tokens in {reply.timings['generate']:.0f} ms · strength "
        f"{reply.strength:g} · reward {reply.reward:+.3f}"
        + (f" (best of {len(reply.candidates)})" if reply.candidates else "")
        + "[/]"
    )


@app.command()
def chat(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    strength: float = typer.Option(None, help="Guidance strength (default: the user's)."),
    max_new_tokens: int = typer.Option(200, help="Most tokens per reply."),
) -> None:
    """Chat with the model as USER (a REPL; /exit or Ctrl-D quits, /rules lists rules)."""
    with open_persona(ctx) as persona:
        _load_model(persona)
        user = persona.user(user_id)
        history: list[dict[str, str]] = []
        console.print(f"chatting as [bold]{user.id}[/]; /exit to quit")
        while True:
            try:
                line = input("you> ").strip()
            except (EOFError, KeyboardInterrupt):
                console.print()
                break
            if line in ("/exit", "/quit"):
                break
            if line == "/rules":
                console.print(rules_table(user.rules(), f"rules of {user.id}"))
                continue
            if not line:
                continue
            history.append({"role": "user", "content": line})
            chunks = persona.generate(
                user.id, history, stream=True, strength=strength, max_new_tokens=max_new_tokens
            )
            console.out("bot> ", end="")
            for chunk in chunks:
                console.out(clean(chunk), end="", highlight=False)
            console.out("")
            history.append({"role": "assistant", "content": chunks.reply.text or "…"})


@app.command()
def demo(
    ctx: typer.Context,
    max_new_tokens: int = typer.Option(60, help="Most tokens per reply."),
    json_: bool = JsonOption,
) -> None:
    """Two users, different rules, the same prompts: see the replies side by side."""
    from persona_sdk.cli.demo import run_demo

    run_demo(ctx.obj, max_new_tokens=max_new_tokens, as_json=json_)


for commands in (memory_cmds, reward_cmds, adapter_cmds, eval_cmds, serve_cmds):
    app.add_typer(commands.app)


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    run()
