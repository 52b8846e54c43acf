"""CLI evaluation commands (``persona eval ...``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command group to ``app``."""
    evaluation = typer.Typer(
        help="Evaluate personalization against simulated users.", no_args_is_help=True
    )
    app.add_typer(evaluation, name="eval")
