"""Population data for fitting a reward basis: operators' own files.

An operator file is JSON lines, one pair per line::

    {"user_id": "u1", "prompt": "...", "chosen": "...", "rejected": "..."}

or one user per line with their pairs::

    {"user_id": "u1", "pairs": [{"prompt": "...", "chosen": "...", "rejected": "..."}]}

Every problem is reported with its line number, before any fitting starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from persona_sdk.config import default_cache_dir
from persona_sdk.errors import InvalidInputError, PopulationDataError
from persona_sdk.reward.features import (
    EmbeddingCache,
    EmbeddingStyleFeaturizer,
    Featurizer,
    purge_cache_file,
    text_keys,
)
from persona_sdk.reward.fit import Pairs
from persona_sdk.validation import validate_text, validate_user_id

PAIR_FIELDS = ("prompt", "chosen", "rejected")


@dataclass
class PopulationData:
    """Validated pairs, each with the index of its user in ``user_ids``."""

    user_ids: list[str] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def add(self, user_id: str, pair: dict, where: str) -> None:
        missing = [f for f in PAIR_FIELDS if f not in pair]
        if missing:
            raise PopulationDataError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            texts = [validate_text(pair[f], f) for f in PAIR_FIELDS]
        except InvalidInputError as exc:
            raise PopulationDataError(f"{where}: {exc}") from None
        if texts[1] == texts[2]:
            raise PopulationDataError(f"{where}: chosen and rejected are the same text")
        if user_id not in self._index:
            self._index[user_id] = len(self.user_ids)
            self.user_ids.append(user_id)
        self.users.append(self._index[user_id])
        for column, text in zip((self.prompts, self.chosen, self.rejected), texts):
            column.append(text)

    def __post_init__(self) -> None:
        self._index = {u: i for i, u in enumerate(self.user_ids)}

    def __len__(self) -> int:
        return len(self.users)


def read_population(path: str | Path) -> PopulationData:
    """Read and validate an operator population file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PopulationDataError(f"no population file at {path}")
    data = PopulationData()
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path.name} line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PopulationDataError(f"{where}: not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                raise PopulationDataError(f"{where}: not valid JSON") from None
            if not isinstance(record, dict) or "user_id" not in record:
                raise PopulationDataError(f"{where}: missing field user_id")
            try:
                user_id = validate_user_id(record["user_id"])
            except InvalidInputError as exc:
                raise PopulationDataError(f"{where}: {exc}") from None
            if "pairs" in record:
                pairs = record["pairs"]
                if not isinstance(pairs, list) or not pairs:
                    raise PopulationDataError(f"{where}: user {user_id!r} has no pairs")
                for k, pair in enumerate(pairs):
                    if not isinstance(pair, dict):
                        raise PopulationDataError(f"{where}: pair {k} is not an object")
                    data.add(user_id, pair, f"{where}, pair {k}")
            else:
                data.add(user_id, record, where)
    if len(data.user_ids) < 2:
        raise PopulationDataError(
            f"{path.name} has pairs from {len(data.user_ids)} user(s); a basis needs at least 2"
        )
    return data


def embedding_cache_file(featurizer: Featurizer) -> Path | None:
    """Where the embeddings of operator data are kept between runs (default featurizer)."""
    if not isinstance(featurizer, EmbeddingStyleFeaturizer):
        return None
    digest = hashlib.sha256(featurizer.embedder_identity.encode()).hexdigest()[:12]
    return default_cache_dir() / "embeddings" / f"{digest}.npz"


def forget_texts(featurizer: Featurizer | None, texts: list[str]) -> int:
    """Remove ``texts`` from the featurizer's in-memory cache and from every saved
    embedding cache file; returns how many entries went."""
    if not texts:
        return 0
    keys = text_keys(texts)
    cache = getattr(featurizer, "cache", None)
    removed = cache.discard(keys) if isinstance(cache, EmbeddingCache) else 0
    directory = default_cache_dir() / "embeddings"
    if directory.is_dir():
        removed += sum(purge_cache_file(path, keys) for path in sorted(directory.glob("*.npz")))
    return removed


def featurize_population(
    data: PopulationData,
    featurizer: Featurizer,
    progress: Callable[[int], None] | None = None,
    chunk: int = 256,
) -> tuple[Pairs, np.ndarray, list[str]]:
    """Raw pair differences, plus features and texts of up to 2000 replies for naming axes.
    Embeddings are cached on disk, so a second fit on the same data embeds nothing."""
    cache_file = embedding_cache_file(featurizer)
    if cache_file is not None:
        featurizer.cache.load(cache_file)
    z = np.empty((len(data), featurizer.dim), dtype=np.float32)
    for start in range(0, len(data), chunk):
        stop = min(start + chunk, len(data))
        prompts = data.prompts[start:stop]
        phi = featurizer.features(prompts * 2, data.chosen[start:stop] + data.rejected[start:stop])
        z[start:stop] = phi[: stop - start] - phi[stop - start :]
        if progress:
            progress(stop - start)
    if cache_file is not None:
        featurizer.cache.save(cache_file)
    rng = np.random.default_rng(0)
    picks = rng.permutation(len(data))[:1000]
    texts = [data.chosen[i] for i in picks] + [data.rejected[i] for i in picks]
    prompts = [data.prompts[i] for i in picks] * 2
    sample = featurizer.features(prompts, texts)
    return Pairs(z, np.asarray(data.users), list(data.user_ids)), sample, texts
