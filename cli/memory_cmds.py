"""CLI commands that record feedback and move or check stored memory."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from persona_sdk.cli.common import JsonOption, existing_user, open_persona
from persona_sdk.cli.render import console, emit_json, err_console, plain, report, safe
from persona_sdk.errors import DataDirError, InvalidInputError

app = typer.Typer()  # merged into the top-level `persona` command


@app.command("add-pair")
def add_pair(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    prompt: str = typer.Argument(...),
    chosen: str = typer.Option(..., "--chosen", help="The reply the user preferred."),
    rejected: str = typer.Option(..., "--rejected", help="The reply the user did not."),
    json_: bool = JsonOption,
) -> None:
    """Record that USER preferred one reply over another."""
    with open_persona(ctx) as persona:
        memory = persona.user(user_id).add_pair(prompt, chosen=chosen, rejected=rejected)
    report(json_, memory.to_dict(), f"added pair {memory.id} for {user_id}")


@app.command("add-edit")
def add_edit(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    prompt: str = typer.Argument(...),
    response: str = typer.Option(..., "--response", help="The reply as generated."),
    edited: str = typer.Option(..., "--edited", help="The reply as the user rewrote it."),
    json_: bool = JsonOption,
) -> None:
    """Record that USER rewrote a reply; infer rules from the edit."""
    with open_persona(ctx) as persona, err_console.status("learning from the edit…"):
        result = persona.user(user_id).add_edit(prompt, response=response, edited=edited)
    if json_:
        emit_json(result.to_dict())
        return
    console.print(f"stored edit {result.memory.id} and pair {result.pair.id}", highlight=False)
    for outcome in result.outcomes:
        rule = next((r for r in result.inferred_rules if r.id == outcome.rule_id), None)
        text = rule.text if rule else ""
        console.print(plain(f"  {outcome.action:<11} {text} {outcome.reason}"), highlight=False)


@app.command("export")
def export(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER"),
    output: Path = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),
) -> None:
    """Export USER as JSON lines (a header, then one memory per line)."""
    with open_persona(ctx) as persona:
        existing_user(persona, user_id)
        lines = list(persona.export_user(user_id))
    text = "\n".join(lines) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DataDirError(f"cannot write {output}: {exc.strerror}") from exc
    err_console.print(plain(f"exported {len(lines) - 1} memories of {user_id} to {output}"))


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="An export file, or - for stdin."),
    as_user: str = typer.Option(None, "--user", help="Import under this user id instead."),
    json_: bool = JsonOption,
) -> None:
    """Import a user from an export file (all or nothing)."""
    if str(file) == "-":
        lines = sys.stdin.buffer.read().splitlines()
    else:
        try:
            lines = file.read_bytes().splitlines()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {file}: {exc.strerror}") from exc
    with open_persona(ctx) as persona:
        with err_console.status("embedding…"):
            user = persona.import_user(lines, user_id=as_user)
        counts = persona.store.count_memories(user.id)
    if json_:
        emit_json({"user_id": user.id, **counts})
    else:
        console.print(
            f"imported {user.id}: {counts['rule']} rules, {counts['pair']} pairs, "
            f"{counts['edit']} edits",
            highlight=False,
        )


@app.command()
def doctor(
    ctx: typer.Context,
    check_only: bool = typer.Option(False, "--check-only", help="Report, repair nothing."),
    json_: bool = JsonOption,
) -> None:
    """Check the data dir against SQLite and rebuild derived indexes if needed."""
    with open_persona(ctx) as persona:
        report = persona.doctor(repair=not check_only)
    if json_:
        emit_json(report.to_dict())
    else:
        for check in report.checks:
            mark = (
                "[green]ok[/]"
                if check["status"] == "ok"
                else ("[yellow]repaired[/]" if check["repaired"] else f"[red]{check['status']}[/]")
            )
            console.print(f"{mark:<22} {safe(check['check'])}: {safe(check['detail'])}")
    if not report.ok:
        raise typer.Exit(1)
