"""``persona doctor``: check a data dir against its source of truth, and repair it.

SQLite is the truth; everything else (FAISS indexes, manifests) is derived and can be
rebuilt. Doctor never deletes a memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from persona_sdk.memory.service import MemoryService
from persona_sdk.memory.store import SCHEMA_VERSION


@dataclass
class DoctorReport:
    """What doctor found, and what it repaired."""

    ok: bool = True
    checks: list[dict] = field(default_factory=list)

    def add(self, name: str, status: str, detail: str = "", repaired: bool = False) -> None:
        if status != "ok" and not repaired:
            self.ok = False
        self.checks.append(
            {"check": name, "status": status, "detail": detail, "repaired": repaired}
        )

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": self.checks}


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
    report.add("embeddings", "missing", f"{len(rows)} memories lacked embeddings", repair)


def run_doctor(memory: MemoryService, repair: bool = True) -> DoctorReport:
    """Check the store, its embedder, every user's index and stray files."""
    report = DoctorReport()
    store = memory.store
    integrity = store.query("PRAGMA quick_check")[0][0]
    report.add("sqlite", "ok" if integrity == "ok" else "corrupt", integrity)
    version = store.query("SELECT MAX(version) FROM schema_version")[0][0]
    report.add("schema", "ok" if version == SCHEMA_VERSION else "outdated", f"version {version}")
    report.add("embedder", "ok", memory.embedder.identity)  # raises StoreError on a mismatch
    _missing_embeddings(memory, repair, report)
    indexes = memory.indexes
    for user_id in store.users():
        state = indexes.inspect(user_id)
        if state != "ok" and repair:
            indexes.refresh(user_id)
            indexes.flush()
        if state == "ok":
            detail = ""
        else:
            detail = "rebuilt from SQLite" if repair else "run doctor to rebuild it"
        report.add(f"index:{user_id}", state, detail, repaired=state != "ok" and repair)
    orphans = indexes.orphan_files()
    if orphans and repair:
        for path in orphans:
            path.unlink(missing_ok=True)
    report.add(
        "stray files",
        "ok" if not orphans else "found",
        f"{len(orphans)} index or temp files of users that no longer exist",
        bool(orphans) and repair,
    )
    return report
