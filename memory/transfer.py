"""Export and import of one user as JSON lines.

The first line is a header; each further line is one memory. Memory ids are replaced by
``ref`` numbers local to the file (1, 2, ...), so an export of an import is byte-for-byte
the original export. Embeddings are not exported: import re-embeds with the target
store's embedder. Import validates every line before it writes anything, then writes in
one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from persona_sdk.errors import InvalidInputError
from persona_sdk.memory.edits import is_template
from persona_sdk.memory.service import MemoryService
from persona_sdk.memory.store import KINDS, SOURCES, MemoryStore
from persona_sdk.validation import (
    MAX_RULE_CHARS,
    MAX_TEXT_CHARS,
    validate_int,
    validate_number,
    validate_text,
    validate_user_id,
)

FORMAT = "persona-sdk/user"
FORMAT_VERSION = 1
MAX_SUPPORT = 10**9
TEXT_FIELDS = ("text", "prompt", "chosen", "rejected", "context")
# Fields copied as they are between a memory row and an export record.
COPIED_FIELDS = (
    "kind",
    "source",
    *TEXT_FIELDS,
    "confidence",
    "support",
    "template",
    "valid_from",
    "valid_to",
    "created_at",
)
FIELDS = ("ref", *COPIED_FIELDS, "superseded_by", "origin")


def export_lines(store: MemoryStore, user_id: str) -> Iterator[str]:
    """JSON lines for one user: a header, then every memory oldest first."""
    store.require_user(user_id)
    memories = store.memories(user_id)
    refs = {m.id: n for n, m in enumerate(memories, start=1)}
    yield json.dumps(
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "user_id": user_id,
            "memories": len(memories),
        },
        ensure_ascii=False,
    )
    for m in memories:
        record = {
            "ref": refs[m.id],
            "kind": m.kind,
            "source": m.source,
            **{f: getattr(m, f) for f in TEXT_FIELDS},
            "confidence": m.confidence,
            "support": m.support,
            "template": m.template,
            "valid_from": m.valid_from,
            "valid_to": m.valid_to,
            "superseded_by": refs.get(m.superseded_by),
            "origin": refs.get(m.origin_id),
            "created_at": m.created_at,
        }
        yield json.dumps(record, ensure_ascii=False)


def _fail(line: int, message: str) -> InvalidInputError:
    return InvalidInputError(f"import line {line}: {message}")


def _timestamp(value: object, line: int, field: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _fail(line, f"{field} must be an ISO timestamp string")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise _fail(line, f"{field} is not an ISO timestamp: {value[:40]!r}") from exc
    return value


def _check_record(record: object, ref: int, count: int, line: int) -> dict:
    """One memory record, at position ``ref`` of ``count``, on physical ``line``."""
    if not isinstance(record, dict):
        raise _fail(line, "expected a JSON object")
    unknown = set(record) - set(FIELDS)
    if unknown:
        raise _fail(line, f"unknown fields {sorted(unknown)}")
    if record.get("ref") != ref:
        raise _fail(line, f"ref must be {ref} (memories are numbered in order)")
    if record.get("kind") not in KINDS or record.get("source") not in SOURCES:
        raise _fail(line, f"kind must be one of {KINDS} and source one of {SOURCES}")
    out = dict(record)
    try:
        for field in TEXT_FIELDS:
            if out.get(field) is not None:
                out[field] = validate_text(out[field], field, MAX_TEXT_CHARS)
    except InvalidInputError as exc:
        raise _fail(line, str(exc)) from exc
    needed = ("text",) if out["kind"] == "rule" else ("prompt", "chosen", "rejected")
    if any(out.get(f) is None for f in needed):
        raise _fail(line, f"a {out['kind']} needs {', '.join(needed)}")
    if out["kind"] != "rule" and out["chosen"] == out["rejected"]:
        raise _fail(line, "chosen and rejected are the same text")
    try:  # the same checks as the API's, with the line number added
        confidence = validate_number(out.get("confidence", 1.0), "confidence", low=0.0, high=1.0)
        support = validate_int(out.get("support", 1), "support", low=1, high=MAX_SUPPORT)
        for field in ("superseded_by", "origin"):
            if out.get(field) is not None:
                validate_int(out[field], f"{field} (a ref in this file)", low=1, high=count)
    except InvalidInputError as exc:
        raise _fail(line, str(exc)) from exc
    if out.get("template") is not None and not is_template(out["template"]):
        raise _fail(
            line,
            f"template must be null or feature:+/- of a known feature, "
            f"got {str(out['template'])[:40]!r}",
        )
    if out["kind"] == "rule" and len(out["text"]) > MAX_RULE_CHARS:
        raise _fail(
            line, f"rule is too long ({len(out['text']):,} chars; the limit is {MAX_RULE_CHARS:,})"
        )
    out["valid_from"] = _timestamp(out.get("valid_from"), line, "valid_from")
    out["created_at"] = _timestamp(out.get("created_at"), line, "created_at")
    out["valid_to"] = _timestamp(out.get("valid_to"), line, "valid_to", optional=True)
    out["confidence"], out["support"] = confidence, support
    return out


def parse_lines(lines: Iterable[str | bytes]) -> tuple[str, list[dict]]:
    """Validate a whole export; return its user id and records, or raise on the first error.
    Errors name the physical line (blank lines count)."""
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Iterable):
        raise InvalidInputError("an export is an iterable of lines (e.g. an open file)")
    raw: list[tuple[int, object]] = []
    for number, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _fail(number, "not valid UTF-8") from exc
        if not isinstance(line, str):
            raise _fail(number, f"expected a line of text, not {type(line).__name__}")
        if line.strip():
            try:  # NaN and Infinity are not JSON; refuse them rather than store them
                raw.append((number, json.loads(line, parse_constant=_reject_constant)))
            except RecursionError as exc:
                raise _fail(number, "JSON nested too deeply") from exc
            except ValueError as exc:
                raise _fail(number, f"not valid JSON ({exc})") from exc
    header = raw[0][1] if raw else None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidInputError(
            f"not a persona-sdk user export (first line must be a {FORMAT} header)"
        )
    version = header.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise InvalidInputError(f"unsupported export version {version!r}")
    user_id = validate_user_id(header.get("user_id"))
    count = len(raw) - 1
    if type(header.get("memories")) is not int or header.get("memories") != count:
        raise InvalidInputError(
            f"the header announces {header.get('memories')!r} memories but the file has "
            f"{count}: it is truncated or was edited"
        )
    records = [_check_record(r, ref, count, line) for ref, (line, r) in enumerate(raw[1:], 1)]
    return user_id, records


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def import_records(memory: MemoryService, user_id: str, records: list[dict]) -> list[int]:
    """Store validated records as a new user in one transaction; returns the new ids."""
    if memory.store.user_exists(user_id):
        raise InvalidInputError(
            f"user {user_id!r} already exists; forget it first or import under another id"
        )
    to_embed: list[str] = []
    for record in records:
        to_embed.append(record.get("context") or record.get("prompt") or record["text"])
        if record["kind"] == "rule":
            to_embed.append(record["text"])
    vectors = iter(memory.embedder.encode(to_embed))
    with memory.store.user_write(user_id) as session:
        if session.starting_version() != 0:  # created meanwhile by another writer: no merge
            raise InvalidInputError(f"user {user_id!r} already exists; import under another id")
        ids: list[int] = []
        for record in records:
            context_vector = next(vectors)
            row = {k: record.get(k) for k in COPIED_FIELDS}
            if record["kind"] == "rule":
                text_vector = next(vectors)
                row["text_embedding"] = text_vector
                row["embedding"] = context_vector if record.get("context") else text_vector
            else:
                row["embedding"] = context_vector
            ids.append(session.insert(row))
        for new_id, record in zip(ids, records):  # refs may point forward: link afterwards
            links = {
                "superseded_by": record.get("superseded_by"),
                "origin_id": record.get("origin"),
            }
            links = {k: ids[v - 1] for k, v in links.items() if v is not None}
            if links:
                session.update(new_id, **links)
    memory.indexes.refresh(user_id)
    return ids
