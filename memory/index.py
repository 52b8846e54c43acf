"""Per-user FAISS indexes, derived from the SQLite store.

Each user has their own ``IndexIDMap2(IndexFlatIP)`` over normalised embeddings keyed by
memory id, so a search can only ever see that user's memories (no filter-after-search).
An index is saved beside the database with a manifest holding the user's
``memory_version`` and the file's SHA-256. A missing, stale or corrupt index is rebuilt
from the embeddings stored in SQLite, so the files can always be deleted safely.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from persona_sdk.config import file_sha256
from persona_sdk.memory.store import MemoryStore, UserWrite, Write

INDEX_DIRNAME = "indexes"


def _single_threaded_faiss() -> None:
    """Every search here is one query over one user's small index: OpenMP threads only add
    wake-up latency (8 ms p50 vs 0.03 ms single-threaded on a busy 2-core machine). When
    torch was imported first, FAISS and torch may share one OpenMP runtime; then torch's
    own thread count wins, so embedding speed is never halved by this."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    faiss.omp_set_num_threads(1)
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


_single_threaded_faiss()


def _manifest(path: Path) -> dict:
    """A manifest file's JSON object (``ValueError`` when it is not one)."""
    manifest = json.loads(path.read_text())
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not a manifest object")
    return manifest


def user_file_stem(user_id: str) -> str:
    """A filesystem-safe, case-safe name for a user's derived files."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:32]


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file and a rename; a concurrent ``forget`` may remove the temp
    file, in which case nothing is written (the user is gone)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


@dataclass
class SearchHit:
    """One nearest neighbour: a memory id and its cosine similarity to the query."""

    memory_id: int
    similarity: float


class UserIndex:
    """An exact inner-product index over one user's retrievable memories."""

    def __init__(self, dim: int, index: faiss.Index | None = None):
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )

    def remove(self, ids: list[int]) -> None:
        if ids:
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def ids(self) -> list[int]:
        return sorted(int(i) for i in faiss.vector_to_array(self.index.id_map))

    def search(self, query: np.ndarray, k: int) -> list[SearchHit]:
        if self.size == 0 or k <= 0:
            return []
        sims, ids = self.index.search(
            np.asarray(query, np.float32).reshape(1, -1), min(k, self.size)
        )
        return [SearchHit(int(i), float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0]

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> UserIndex:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        return cls(index.d, index)


class IndexManager:
    """Keeps each user's index in step with SQLite, in memory and on disk."""

    def __init__(self, store: MemoryStore, dim: int, max_cached_bytes: int = 2 << 30):
        self.store = store
        self.dim = dim
        self.directory = store.data_dir / INDEX_DIRNAME
        self.max_cached_bytes = max_cached_bytes  # vectors kept in memory across users
        self._cache: dict[str, tuple[int, UserIndex]] = {}
        self._dirty: set[str] = set()
        self._lock = threading.RLock()
        self.rebuilds = 0  # how many indexes were rebuilt from SQLite (for doctor and tests)

    def paths(self, user_id: str) -> tuple[Path, Path]:
        stem = user_file_stem(user_id)
        return self.directory / f"{stem}.faiss", self.directory / f"{stem}.json"

    def get(self, user_id: str) -> UserIndex:
        """The user's index, reloaded or rebuilt if another writer moved SQLite ahead."""
        with self._lock:
            version = self.store.memory_version(user_id)
            cached = self._cache.get(user_id)
            if cached is not None and cached[0] == version:
                return cached[1]
            index = self._load(user_id, version) or self._rebuild(user_id)
            self._remember(user_id, version, index)
            return index

    def apply(
        self,
        user_id: str,
        write: Write | UserWrite,
        add: list[tuple[int, np.ndarray]] | None = None,
        remove: list[int] | None = None,
    ) -> None:
        """Mirror a committed write into the user's index, so it stays current on disk too."""
        with self._lock:
            cached = self._cache.get(user_id)
            previous = write.previous_version
            if cached is None:  # a new user starts empty; else start from a current file
                index = (
                    UserIndex(self.dim)
                    if previous == 0
                    else self._load(user_id, previous, check_ids=False)
                )
                cached = None if index is None else (previous, index)
            if cached is None or cached[0] != previous:
                # Another writer moved SQLite on since our copy: rebuild, which includes this write.
                self._remember(user_id, write.version, self._rebuild(user_id))
                return
            index = cached[1]
            if remove:
                index.remove(remove)
            if add:
                index.add(
                    np.array([i for i, _ in add], dtype=np.int64), np.stack([v for _, v in add])
                )
            self._remember(user_id, write.version, index)
            self._dirty.add(user_id)

    def _load(self, user_id: str, version: int, check_ids: bool = True) -> UserIndex | None:
        index_path, manifest_path = self.paths(user_id)
        try:
            manifest = _manifest(manifest_path)
            if manifest.get("version") != version or manifest.get("dim") != self.dim:
                return None
            if file_sha256(index_path) != manifest.get("sha256"):
                return None
            index = UserIndex.from_bytes(index_path.read_bytes())
        except (OSError, ValueError, RuntimeError):
            return None
        if index.dim != self.dim:
            return None
        # Versions are unique store-wide, so a matching manifest means matching content;
        # the id check is a cheap second guard when the index is about to serve searches.
        if check_ids and index.ids() != self.store.retrievable_ids(user_id):
            return None
        return index

    def _rebuild(self, user_id: str) -> UserIndex:
        ids, vectors = self.store.retrievable_embeddings(user_id)
        index = UserIndex(self.dim)
        index.add(ids, vectors)
        self.rebuilds += 1
        self._dirty.add(user_id)
        return index

    def flush(self, strict: bool = False) -> None:
        """Write every changed index to disk atomically, with its manifest. An index that
        cannot be written (a damaged or blocked path) is skipped, since it is rebuilt from
        SQLite when needed; ``strict`` raises the ``OSError`` instead (doctor)."""
        with self._lock:
            for user_id in sorted(self._dirty):
                try:
                    self._write(user_id)
                except OSError:
                    if strict:
                        raise
            self._dirty.clear()

    def invalidate(self, user_id: str) -> None:
        """Drop the cached index so the next use reloads or rebuilds it from SQLite."""
        with self._lock:
            self._cache.pop(user_id, None)
            self._dirty.discard(user_id)

    def _write(self, user_id: str) -> None:
        cached = self._cache.get(user_id)
        # Only a current index is written: never resurrect a forgotten user's vectors.
        if cached is None or cached[0] != self.store.memory_version(user_id):
            return
        version, index = cached
        self.directory.mkdir(parents=True, exist_ok=True)
        index_path, manifest_path = self.paths(user_id)
        data = index.to_bytes()
        _atomic_write(index_path, data)
        manifest = {
            "version": version,
            "dim": self.dim,
            "count": index.size,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        _atomic_write(manifest_path, json.dumps(manifest).encode())

    def _cached_bytes(self) -> int:
        return sum(index.size for _, index in self._cache.values()) * self.dim * 4

    def _remember(self, user_id: str, version: int, index: UserIndex) -> None:
        """Cache an index as most recently used; beyond the memory budget the least recent
        are saved if changed, then dropped (2 GiB holds 1M MiniLM vectors)."""
        self._cache.pop(user_id, None)
        self._cache[user_id] = (version, index)
        while len(self._cache) > 1 and self._cached_bytes() > self.max_cached_bytes:
            oldest = next(iter(self._cache))
            if oldest in self._dirty:
                self._write(oldest)
                self._dirty.discard(oldest)
            del self._cache[oldest]

    def refresh(self, user_id: str) -> UserIndex:
        """Forget the cached copy and load or rebuild the user's index from SQLite."""
        with self._lock:
            self._cache.pop(user_id, None)
            return self.get(user_id)

    def inspect(self, user_id: str) -> str:
        """The on-disk state of a user's index: ok, missing, stale or corrupt."""
        index_path, manifest_path = self.paths(user_id)
        if not index_path.exists() or not manifest_path.exists():
            return "missing"
        try:
            manifest = _manifest(manifest_path)
            if file_sha256(index_path) != manifest.get("sha256"):
                return "corrupt"
        except (OSError, ValueError):
            return "corrupt"
        if manifest.get("version") != self.store.memory_version(user_id):
            return "stale"
        return "ok" if self._load(user_id, manifest["version"]) is not None else "corrupt"

    def orphan_files(self, tmp_older_than: float = 60.0) -> list[Path]:
        """Files that should not be there: index files of users that no longer exist, and
        temp files a crashed flush left (older than ``tmp_older_than`` seconds, so a flush
        running in another process is left alone)."""
        if not self.directory.is_dir():
            return []
        live = {user_file_stem(u) for u in self.store.users()}
        now = time.time()
        orphans = []
        for path in self.directory.iterdir():
            stem = path.name.lstrip(".").split(".")[0]
            stale_tmp = path.name.endswith(".tmp") and now - path.stat().st_mtime > tmp_older_than
            if stem not in live or stale_tmp:
                orphans.append(path)
        return sorted(orphans)

    def drop(self, user_id: str) -> None:
        """Forget a user's index in memory and on disk."""
        with self._lock:
            self._cache.pop(user_id, None)
            self._dirty.discard(user_id)
            stem = user_file_stem(user_id)
            if self.directory.is_dir():  # the files, and temp files a crashed flush left
                for path in [p for p in self.directory.iterdir() if stem in p.name]:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
