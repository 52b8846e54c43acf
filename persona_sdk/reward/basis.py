"""A reward basis: K reward directions over a featurizer's features, a population prior over
user weights, and a name for every axis (design §2).

A user's reward is ``r_u(x, y) = φ(x, y)ᵀ D w_u`` where ``D`` (d × K) is
:attr:`RewardBasis.directions`. Bases are saved as one ``.npz`` file carrying a checksum, the
featurizer's identity and everything needed to explain the axes; loading verifies all three.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from persona_sdk.config import package_data
from persona_sdk.errors import BasisError, FeaturizerMismatchError
from persona_sdk.reward.features import Featurizer, featurizer_hash
from persona_sdk.text.style import STYLE_FEATURES, style_matrix

DEFAULT_BASIS_FILE = "default_basis.npz"
FORMAT_VERSION = 1

# (more, less) words for each style feature, used to name an axis by its two ends.
STYLE_WORDS: dict[str, tuple[str, str]] = {
    "length": ("longer", "shorter"),
    "sentence_length": ("long sentences", "short sentences"),
    "bullets": ("bullet lists", "no bullets"),
    "numbered": ("numbered steps", "no numbered steps"),
    "emoji": ("emoji", "no emoji"),
    "questions": ("asks questions", "no questions"),
    "exclamations": ("exclamations", "no exclamations"),
    "code": ("code", "no code"),
    "headings": ("headings", "no headings"),
    "hedging": ("hedged", "direct"),
    "greeting": ("greeting", "no greeting"),
    "signoff": ("sign-off", "no sign-off"),
    "casual": ("casual", "formal"),
}


@dataclass
class Axis:
    """One reward direction, explained: what it correlates with and its extreme replies."""

    name: str
    correlations: dict[str, float] = field(default_factory=dict)
    top_examples: list[str] = field(default_factory=list)
    bottom_examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RewardBasis:
    """K reward directions (``directions``: d × K) and the population prior over weights."""

    directions: np.ndarray
    prior_mean: np.ndarray
    prior_cov: np.ndarray
    axes: list[Axis]
    featurizer: str
    featurizer_hash: str
    method: str = "lore"
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directions = np.asarray(self.directions, dtype=np.float32)
        self.prior_mean = np.asarray(self.prior_mean, dtype=np.float64)
        self.prior_cov = np.asarray(self.prior_cov, dtype=np.float64)
        _d, k = self.directions.shape
        if self.prior_mean.shape != (k,) or self.prior_cov.shape != (k, k) or len(self.axes) != k:
            raise BasisError(f"basis arrays disagree on the number of axes ({k})")

    @property
    def rank(self) -> int:
        return self.directions.shape[1]

    @property
    def dim(self) -> int:
        return self.directions.shape[0]

    @property
    def axis_names(self) -> list[str]:
        return [a.name for a in self.axes]

    @property
    def prior_precision(self) -> np.ndarray:
        return np.linalg.inv(self.prior_cov)

    @property
    def basis_id(self) -> str:
        """A digest of the directions and prior: changes whenever the basis does."""
        digest = hashlib.sha256(self.directions.tobytes())
        digest.update(self.prior_mean.tobytes() + self.prior_cov.tobytes())
        return digest.hexdigest()[:12]

    def project(self, features: np.ndarray) -> np.ndarray:
        """Each feature row's coordinates on the K axes: ``φ D``."""
        return np.asarray(features, dtype=np.float32) @ self.directions

    def check(self, featurizer: Featurizer) -> None:
        """Raise :class:`FeaturizerMismatchError` unless ``featurizer`` is the one fit with."""
        if featurizer_hash(featurizer) != self.featurizer_hash or featurizer.dim != self.dim:
            raise FeaturizerMismatchError(
                f"this basis was fit with featurizer {self.featurizer!r} ({self.dim} features), "
                f"not {featurizer.identity!r} ({featurizer.dim}); refit it with "
                "`persona basis fit` for this featurizer"
            )

    # -- files ---------------------------------------------------------------------------

    def _meta(self) -> str:
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "featurizer": self.featurizer,
                "featurizer_hash": self.featurizer_hash,
                "method": self.method,
                "axes": [a.to_dict() for a in self.axes],
                "stats": self.stats,
            },
            sort_keys=True,
        )

    def save(self, path: str | Path) -> Path:
        """Write the basis atomically (a temp file, then a rename)."""
        path = Path(path)
        if path.is_dir():
            raise BasisError(f"{path} is a directory; give a file name for the basis")
        meta = self._meta()
        arrays = {"directions": self.directions, "prior_mean": self.prior_mean}
        arrays["prior_cov"] = self.prior_cov
        tmp = path.with_name(path.name + ".tmp.npz")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(tmp, meta=meta, checksum=_checksum(arrays, meta), **arrays)
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BasisError(f"cannot write the basis to {path}: {exc.strerror or exc}") from exc
        return path

    @classmethod
    def load(cls, path: str | Path, featurizer: Featurizer | None = None) -> RewardBasis:
        """Read and verify a basis file; with ``featurizer``, also check it matches."""
        path = Path(path)
        if not path.is_file():
            raise BasisError(
                f"{path} is not a file" if path.exists() else f"no basis file at {path}"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("directions", "prior_mean", "prior_cov")}
                meta, checksum = str(data["meta"]), str(data["checksum"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise BasisError(f"{path} is not a readable basis file (corrupt or truncated)") from exc
        if _checksum(arrays, meta) != checksum:
            raise BasisError(f"{path} fails its checksum: the file is corrupt")
        info = json.loads(meta)
        if info.get("format") != FORMAT_VERSION:
            raise BasisError(f"{path} has basis format {info.get('format')}, not {FORMAT_VERSION}")
        basis = cls(
            arrays["directions"],
            arrays["prior_mean"],
            arrays["prior_cov"],
            [Axis(**a) for a in info["axes"]],
            info["featurizer"],
            info["featurizer_hash"],
            info["method"],
            info["stats"],
        )
        if featurizer is not None:
            basis.check(featurizer)
        return basis


def _checksum(arrays: dict[str, np.ndarray], meta: str) -> str:
    digest = hashlib.sha256(meta.encode())
    for key in sorted(arrays):
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def default_basis_path() -> Path:
    """The basis shipped for the embedded featurizer (MiniLM ⊕ style ⊕ relevance)."""
    return package_data(DEFAULT_BASIS_FILE)


# -- explaining axes -----------------------------------------------------------------------


def name_axes(rewards: np.ndarray, texts: list[str], examples: int = 2) -> list[Axis]:
    """Name each axis from the style features its reward (``rewards``: n × K, over
    ``texts``) correlates with most, the sign picking the end, and keep its top and bottom
    ``examples`` replies. Style is measured from the texts, so any featurizer gets names."""
    styles = style_matrix(texts)
    axes, used = [], set()
    for k in range(rewards.shape[1]):
        r = rewards[:, k]
        correlations = {
            name: _correlation(r, styles[:, j]) for j, name in enumerate(STYLE_FEATURES)
        }
        strongest = sorted(correlations.items(), key=lambda kv: -abs(kv[1]))
        words = [STYLE_WORDS[n][0 if c > 0 else 1] for n, c in strongest[:2] if abs(c) >= 0.25]
        name = ", ".join(words) if words else f"content {k + 1}"
        if name in used:
            name = f"{name} ({k + 1})"
        used.add(name)
        order = np.argsort(-r, kind="stable")
        axes.append(
            Axis(
                name,
                {n: round(c, 3) for n, c in strongest[:5]},
                [_snippet(texts[i]) for i in order[:examples]],
                [_snippet(texts[i]) for i in order[::-1][:examples]],
            )
        )
    return axes


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    if sa < 1e-12 or sb < 1e-12:
        return 0.0
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def _snippet(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
