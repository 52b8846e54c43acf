"""A profile a person can check (issue 23): what a user revealed, and what their reward
model prefers when asked directly, never read off correlated basis weights.

* **Revealed**: for every interpretable measure the featurizer computes (the style features
  of :mod:`persona_sdk.text.style` and its lexical measures), how often the chosen reply of
  the user's pairs and edits had more, or less, of it than the rejected one, with a sign test.
* **Probed**: the user's ``P(more ≻ less)`` on shipped minimal pairs (the same reply with
  and without one feature, ``data/probe_pairs.json``), so it asks the model itself.
* **Contradictions**: a contrast the user gave unanimously in two or more signals that the
  probed preference goes against.

The functions here are pure (texts, a posterior, probe features in; dataclasses out), so the
product and the agreement benchmark run the same code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from persona_sdk.config import package_data
from persona_sdk.memory.store import Memory
from persona_sdk.reward.basis import STYLE_WORDS
from persona_sdk.reward.features import Featurizer
from persona_sdk.reward.pool import preload_shipped_embeddings
from persona_sdk.reward.posterior import Posterior
from persona_sdk.text.style import LEXICAL_FEATURES, STYLE_FEATURES, lexical_matrix, style_matrix

PROBE_FILE = "probe_pairs.json"
PROBE_EMBEDDINGS_FILE = "probe_embeddings.npz"  # the embedded MiniLM's vectors of every probe text
MEASURES: tuple[str, ...] = STYLE_FEATURES + LEXICAL_FEATURES
# (more, less) words for each measure: the labels a person reads.
WORDS: dict[str, tuple[str, str]] = {
    **STYLE_WORDS,
    "numbers": ("numbers", "no numbers"),
    "long_words": ("technical words", "plain words"),
    "prompt_overlap": ("echoes the request", "own words"),
}
# Smallest difference (in the featurizer's squashed units) that a reader would notice; counts
# and flags change by at least log(2) or 1, so they only need to differ at all.
MIN_DELTA: dict[str, float] = {
    **dict.fromkeys(MEASURES, 1e-6),
    "length": 0.2,  # about 20% more words
    "sentence_length": 0.2,
    "hedging": 0.1,
    "casual": 0.1,
    "long_words": 0.03,
    "prompt_overlap": 0.15,
}
MIN_UNANIMOUS = 2  # signals a unanimous contrast needs before a contradiction is flagged


def label(measure: str, direction: int) -> str:
    """The words for more (``direction > 0``) or less of ``measure``."""
    more, less = WORDS[measure]
    return more if direction > 0 else less


def measure_matrix(prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
    """``(n, len(MEASURES))``: the featurizer's style and lexical measures of each text."""
    return np.hstack([style_matrix(list(texts)), lexical_matrix(list(texts), list(prompts))])


def sign_test(agree: int, total: int) -> float:
    """Two-sided sign-test p-value of ``agree`` of ``total`` signals pointing one way."""
    if total == 0:
        return 1.0
    k = max(agree, total - agree)
    tail = sum(math.comb(total, i) for i in range(k, total + 1)) / 2**total
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Signal:
    """One revealed choice: ``chosen`` ≻ ``rejected`` for ``prompt`` (a pair or an edit)."""

    prompt: str
    chosen: str
    rejected: str
    kind: str = "pair"  # "pair", or "edit" for edited ≻ original


def signals_of(memories: Sequence[Memory]) -> list[Signal]:
    """The user's choices, each once: every pair, and an edit only when its pair (edited ≻
    original, stored with it) is gone."""
    pairs = [m for m in memories if m.kind == "pair"]
    edits = {m.id: m for m in memories if m.kind == "edit"}
    covered = {m.origin_id for m in pairs if m.origin_id in edits}
    out = [
        Signal(m.prompt or "", m.chosen or "", m.rejected or "",
               "edit" if m.origin_id in edits else "pair")
        for m in pairs
    ]  # fmt: skip
    out += [
        Signal(e.prompt or "", e.chosen or "", e.rejected or "", "edit")
        for i, e in edits.items()
        if i not in covered
    ]
    return out


@dataclass(frozen=True)
class Revealed:
    """How the user's signals went on one measure: ``agree`` of ``signals`` chose
    ``direction`` (+1 more, −1 less; 0 when split evenly)."""

    measure: str
    direction: int
    agree: int
    signals: int
    edits: int  # how many of the signals are edits
    p_value: float

    @property
    def label(self) -> str:
        return label(self.measure, self.direction) if self.direction else f"{self.measure}: split"

    @property
    def counts(self) -> str:
        return f"{self.agree} of {self.signals}"

    @property
    def unanimous(self) -> bool:
        return self.direction != 0 and self.agree == self.signals

    @property
    def confidence(self) -> float:
        return round(1.0 - self.p_value, 4)


def revealed_preferences(signals: Sequence[Signal]) -> list[Revealed]:
    """Every measure on which at least one signal's replies differ noticeably, most
    signals first."""
    if not signals:
        return []
    prompts = [s.prompt for s in signals]
    delta = measure_matrix(prompts, [s.chosen for s in signals]) - measure_matrix(
        prompts, [s.rejected for s in signals]
    )
    is_edit = np.array([s.kind == "edit" for s in signals])
    out = []
    for j, name in enumerate(MEASURES):
        speaks = np.abs(delta[:, j]) >= MIN_DELTA[name]
        more, total = int((delta[speaks, j] > 0).sum()), int(speaks.sum())
        if total == 0:
            continue
        direction = int(np.sign(2 * more - total))
        agree = max(more, total - more)
        edits = int(is_edit[speaks].sum())
        out.append(Revealed(name, direction, agree, total, edits, round(sign_test(more, total), 4)))
    return sorted(out, key=lambda r: (-r.signals, -r.agree, MEASURES.index(r.measure)))


# -- probed preferences ------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A minimal pair: the same reply to ``prompt`` with ``more`` and ``less`` of ``measure``."""

    measure: str
    prompt: str
    more: str
    less: str


@lru_cache(maxsize=1)
def load_probes() -> tuple[Probe, ...]:
    """The shipped minimal pairs (package data)."""
    rows = json.loads(package_data(PROBE_FILE).read_text(encoding="utf-8"))
    return tuple(Probe(**row) for row in rows)


def probe_differences(featurizer: Featurizer, probes: Sequence[Probe]) -> np.ndarray:
    """``φ(more) − φ(less)`` of every probe, from one featurizer call (the embedded
    embedder's vectors ship with the probes, so it embeds nothing)."""
    preload_shipped_embeddings(featurizer, PROBE_EMBEDDINGS_FILE)
    prompts = [p.prompt for p in probes] * 2
    phi = featurizer.features(prompts, [p.more for p in probes] + [p.less for p in probes])
    return phi[: len(probes)] - phi[len(probes) :]


@dataclass(frozen=True)
class Probed:
    """The model's preference on one measure: mean ``P(more ≻ less)`` over its probes."""

    measure: str
    p_more: float
    probes: int

    @property
    def direction(self) -> int:
        return 1 if self.p_more > 0.5 else -1 if self.p_more < 0.5 else 0

    def p_of(self, direction: int) -> float:
        """P(the ``direction`` side ≻ the other), e.g. P(shorter ≻ longer) for −1 on length."""
        return self.p_more if direction > 0 else 1.0 - self.p_more


def probed_preferences(
    posterior: Posterior, g: np.ndarray, probes: Sequence[Probe]
) -> list[Probed]:
    """Per measure, the posterior's mean P(more ≻ less) over the probes (``g``: the probes'
    feature differences projected on the basis, one row per probe)."""
    p = posterior.probability(g) if len(probes) else np.zeros(0)
    measures = np.array([probe.measure for probe in probes])
    return [
        Probed(name, round(float(p[measures == name].mean()), 4), int((measures == name).sum()))
        for name in MEASURES
        if (measures == name).any()
    ]


# -- the profile -------------------------------------------------------------------------


def contradicts(revealed: Revealed, probed: Probed | None) -> bool:
    """A unanimous revealed contrast (≥ :data:`MIN_UNANIMOUS` signals) the probe goes against."""
    return (
        probed is not None
        and revealed.unanimous
        and revealed.signals >= MIN_UNANIMOUS
        and probed.p_of(revealed.direction) < 0.5
    )


@dataclass
class Profile:
    """What a user revealed, what their reward model prefers when probed, and where the two
    disagree. ``contradictions`` lists the revealed labels the model goes against."""

    user_id: str
    rules: list[dict]
    revealed: list[Revealed]
    probed: list[Probed]
    n_signals: int
    personalized: bool
    contradictions: list[str] = field(default_factory=list)

    def probed_for(self, measure: str) -> Probed | None:
        return next((p for p in self.probed if p.measure == measure), None)

    def to_dict(self) -> dict:
        """A JSON-ready dict (labels, counts and probabilities; no basis weights)."""
        revealed = []
        for r in self.revealed:
            probe = self.probed_for(r.measure)
            revealed.append(
                {**asdict(r), "label": r.label, "counts": r.counts, "confidence": r.confidence,
                 "probed": None if probe is None or not r.direction
                 else round(probe.p_of(r.direction), 4),
                 "flagged": contradicts(r, probe)}
            )  # fmt: skip
        probed = [
            {**asdict(p), "label": label(p.measure, p.direction or 1),
             "p_preferred": round(p.p_of(p.direction or 1), 4)}
            for p in self.probed
        ]  # fmt: skip
        return {
            "user_id": self.user_id,
            "rules": self.rules,
            "signals": self.n_signals,
            "personalized": self.personalized,
            "revealed": revealed,
            "probed": probed,
            "contradictions": list(self.contradictions),
        }


def build_profile(
    user_id: str,
    signals: Sequence[Signal],
    posterior: Posterior,
    probe_g: np.ndarray,
    probes: Sequence[Probe],
    rules: list[dict] | None = None,
) -> Profile:
    """The profile of one user from their signals, their posterior and the projected probes."""
    revealed = revealed_preferences(signals)
    probed = probed_preferences(posterior, probe_g, probes)
    by_measure = {p.measure: p for p in probed}
    flagged = [r.label for r in revealed if contradicts(r, by_measure.get(r.measure))]
    return Profile(
        user_id, rules or [], revealed, probed, len(signals), posterior.n_pairs > 0, flagged
    )
