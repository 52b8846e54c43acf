"""``persona doctor``: check a data dir against its source of truth, and repair it.

The store (SQLite or PostgreSQL) is the truth; everything else (FAISS indexes, manifests)
is derived and can be rebuilt. Doctor never deletes a memory, runs every check inside its
own error handling (a damaged database is reported, not a traceback), lists every repair
it makes, and deletes no index file while the database looks empty or damaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from persona_sdk.errors import PersonaError
from persona_sdk.memory.service import MemoryService
from persona_sdk.memory.store import SCHEMA_VERSION

# (name, status, detail) of a check another component runs (e.g. the reward basis file)
ExtraCheck = Callable[[], tuple[str, str, str]]


@dataclass
class DoctorReport:
    """What doctor found, and what it repaired (``repairs``: one line per repair)."""

    ok: bool = True
    checks: list[dict] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str = "", repaired: bool = False) -> None:
        if status != "ok" and not repaired:
            self.ok = False
        if repaired:
            self.repairs.append(f"{name}: {detail}")
        self.checks.append(
            {"check": name, "status": status, "detail": detail, "repaired": repaired}
        )

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": self.checks, "repairs": self.repairs}


def _missing_embeddings(memory: MemoryService, repair: bool, report: DoctorReport) -> None:
    store = memory.store
    rows = store.query(
        "SELECT id, user_id, kind, text, prompt, context FROM memories "
        "WHERE embedding IS NULL OR (kind = 'rule' AND text_embedding IS NULL)"
    )
    if not rows:
        report.add("embeddings", "ok", "every memory has its embeddings")
        return
    if repair:
        texts = [r[5] or r[4] or r[3] for r in rows] + [r[3] or "" for r in rows]
        vectors = memory.embedder.encode(texts)
        with store.transaction() as conn:
            for i, (memory_id, _, kind, _, _, context) in enumerate(rows):
                retrieval = vectors[i] if kind != "rule" or context else vectors[len(rows) + i]
                text_vector = vectors[len(rows) + i] if kind == "rule" else None
                conn.execute(
                    "UPDATE memories SET embedding = ?, text_embedding = ? WHERE id = ?",
                    (
                        retrieval.tobytes(),
                        None if text_vector is None else text_vector.tobytes(),
                        memory_id,
                    ),
                )
            for user_id in {r[1] for r in rows}:  # other processes' caches must reload
                store.bump_version(conn, user_id)
        for user_id in {r[1] for r in rows}:
            memory.indexes.refresh(user_id)
    detail = f"{len(rows)} memories lacked embeddings" + ("; embedded them" if repair else "")
    report.add("embeddings", "missing", detail, repair)


def _database(memory: MemoryService, report: DoctorReport) -> bool:
    """The backend's own check (SQLite: ``quick_check`` of the file; PostgreSQL: a sanity
    query, the files being the server's) and the schema version; False when damaged."""
    store = memory.store
    name = store.dialect.name
    try:
        name, status, detail = store.backend.integrity()
        version = store.query("SELECT MAX(version) FROM schema_version")[0][0]
    except (PersonaError, *store.backend.bug_errors) as exc:
        report.add(name, "corrupt", f"{exc}; {store.backend.damage_advice()}")
        return False
    report.add(name, status, detail)
    report.add("schema", "ok" if version == SCHEMA_VERSION else "outdated", f"version {version}")
    return status == "ok"


def _indexes(memory: MemoryService, repair: bool, report: DoctorReport) -> None:
    indexes = memory.indexes
    if indexes.directory.exists() and not indexes.directory.is_dir():
        report.add("indexes", "broken", f"{indexes.directory} is not a directory; move it away")
        return
    for user_id in memory.store.users():
        state = indexes.inspect(user_id)
        if state == "ok":
            report.add(f"index:{user_id}", "ok")
            continue
        if not repair:
            report.add(f"index:{user_id}", state, "run doctor to rebuild it")
            continue
        try:
            indexes.refresh(user_id)
            indexes.flush(strict=True)
        except OSError as exc:
            report.add(f"index:{user_id}", state, f"could not rebuild it: {exc}")
            continue
        report.add(
            f"index:{user_id}", state, f"rebuilt from {memory.store.dialect.title}", repaired=True
        )
    _stray_files(memory, repair, report)


def _stray_files(memory: MemoryService, repair: bool, report: DoctorReport) -> None:
    indexes = memory.indexes
    orphans = indexes.orphan_files()
    if not orphans:
        report.add("stray files", "ok", "no index or temp files of users that no longer exist")
        return
    if not memory.store.users():  # an emptied or replaced database: the files may be all
        report.add(  # that is left of the users, so they are kept
            "stray files",
            "suspicious",
            f"{len(orphans)} index files but the database has no users: it may have been "
            "emptied or replaced; nothing deleted",
        )
        return
    if repair:
        for path in orphans:
            path.unlink(missing_ok=True)
    names = ", ".join(p.name for p in orphans[:5]) + (" …" if len(orphans) > 5 else "")
    detail = f"{len(orphans)} index or temp files of users that no longer exist ({names})"
    report.add("stray files", "found", detail + ("; deleted" if repair else ""), repair)


def run_doctor(
    memory: MemoryService, repair: bool = True, extra: list[ExtraCheck] | None = None
) -> DoctorReport:
    """Check the store, its embedder, every user's index, stray files and ``extra``
    checks (the reward basis file). Nothing derived is touched when the store is damaged."""
    report = DoctorReport()
    healthy = _database(memory, report)
    for check in extra or []:
        report.add(*check())
    if not healthy:
        return report
    try:
        report.add("embedder", "ok", memory.embedder.identity)  # StoreError on a mismatch
        _missing_embeddings(memory, repair, report)
        _indexes(memory, repair, report)
    except PersonaError as exc:
        report.add("store", "error", str(exc))
    return report
