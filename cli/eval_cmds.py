"""CLI evaluation commands (``persona eval ...``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from persona_sdk.cli.common import JsonOption
from persona_sdk.cli.render import console, emit_json, err_console
from persona_sdk.validation import validate_int


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command group to ``app``."""
    evaluation = typer.Typer(
        help="Evaluate personalization against simulated users.", no_args_is_help=True
    )
    app.add_typer(evaluation, name="eval")

    @evaluation.command("edits")
    def edits(
        ctx: typer.Context,
        users: int = typer.Option(5, help="Simulated users."),
        rounds: int = typer.Option(20, help="Rounds of generate → edit → learn."),
        max_new_tokens: int = typer.Option(96, help="Most tokens per reply."),
        seed: int = typer.Option(0, help="Seed for users and prompts."),
        plot: Path = typer.Option(None, "--plot", help="Write the cost curves to this PNG."),
        json_: bool = JsonOption,
    ) -> None:
        """PRELUDE-style edit-cost loop: no learning vs rules only vs oracle."""
        from persona_sdk.evals.edits import CONDITIONS, run_edit_eval
        from persona_sdk.evals.plots import plot_edit_costs

        validate_int(users, "users", low=1, high=1000)
        validate_int(rounds, "rounds", low=1, high=1000)
        if plot is not None and plot.suffix.lower() != ".png":
            from persona_sdk.errors import InvalidInputError

            raise InvalidInputError(f"--plot must name a .png file, got {plot.name!r}")
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err_console) as progress:
            task = progress.add_task("edit-cost rounds", total=rounds)
            result = run_edit_eval(
                users,
                rounds,
                seed=seed,
                max_new_tokens=max_new_tokens,
                model=ctx.obj.model,
                embedder=ctx.obj.embedder,
                on_round=lambda i, r: progress.update(task, completed=i + 1),
            )
        if plot is not None:
            plot_edit_costs(result, plot)
        summary = result.to_dict()
        if json_:
            emit_json(summary)
            return
        table = Table(title=f"cumulative edit cost, {users} users × {rounds} rounds")
        table.add_column("round", justify="right")
        for condition in CONDITIONS:
            table.add_column(condition, justify="right")
        cumulative = {c: result.cumulative(c) for c in CONDITIONS}
        for r in range(rounds):
            table.add_row(str(r + 1), *(str(cumulative[c][r]) for c in CONDITIONS))
        console.print(table)
        gap = summary["gap_closed"]
        console.print(
            f"rules only closed {'n/a' if gap is None else f'{gap:.0%}'} of the gap between no "
            f"learning and the oracle (target ≥ 50%); rules only cost "
            f"{summary['rules_only_over_no_learning']:.0%} of no learning, oracle "
            f"{summary['oracle_over_no_learning']:.0%}."
        )
        if plot is not None:
            err_console.print(f"plot written to {plot}")
