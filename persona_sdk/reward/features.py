"""The reward featurizer φ(x, y) of design §2: what a reward basis sees of a reply.

The default, :class:`EmbeddingStyleFeaturizer`, concatenates

* the sentence embedding of the reply (MiniLM by default),
* the element-wise maximum of the embeddings of its sentences: a phrase such as "in short" or
  "imagine" moves one sentence's embedding far more than the whole reply's, so this block
  sees local content (analogies, caveats, a summary line) that mean pooling averages away,
* the raw interpretable style features of :mod:`persona_sdk.text.style` and its lexical measures
  (numbers, long words, overlap with the prompt's words), standardised by the basis, and
* the cosine similarity of reply and prompt (how closely the reply sticks to the request).

The reply is embedded on its own rather than after its prompt: MiniLM reads 256 word pieces,
and a prompt in front would push the end of a long reply (its summary, its sign-off) out of
view. The prompt enters through the similarity feature instead.

Any object with ``identity``, ``dim`` and ``features(prompts, replies)`` is a featurizer. Its
identity is stored with every basis, and a basis refuses any other featurizer.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from persona_sdk.decoding.embedder import Embedder
from persona_sdk.text.style import LEXICAL_FEATURES, STYLE_FEATURES, lexical_matrix, style_matrix

FEATURIZER_VERSION = "embed+sentmax+style+lexical+relevance/v1"
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def sentences(text: str) -> list[str]:
    """The sentences and lines of ``text`` worth embedding (the text itself if none)."""
    found = [s.strip(" \t-*#•") for s in _SENTENCE.findall(text)]
    return [s for s in found if len(s) > 3] or [text]


@runtime_checkable
class Featurizer(Protocol):
    """Maps (prompt, reply) pairs to fixed-length float32 feature rows."""

    identity: str
    dim: int

    def features(self, prompts: Sequence[str], replies: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 features of each reply to its prompt."""
        ...


def featurizer_hash(featurizer: Featurizer) -> str:
    """A short stable digest of a featurizer's identity and width."""
    return hashlib.sha256(f"{featurizer.identity}|{featurizer.dim}".encode()).hexdigest()[:16]


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def text_keys(texts: Iterable[str]) -> set[bytes]:
    """Every cache key a featurizer may have made from ``texts``: each text and sentence."""
    texts = list(texts)
    return {text_key(t) for t in texts} | {text_key(s) for t in texts for s in sentences(t)}


def purge_cache_file(path: Path, keys: set[bytes]) -> int:
    """Rewrite a saved :class:`EmbeddingCache` file without ``keys``; returns how many
    entries were removed (0, and the file untouched, when none was there)."""
    try:
        with np.load(path) as data:
            stored, vectors, identity = data["keys"], data["vectors"], data["identity"]
    except (OSError, ValueError, KeyError):
        return 0
    keep = np.array([k.tobytes() not in keys for k in stored], dtype=bool)
    removed = int((~keep).sum())
    if removed:
        tmp = path.with_name(path.name + ".purge.tmp.npz")
        np.savez(tmp, keys=stored[keep], vectors=vectors[keep], identity=identity)
        tmp.replace(path)
    return removed


class EmbeddingCache:
    """Text → embedding, bounded LRU, optionally saved to and loaded from an ``.npz`` file.

    Fitting a basis featurizes every reply of a population many times over; the cache makes
    sure each distinct text is embedded once, and across runs once it is saved.
    """

    def __init__(self, embedder: Embedder, max_items: int = 200_000):
        self.embedder = embedder
        self.max_items = max_items
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit embeddings of ``texts``; only texts never seen before reach the embedder."""
        keys = [text_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._vectors))
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            vectors = self.embedder.encode([first[k] for k in missing], batch_size=batch_size)
            self.add(missing, vectors)
        out = np.empty((len(keys), self.embedder.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = self._vectors[key]
            self._vectors.move_to_end(key)
        return out

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        for key, vector in zip(keys, vectors):
            self._vectors[key] = np.asarray(vector, dtype=np.float32)
        while len(self._vectors) > self.max_items:
            self._vectors.popitem(last=False)

    def discard(self, keys: set[bytes]) -> int:
        """Drop the vectors under ``keys`` (see :func:`text_keys`); returns how many."""
        return sum(self._vectors.pop(k, None) is not None for k in keys)

    def save(self, path: Path) -> None:
        """Write every cached vector (float16) with the embedder identity, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.frombuffer(b"".join(self._vectors), dtype=np.uint8).reshape(-1, 16)
        vectors = np.stack(list(self._vectors.values())) if self._vectors else np.zeros((0, 0))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp, keys=keys, vectors=vectors.astype(np.float16), identity=self.embedder.identity
        )
        tmp.replace(path)

    def load(self, path: Path) -> int:
        """Add the vectors of a file written by :meth:`save` for the same embedder; returns
        how many were added (0 when the file is missing, unreadable or from another one)."""
        try:
            with np.load(Path(path)) as data:
                if str(data["identity"]) != self.embedder.identity:
                    return 0
                keys, vectors = data["keys"], data["vectors"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            return 0
        self.add([k.tobytes() for k in keys], vectors)
        return len(keys)


class EmbeddingStyleFeaturizer:
    """The default featurizer: reply embedding ⊕ sentence max-pool ⊕ style and lexical
    features ⊕ prompt–reply similarity."""

    def __init__(self, embedder: Embedder, cache: EmbeddingCache | None = None):
        self.cache = cache if cache is not None else EmbeddingCache(embedder)  # empty is falsy
        self.embedder_identity = embedder.identity
        self.identity = f"{FEATURIZER_VERSION}:{embedder.identity}"
        self.dim = 2 * embedder.dim + len(STYLE_FEATURES) + len(LEXICAL_FEATURES) + 1

    def features(self, prompts: Sequence[str], replies: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(replies):
            raise ValueError("prompts and replies must have the same length")
        n = len(replies)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        split = [sentences(r) for r in replies]
        flat = [s for parts in split for s in parts]
        embedded = self.cache.encode(list(replies) + list(prompts) + flat)
        reply_vectors, prompt_vectors = embedded[:n], embedded[n : 2 * n]
        bounds = np.cumsum([0] + [len(parts) for parts in split]) + 2 * n
        peaks = np.stack([embedded[a:b].max(0) for a, b in itertools.pairwise(bounds)])
        relevance = np.einsum("ij,ij->i", reply_vectors, prompt_vectors)[:, None]
        styles = style_matrix(list(replies))
        lexical = lexical_matrix(list(replies), list(prompts))
        return np.hstack([reply_vectors, peaks.reshape(n, -1), styles, lexical, relevance]).astype(
            np.float32
        )
