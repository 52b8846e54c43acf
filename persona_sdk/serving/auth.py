"""Who is calling, and which user a request is for.

The caller is the scope of their API key (``admin``, ``app`` or ``user:<id>``), or
``admin`` when the server runs with ``--no-auth`` (loopback only). A chat request's user
is, in order: a user-scoped key's user; an app key's ``X-Persona-User`` header; the
``persona.user_id`` option; ``user`` / ``safety_identifier``. A user-scoped key naming any
other user is a 403, on every endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from persona_sdk.errors import InvalidInputError
from persona_sdk.serving.errors import ApiError
from persona_sdk.serving.keys import KeyStore
from persona_sdk.validation import validate_user_id

ANONYMOUS = "__base__"  # served the base model; reserved, never a client's user id


@dataclass(frozen=True)
class Caller:
    """An authenticated caller."""

    scope: str
    key_id: str | None = None

    @property
    def user_id(self) -> str | None:
        return self.scope[5:] if self.scope.startswith("user:") else None


def check_user_id(user_id: object, param: str = "user_id") -> str:
    """A valid, non-reserved user id, else a 400."""
    try:
        checked = validate_user_id(user_id)
    except InvalidInputError as exc:
        raise ApiError(400, str(exc), param=param, code="invalid_user_id") from None
    if checked == ANONYMOUS:
        raise ApiError(400, f"{ANONYMOUS!r} is reserved", param=param, code="invalid_user_id")
    return checked


class Auth:
    """Authenticates requests against the key store (``keys=None``: no auth)."""

    def __init__(self, keys: KeyStore | None, user_header: str = "X-Persona-User",
                 require_user: bool = False):  # fmt: skip
        self.keys, self.user_header, self.require_user = keys, user_header, require_user

    def caller(self, request: Request) -> Caller:
        """The caller of ``request``, or a 401."""
        if self.keys is None:
            return Caller("admin")
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")  # fmt: skip
        record = self.keys.lookup(key.strip())
        if record is None:
            raise ApiError(401, "invalid or revoked API key", code="invalid_api_key")
        return Caller(record.scope, record.id)

    def may_access(self, caller: Caller, user_id: object, param: str = "user_id") -> str:
        """``user_id`` checked, if ``caller`` may act for that user (else 400 or 403)."""
        user_id = check_user_id(user_id, param)
        if caller.user_id is not None and caller.user_id != user_id:
            raise ApiError(403, "this key belongs to another user", code="forbidden")
        return user_id

    @staticmethod
    def require_admin(caller: Caller) -> None:
        if caller.scope != "admin":
            raise ApiError(403, "this endpoint needs an admin key", code="forbidden")

    def chat_user(self, caller: Caller, request: Request, options: dict[str, str | None]) -> str:
        """The user a chat request is for (:data:`ANONYMOUS` when none is named).

        ``options`` holds ``persona.user_id``, ``user`` and ``safety_identifier``."""
        named = [("header", request.headers.get(self.user_header))]
        named += [(k, options.get(k)) for k in ("persona.user_id", "user", "safety_identifier")]
        named = [(param, value) for param, value in named if value is not None]
        if caller.user_id is not None:
            for param, value in named:  # every id the request names must be the key's
                self.may_access(caller, value, param)
            return caller.user_id
        if named:
            param, value = named[0]
            return check_user_id(value, param)
        if self.require_user:
            raise ApiError(400, "this server needs a user id: send the "
                           f"{self.user_header} header or persona.user_id", param="user",
                           code="missing_user")  # fmt: skip
        return ANONYMOUS
