"""Per-user reward models on a shared basis: the Persona's reward component (design §2).

A user's weights are refit from all their pairs (stated, onboarding, and edited ≻ original)
whenever they change. Pair features are stored in SQLite beside the pairs, so a refit costs a
Newton solve in K dimensions, not an embedding pass. Posteriors are cached per user and
``memory_version``; a user with no pairs is the population prior (``personalized=False``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persona_sdk.decoding.embedder import Embedder
from persona_sdk.errors import BasisError, InvalidInputError
from persona_sdk.memory.store import MemoryStore
from persona_sdk.reward.basis import RewardBasis, default_basis_path
from persona_sdk.reward.features import EmbeddingStyleFeaturizer, Featurizer, featurizer_hash
from persona_sdk.reward.pool import load_pool, preload_shipped_embeddings
from persona_sdk.reward.population import forget_texts
from persona_sdk.reward.posterior import Posterior, evidence_share, fit_posterior
from persona_sdk.reward.profile import (
    Probe,
    Profile,
    build_profile,
    load_probes,
    probe_differences,
    signals_of,
)

DATA_DIR_BASIS = "basis.npz"  # written by `persona basis fit`; used instead of the default
QUESTION_PROMPTS = 40  # pool prompts whose replies are candidate onboarding questions


@dataclass(frozen=True)
class Question:
    """An A/B question for onboarding: which reply to ``prompt`` does the user prefer?"""

    prompt: str
    a: str
    b: str
    p_a: float  # predicted P(a ≻ b) under the current posterior
    information: float  # expected information gain of the answer, in nats

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RewardProfile:
    """A user's weights on the named axes, with posterior standard deviations."""

    user_id: str
    axes: list[str]
    weights: list[float]
    std: list[float]
    n_pairs: int
    basis_id: str

    @property
    def personalized(self) -> bool:
        """False while the user is the population default (no pairs yet)."""
        return self.n_pairs > 0

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.axes, self.weights))

    def to_dict(self) -> dict:
        return dict(self.__dict__, personalized=self.personalized)


class Rewards:
    """The basis, the featurizer and every user's posterior over one store.

    ``embedder`` is called when the default featurizer is first needed; ``data_dir`` may
    hold a basis of its own (``persona basis fit``).
    """

    def __init__(
        self,
        store: MemoryStore,
        embedder: Callable[[], Embedder],
        data_dir: Path,
        basis: RewardBasis | str | Path | None = None,
        featurizer: Featurizer | None = None,
    ):
        self._store, self._embedder, self._data_dir = store, embedder, data_dir
        self._basis_spec = basis
        self._basis: RewardBasis | None = basis if isinstance(basis, RewardBasis) else None
        self._featurizer = featurizer
        self._posteriors: dict[str, tuple[int, Posterior]] = {}
        self._questions: tuple[list[str], list[str], np.ndarray, np.ndarray] | None = None
        self._lock = threading.RLock()
        self._profiles: dict[str, tuple[tuple[int, str], Profile]] = {}
        self._probes: tuple[tuple[Probe, ...], np.ndarray] | None = None

    # -- shared parts --------------------------------------------------------------------

    @property
    def featurizer(self) -> Featurizer:
        if self._featurizer is None:
            self._featurizer = EmbeddingStyleFeaturizer(self._embedder())
        return self._featurizer

    @property
    def basis(self) -> RewardBasis:
        """The explicit basis, else the data dir's own (``persona basis fit``), else the
        shipped default; always checked against the featurizer."""
        if self._basis is None:
            if self._basis_spec is not None:
                path = Path(self._basis_spec)
            elif (self._data_dir / DATA_DIR_BASIS).exists():  # a broken one raises
                path = self._data_dir / DATA_DIR_BASIS
            else:
                path = default_basis_path()
            self._basis = RewardBasis.load(path)
        self._basis.check(self.featurizer)
        return self._basis

    def basis_check(self) -> tuple[str, str, str]:
        """Doctor's check of the data dir's basis file, read afresh and verified against
        its checksum: ``("basis", status, detail)``."""
        path = self._data_dir / DATA_DIR_BASIS
        if not path.exists():
            return "basis", "ok", "no basis file in the data dir (the default is used)"
        try:
            RewardBasis.load(path)
        except BasisError as exc:
            return "basis", "corrupt", f"{exc}; refit it with `persona basis fit`"
        return "basis", "ok", f"{path.name} passes its checksum"

    def check(self) -> None:
        """Raise now if the basis is missing, broken or fit for another featurizer."""
        self.basis  # noqa: B018 - loading checks it

    def use_basis(self, basis: RewardBasis) -> None:
        """Switch to ``basis`` (checked first); cached posteriors are dropped."""
        basis.check(self.featurizer)
        with self._lock:
            self._basis, self._posteriors, self._questions = basis, {}, None

    def features(self, prompts: list[str], replies: list[str]) -> np.ndarray:
        return self.featurizer.features(prompts, replies)

    # -- posteriors ----------------------------------------------------------------------

    def posterior(self, user_id: str) -> Posterior:
        """The user's weight posterior, refit when their memories changed since."""
        basis = self.basis
        version = self._store.memory_version(user_id)
        with self._lock:
            cached = self._posteriors.get(user_id)
            if cached is not None and cached[0] == version:
                return cached[1]
        g = self._pair_features(user_id) @ basis.directions
        posterior = fit_posterior(g, basis.prior_mean, basis.prior_precision)
        with self._lock:
            self._posteriors[user_id] = (version, posterior)
        return posterior

    def _pair_features(self, user_id: str) -> np.ndarray:
        """Every pair's ``φ(chosen) − φ(rejected)``; missing ones are computed and stored."""
        key = featurizer_hash(self.featurizer)
        pairs = self._store.pair_features(user_id, key)
        missing = [row for row in pairs if row[4] is None]
        computed = {}
        if missing:
            prompts = [r[1] for r in missing]
            phi = self.features(prompts * 2, [r[2] for r in missing] + [r[3] for r in missing])
            diffs = phi[: len(missing)] - phi[len(missing) :]
            computed = {r[0]: z for r, z in zip(missing, diffs)}
            self._store.save_pair_features(user_id, key, computed)
        rows = [computed[r[0]] if r[4] is None else r[4] for r in pairs]
        return np.stack(rows) if rows else np.zeros((0, self.featurizer.dim), np.float32)

    def refit(self, user_id: str) -> Posterior:
        """Refit now (after new pairs); :meth:`posterior` would also do it lazily."""
        return self.posterior(user_id)

    def forget(self, user_id: str) -> None:
        """Drop the user's posterior, and their texts from every embedding cache (this
        process's and the saved ones), so no cache can tell whether a text was theirs.
        Runs before the user's rows are deleted."""
        with self._lock:
            self._posteriors.pop(user_id, None)
            self._profiles.pop(user_id, None)
        texts = [
            t
            for m in self._store.memories(user_id)
            for t in (m.text, m.prompt, m.chosen, m.rejected, m.context)
            if t
        ]
        forget_texts(self._featurizer, texts)

    # -- what a user's reward says -------------------------------------------------------

    def profile(self, user_id: str) -> RewardProfile:
        posterior, basis = self.posterior(user_id), self.basis
        return RewardProfile(
            user_id,
            basis.axis_names,
            [round(float(w), 4) for w in posterior.mean],
            [round(float(s), 4) for s in posterior.std],
            posterior.n_pairs,
            basis.basis_id,
        )

    def evidence(self, user_id: str) -> float:
        """The share of the user's posterior that their own pairs determine, in [0, 1]
        (:func:`~persona_sdk.reward.posterior.evidence_share`); 0 with no pairs."""
        return evidence_share(self.posterior(user_id), self.basis.prior_precision)

    def scores(self, user_id: str, prompt: str, replies: list[str]) -> np.ndarray:
        """The user's reward ``φ(x, y)ᵀ D w`` (posterior mean) for each reply."""
        if not replies:
            return np.zeros(0)
        return self.score_features(user_id, self.features([prompt] * len(replies), replies))

    def score_features(self, user_id: str, phi: np.ndarray) -> np.ndarray:
        """The user's reward for replies already featurized (rows of ``features``)."""
        return phi @ self.basis.directions @ self.posterior(user_id).mean

    def prefer(self, user_id: str, prompt: str, a: str, b: str) -> float:
        """P(a ≻ b) for the user, averaged over the posterior."""
        phi = self.features([prompt, prompt], [a, b])
        g = (phi[0] - phi[1]) @ self.basis.directions
        return float(self.posterior(user_id).probability(g[None, :])[0])

    def next_question(
        self, user_id: str, prompt: str | None = None, replies: list[str] | None = None
    ) -> Question:
        """The A/B question whose answer the user's posterior is least sure of (BALD).

        With ``prompt`` and ``replies``, it picks among pairs of those replies; otherwise
        among replies of the shipped response pool. Pairs the user already answered are
        skipped.
        """
        if replies is not None:
            if prompt is None or len(set(replies)) < 2:
                raise InvalidInputError("next_question needs a prompt and two distinct replies")
            prompts, texts = [prompt] * len(replies), list(replies)
            phi = self.features(prompts, texts)
            a, b = np.triu_indices(len(texts), k=1)
        else:
            prompts, texts, phi, (a, b) = self._question_pool()
        answered = {
            frozenset((m.chosen, m.rejected)) for m in self._store.memories(user_id, kind="pair")
        }
        keep = np.array(
            [frozenset((texts[i], texts[j])) not in answered and texts[i] != texts[j]
             for i, j in zip(a, b)], dtype=bool,
        )  # fmt: skip
        if not keep.any():
            raise InvalidInputError("every candidate pair was already answered")
        a, b = a[keep], b[keep]
        g = (phi[a] - phi[b]) @ self.basis.directions
        posterior = self.posterior(user_id)
        information = posterior.information(g)
        best = int(np.argmax(information))
        p_a = float(posterior.probability(g[best : best + 1])[0])
        i, j = int(a[best]), int(b[best])
        return Question(prompts[i], texts[i], texts[j], p_a, float(information[best]))

    def _question_pool(self):
        """Replies to a fixed sample of pool prompts, featurized once per Persona."""
        if self._questions is None:
            entries = load_pool()
            prompts = sorted({e.prompt for e in entries})
            chosen = set(np.random.default_rng(0).permutation(prompts)[:QUESTION_PROMPTS])
            entries = [e for e in entries if e.prompt in chosen]
            preload_shipped_embeddings(self.featurizer)
            phi = self.features([e.prompt for e in entries], [e.text for e in entries])
            of = np.array([e.prompt for e in entries])
            a, b = np.triu_indices(len(entries), k=1)
            same = of[a] == of[b]
            self._questions = ([e.prompt for e in entries], [e.text for e in entries], phi,
                               (a[same], b[same]))  # fmt: skip
        return self._questions

    # -- the checkable profile (issue 23) ------------------------------------------------

    def preference_profile(self, user_id: str) -> Profile:
        """What the user revealed, what their reward prefers on minimal pairs, and where the
        two disagree; cached per (memory_version, basis)."""
        basis = self.basis
        key = (self._store.memory_version(user_id), basis.basis_id)
        with self._lock:
            cached = self._profiles.get(user_id)
            if cached is not None and cached[0] == key:
                return cached[1]
        memories = self._store.memories(user_id, include_superseded=False)
        rules = [
            {"id": m.id, "text": m.text, "context": m.context, "source": m.source,
             "support": m.support}
            for m in memories if m.kind == "rule"
        ]  # fmt: skip
        probes, differences = self._probe_set()
        profile = build_profile(
            user_id, signals_of(memories), self.posterior(user_id),
            differences @ basis.directions, probes, rules,
        )  # fmt: skip
        with self._lock:
            self._profiles[user_id] = (key, profile)
        return profile

    def contradiction_count(self, user_id: str) -> int:
        """How many contrasts the user revealed unanimously (≥ 2 signals) that their reward
        model's probed preference goes against: 0 means the model agrees with what they
        showed; more means low confidence in the model for this user. On simulated users
        most flags come from confounded counts rather than model errors (RESULTS.md,
        profile_agreement), so it is mild evidence, not a veto."""
        return len(self.preference_profile(user_id).contradictions)

    def _probe_set(self) -> tuple[tuple[Probe, ...], np.ndarray]:
        """The shipped minimal pairs and their feature differences, featurized once."""
        if self._probes is None:
            probes = load_probes()
            self._probes = (probes, probe_differences(self.featurizer, probes))
        return self._probes
