"""API keys for ``persona serve``, stored hashed in ``<data dir>/serve_keys.json``.

A key is ``psk_<id>_<secret>``; only the SHA-256 of the whole key is stored (the secret
is 192 random bits, so a fast hash is enough), and it is shown once, at creation. Each key
has one scope: ``admin``, ``app`` or ``user:<id>``. The file is rewritten atomically
(temp file, fsync, rename) and re-read when it changes, so keys created or revoked with
the CLI apply to a running server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from persona_sdk.errors import InvalidInputError
from persona_sdk.validation import validate_user_id

FILE_NAME = "serve_keys.json"


@dataclass(frozen=True)
class ApiKey:
    """One key's stored record (never the key itself)."""

    id: str
    scope: str
    name: str
    created: float
    digest: str
    revoked: float | None = None

    @property
    def user_id(self) -> str | None:
        """The user a ``user:<id>`` key is bound to."""
        return self.scope[5:] if self.scope.startswith("user:") else None

    def public(self) -> dict:
        """What ``keys list`` shows."""
        return {k: v for k, v in asdict(self).items() if k != "digest"}


def validate_scope(scope: str) -> str:
    """``admin``, ``app`` or ``user:<valid user id>``."""
    if scope in ("admin", "app"):
        return scope
    if isinstance(scope, str) and scope.startswith("user:"):
        return "user:" + validate_user_id(scope[5:])
    raise InvalidInputError(f"scope must be admin, app or user:<id>, not {scope!r}")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The data dir's keys: create, list, revoke, and look one up by the presented key."""

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / FILE_NAME
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}
        self._stamp: tuple[int, int] | None = None

    def _load(self) -> dict[str, ApiKey]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return self._keys
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            records = json.loads(self.path.read_text())["keys"]
            self._keys = {r["id"]: ApiKey(**r) for r in records}
            self._stamp = stamp
        return self._keys

    def _save(self, keys: dict[str, ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        body = json.dumps({"version": 1, "keys": [asdict(k) for k in keys.values()]}, indent=1)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._stamp = None  # re-read (and re-stamp) on next use

    def create(self, scope: str, name: str = "") -> tuple[str, ApiKey]:
        """A new key and its record; the key is never stored and cannot be shown again."""
        scope = validate_scope(scope)
        with self._lock:
            keys = dict(self._load())
            key_id = secrets.token_hex(4)
            while key_id in keys:
                key_id = secrets.token_hex(4)
            key = f"psk_{key_id}_{secrets.token_urlsafe(24)}"
            record = ApiKey(key_id, scope, name, time.time(), _digest(key))
            keys[key_id] = record
            self._save(keys)
        return key, record

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self._lock:
            return sorted(self._load().values(), key=lambda k: k.created)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id; it stops working at once (a running server re-reads)."""
        with self._lock:
            keys = dict(self._load())
            if key_id not in keys:
                raise InvalidInputError(f"no key with id {key_id!r}")
            record = keys[key_id] = ApiKey(**{**asdict(keys[key_id]), "revoked": time.time()})
            self._save(keys)
        return record

    def lookup(self, key: str) -> ApiKey | None:
        """The live record of a presented key, or ``None``."""
        parts = key.split("_") if key.startswith("psk_") else []
        if len(parts) < 3:
            return None
        with self._lock:
            record = self._load().get(parts[1])
        if record is None or record.revoked is not None:
            return None
        return record if hmac.compare_digest(record.digest, _digest(key)) else None
