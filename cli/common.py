"""What every CLI command shares: global settings, opening the store, common options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from persona_sdk.persona import Persona
from persona_sdk.user import User

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


@dataclass
class Settings:
    """The global options given before the command name."""

    data: Path
    model: str | None
    embedder: str | None
    device: str | None
    store: str | None = None  # None: $PERSONA_STORE, else SQLite in the data dir

    def open(self) -> Persona:
        return Persona.open(
            self.data, model=self.model, embedder=self.embedder, device=self.device,
            store=self.store,
        )  # fmt: skip


def open_persona(ctx: typer.Context) -> Persona:
    return ctx.obj.open()


def existing_user(persona: Persona, user_id: str) -> User:
    """The user, or an UnknownUserError (exit 2) when nothing is stored for them."""
    user = persona.user(user_id)
    persona.store.require_user(user.id)
    return user
