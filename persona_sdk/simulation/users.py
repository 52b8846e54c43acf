"""Simulated users whose taste is known (design §7), shared by the edit-cost loop and the
reward-basis evaluation.

* :data:`ATTRIBUTES`: cheap, deterministic measures of a reply in [0, 1]. Some are the
  interpretable style features of :mod:`persona_sdk.text.style`; the rest are visible only
  through an embedding (analogies, caveats, warmth, ...), so a reward model cannot win on
  style alone.
* :class:`SimulatedUser`: sparse signed weights over the attributes (Dirichlet magnitudes, as in
  PersonalLLM), utility = weights · attributes, Bradley–Terry labels, the oracle's rule texts and a
  deterministic editor that rewrites a reply toward the user's taste.
* :func:`make_population`, :func:`split_seen_unseen`, the prompt set (:data:`PROMPTS`) and the
  word-level Levenshtein distance :func:`edit_distance` (PRELUDE's edit cost).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from persona_sdk.reward.posterior import sigmoid
from persona_sdk.simulation.attributes import (
    ATTRIBUTE_INDEX,
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    Attribute,
    attribute_vector,
)
from persona_sdk.simulation.editor import EDITABLE, EDITABLE_DIRECTIONS, edit_toward
from persona_sdk.simulation.prompts import CATEGORIES, PROMPTS, Prompt, make_prompts, split_prompts

__all__ = [
    "ARCHETYPES", "ATTRIBUTES", "ATTRIBUTE_NAMES", "CATEGORIES", "EDITABLE", "EDITABLE_DIRECTIONS",
    "PROMPTS", "Attribute", "Population", "Prompt", "SimulatedUser", "archetype_matrix",
    "attribute_vector", "calibrate_beta", "edit_distance", "edit_toward", "make_population",
    "make_prompts", "make_reward_population", "split_prompts", "split_seen_unseen",
]  # fmt: skip


# -- users and populations -----------------------------------------------------------------


@dataclass(eq=False)
class SimulatedUser:
    """A user whose taste is known: signed weights over :data:`ATTRIBUTES`.

    ``beta`` is the Bradley–Terry inverse noise; ``threshold`` is the smallest ``|weight|``
    that counts as a real preference (for :meth:`oracle_rules` and :meth:`edit`).
    """

    user_id: str
    weights: np.ndarray
    beta: float = 10.0
    threshold: float = 0.1

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.weights.shape != (len(ATTRIBUTES),):
            raise ValueError(f"weights must have shape ({len(ATTRIBUTES)},)")

    def utility(self, prompt: str | Prompt, text: str) -> float:
        """``weights · attributes(text)``, in [-‖w‖₁, ‖w‖₁]."""
        return float(self.weights @ attribute_vector(text, prompt))

    def preference_probability(self, prompt: str | Prompt, a: str, b: str) -> float:
        """Bradley–Terry ``P(a ≻ b) = σ(β (u_a − u_b))``."""
        diff = self.beta * (self.utility(prompt, a) - self.utility(prompt, b))
        return 0.5 * (1.0 + math.tanh(diff / 2.0))

    def prefers(self, prompt: str | Prompt, a: str, b: str, rng: np.random.Generator) -> bool:
        """A noisy label: True when the user picks ``a`` over ``b``."""
        return bool(rng.random() < self.preference_probability(prompt, a, b))

    def top_attributes(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` attributes with the largest ``|weight|``, as ``(name, signed weight)``."""
        order = np.argsort(-np.abs(self.weights), kind="stable")[:k]
        return [(ATTRIBUTE_NAMES[i], float(self.weights[i])) for i in order]

    def preferences(self) -> list[tuple[str, int]]:
        """``(attribute, direction)`` of every weight with ``|w| ≥ threshold``, strongest first."""
        ranked = self.top_attributes(len(ATTRIBUTES))
        return [(name, 1 if w > 0 else -1) for name, w in ranked if abs(w) >= self.threshold]

    def oracle_rules(self) -> list[str]:
        """Rule texts of the user's true preferences, strongest first (the edit-cost floor).
        Style attributes use the wording of :data:`persona_sdk.memory.edits.TEMPLATES`."""
        rules = (ATTRIBUTES[ATTRIBUTE_INDEX[name]].rule(d) for name, d in self.preferences())
        return [r for r in rules if r]

    def edit(self, prompt: str | Prompt, text: str, max_passes: int = 4) -> str:
        """Rewrite ``text`` toward the user's taste, deterministically.

        The edits of the user's preferences are tried strongest first; one is kept only when it
        raises the user's utility (a person does not make a change they dislike), and passes
        repeat until none is kept, so editing an edited text returns it unchanged (unless
        ``max_passes`` ran out first).
        """
        plan = [key for key in self.preferences() if key[1] in EDITABLE_DIRECTIONS.get(key[0], ())]
        best = self.utility(prompt, text)
        for _ in range(max_passes):
            changed = False
            for key in plan:
                candidate = edit_toward(text, *key)
                if candidate != text and (u := self.utility(prompt, candidate)) > best + 1e-9:
                    text, best, changed = candidate, u, True
            if not changed:
                break
        return text


Population = list[SimulatedUser]


def make_population(
    n_users: int,
    seed: int = 0,
    alpha: float = 0.3,
    beta: float = 10.0,
    editable_only: bool = False,
    threshold: float = 0.1,
) -> Population:
    """``n_users`` users with sparse signed weights: magnitudes ~ Dirichlet(α), random signs.

    With ``editable_only`` the weights cover only :data:`EDITABLE` attributes, each signed in a
    direction the editor can act on (for the edit-cost loop). Same arguments, same users.
    """
    if n_users < 0 or alpha <= 0 or beta < 0:
        raise ValueError("need n_users >= 0, alpha > 0 and beta >= 0")
    rng = np.random.default_rng(seed)
    names = [n for n in ATTRIBUTE_NAMES if n in EDITABLE] if editable_only else ATTRIBUTE_NAMES
    users = []
    for u in range(n_users):
        magnitudes = rng.dirichlet(np.full(len(names), alpha))
        weights = np.zeros(len(ATTRIBUTES))
        for name, magnitude in zip(names, magnitudes):
            directions = EDITABLE_DIRECTIONS[name] if editable_only else (1, -1)
            weights[ATTRIBUTE_INDEX[name]] = magnitude * directions[rng.integers(len(directions))]
        users.append(SimulatedUser(f"sim{seed}-{u:04d}", weights, beta, threshold))
    return users


# Reward-model personas, after PersonalLLM's base reward models: a user is a sparse Dirichlet
# mixture of them plus a little taste of their own, so a population has a low-rank core but is
# not exactly low-rank. Together they use all 12 attributes the style features cannot see.
ARCHETYPES: dict[str, dict[str, float]] = {
    "skimmer": {"bullets": 1, "headings": 0.6, "summary": 0.6, "sentence_length": -0.6},
    "minimalist": {"length": -1, "hedging": -0.5, "caveats": -0.5, "examples": -0.3},
    "cheerleader": {"emoji": 1, "exclamations": 0.7, "warmth": 0.8, "casual": 0.5},
    "teacher": {"analogies": 1, "examples": 0.8, "second_person": 0.6, "jargon": -0.4},
    "analyst": {"numbers": 1, "money": 0.6, "jargon": 0.6, "casual": -0.5, "emoji": -0.5},
    "careful": {"caveats": 1, "hedging": 0.6, "length": 0.5, "exclamations": -0.4},
    "confidant": {"empathy": 1, "warmth": 0.6, "second_person": 0.6, "questions": 0.4},
    "builder": {"numbered": 1, "code": 0.6, "echo": 0.6, "headings": 0.3},
    "dreamer": {"nature": 1, "analogies": 0.5, "numbers": -0.5, "sentence_length": 0.4},
    "correspondent": {"greeting": 1, "signoff": 0.8, "questions": 0.4, "headings": -0.5},
}


def archetype_matrix() -> np.ndarray:
    """``(len(ARCHETYPES), len(ATTRIBUTES))``, each row L1-normalised."""
    rows = np.zeros((len(ARCHETYPES), len(ATTRIBUTES)))
    for i, weights in enumerate(ARCHETYPES.values()):
        for name, w in weights.items():
            rows[i, ATTRIBUTE_INDEX[name]] = w
    return rows / np.abs(rows).sum(1, keepdims=True)


def make_reward_population(
    n_users: int,
    seed: int = 0,
    alpha: float = 0.3,
    idiosyncrasy: float = 0.2,
    beta: float = 10.0,
) -> Population:
    """Users for the reward-basis evaluation: ``(1 − idiosyncrasy)`` of each user's weight is
    a Dirichlet(α) mixture of :data:`ARCHETYPES`, the rest a sparse signed taste of their own
    (as :func:`make_population`). Same arguments, same users."""
    if not 0.0 <= idiosyncrasy <= 1.0:
        raise ValueError(f"idiosyncrasy must be in [0, 1], got {idiosyncrasy}")
    rng = np.random.default_rng([seed, 7])
    archetypes = archetype_matrix()
    own = make_population(n_users, seed=seed, alpha=alpha, beta=beta)
    users = []
    for user in own:
        mixture = rng.dirichlet(np.full(len(archetypes), alpha)) @ archetypes
        weights = (1 - idiosyncrasy) * mixture + idiosyncrasy * user.weights
        users.append(SimulatedUser(f"rw{seed}-{user.user_id[-4:]}", weights, beta))
    return users


def calibrate_beta(utility_gaps: np.ndarray, target: float = 0.925) -> float:
    """The Bradley–Terry β at which an oracle that knows the true utilities labels pairs with
    these ``|u_a − u_b|`` correctly ``target`` of the time (bisection on a monotone curve)."""
    gaps = np.abs(np.asarray(utility_gaps, dtype=np.float64))
    if not 0.5 < target < 1.0 or not gaps.any():
        raise ValueError("need 0.5 < target < 1 and some non-zero utility gaps")
    low, high = 0.0, 1.0
    while np.mean(sigmoid(high * gaps)) < target:
        high *= 2
    for _ in range(60):
        mid = 0.5 * (low + high)
        if np.mean(sigmoid(mid * gaps)) < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def split_seen_unseen(
    users: Sequence[SimulatedUser], unseen_fraction: float, seed: int = 0
) -> tuple[Population, Population]:
    """Disjoint ``(seen, unseen)`` users; ``unseen`` holds ``round(fraction · n)`` of them."""
    if not 0.0 <= unseen_fraction <= 1.0:
        raise ValueError(f"unseen_fraction must be in [0, 1], got {unseen_fraction}")
    n_unseen = round(unseen_fraction * len(users))
    unseen = set(np.random.default_rng(seed).permutation(len(users))[:n_unseen].tolist())
    seen = [u for i, u in enumerate(users) if i not in unseen]
    return seen, [u for i, u in enumerate(users) if i in unseen]


def edit_distance(a: str, b: str) -> int:
    """Word-level Levenshtein distance (words are whitespace tokens): PRELUDE's edit cost.

    One numpy row per word of the shorter text; insertions within a row are a running minimum.
    """
    x, y = a.split(), b.split()
    if len(x) > len(y):
        x, y = y, x
    if not x:
        return len(y)
    vocab: dict[str, int] = {}
    xs = [vocab.setdefault(w, len(vocab)) for w in x]
    ys = np.array([vocab.setdefault(w, len(vocab)) for w in y])
    cols = np.arange(len(y) + 1)
    row = cols.copy()
    for i, word in enumerate(xs, start=1):
        step = np.empty_like(row)
        step[0] = i
        step[1:] = np.minimum(row[1:] + 1, row[:-1] + (ys != word))
        row = np.minimum.accumulate(step - cols) + cols
    return int(row[-1])
