"""Input validation shared by the API and the CLI. Every check raises a typed error."""

from __future__ import annotations

import math
import os
import re
import unicodedata
from pathlib import Path

from persona_sdk.errors import InvalidInputError, InvalidUserIdError

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
MAX_TEXT_CHARS = 100_000
MAX_RULE_CHARS = 2_000
# whitespace, control and format characters (zero-width spaces, bidi marks): text made
# only of these is empty to a reader
INVISIBLE = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})


def validate_user_id(user_id: object) -> str:
    """Return ``user_id`` if it is 1-128 chars of ``[A-Za-z0-9_.@-]`` and not only dots."""
    if not isinstance(user_id, str) or not USER_ID_PATTERN.fullmatch(user_id):
        shown = repr(user_id) if len(repr(user_id)) <= 60 else repr(user_id)[:57] + "..."
        raise InvalidUserIdError(
            f"invalid user id {shown}: use 1-128 characters of letters, digits, '_', '.', '@', '-'"
        )
    if set(user_id) == {"."}:
        raise InvalidUserIdError(f"invalid user id {user_id!r}: it cannot be only dots")
    return user_id


def validate_text(value: object, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Return ``value`` stripped of surrounding whitespace; reject empty, huge or non-text."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{field} is not valid UTF-8") from exc
    if not isinstance(value, str):
        raise InvalidInputError(f"{field} must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text or all(unicodedata.category(c) in INVISIBLE for c in text):
        raise InvalidInputError(f"{field} is empty")
    if len(text) > max_chars:
        raise InvalidInputError(
            f"{field} is too long ({len(text):,} chars; the limit is {max_chars:,})"
        )
    if "\x00" in text:
        raise InvalidInputError(f"{field} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates, e.g. from bad decoding upstream
        raise InvalidInputError(f"{field} is not valid UTF-8 text") from exc
    return text


def validate_optional_text(
    value: object, field: str, max_chars: int = MAX_TEXT_CHARS
) -> str | None:
    """Like :func:`validate_text`, but ``None`` and blank strings mean "not given"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return validate_text(value, field, max_chars)


def validate_number(
    value: object, field: str, *, low: float | None = None, high: float | None = None
) -> float:
    """Return ``value`` as a finite float within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{field} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{field} must be finite, got {number}")
    if low is not None and number < low:
        raise InvalidInputError(f"{field} must be >= {low:g}, got {number:g}")
    if high is not None and number > high:
        raise InvalidInputError(f"{field} must be <= {high:g}, got {number:g}")
    return number


def validate_int(value: object, field: str, *, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an integer within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{field} must be an integer, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidInputError(f"{field} must be {bound}, got {value}")
    return value


def validate_path(value: object, field: str) -> Path:
    """Return ``value`` (a str or path-like) as an expanded :class:`~pathlib.Path`."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise InvalidInputError(f"{field} must be a path, not {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"{field} must be a non-empty path")
    if "\x00" in text:
        raise InvalidInputError(f"{field} contains a NUL character")
    return Path(text).expanduser()
