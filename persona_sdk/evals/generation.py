"""``persona eval generation``: mean true utility of simulated unseen users' replies under
each generation method, through the public API (``Persona.generate_batch``).

Each user states the rules of their strongest preferences (``oracle_rules``) and answers
``shots`` pairs on train prompts; replies are to held-out prompts. Utility is the
simulator's ``weights · attributes`` of the reply text.

Beside every utility, the quality guards of each method's replies: degenerate rate,
the base model's NLL per token (the reply after the plain prompt: no rules; and, as a second
view, after the prompt the reply was written for, rules included), relevance to the
request, and words; and the *quality-adjusted* utility, where a degenerate reply
scores the user's utility of the base reply to that prompt, never more.

Two views of it are reported. *Utility* is that number as is. *Utility over the pool* is
it minus the user's mean utility of the prompt's pool replies. Bradley–Terry choices only
see differences between replies to one prompt, so a user's utility is identified only up
to a per-prompt constant; subtracting a fixed reference that no method touches removes
that unidentifiable level (which differs a lot between users) and leaves every paired
difference unchanged.
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from persona_sdk.adapters.build import is_held_out
from persona_sdk.adapters.dpo import prompt_ids
from persona_sdk.errors import InvalidInputError, UnknownUserError
from persona_sdk.evals.adapters import ci95
from persona_sdk.quality import degenerate_reasons, relevance, score_replies
from persona_sdk.simulation.users import attribute_vector, calibrate_beta, make_reward_population
from persona_sdk.simulation.world import RewardWorld, bt_labels

# (name, uses rules, strength, best_of)
METHODS: list[tuple[str, bool, float, int]] = [
    ("base", False, 0.0, 1),
    ("rules only", True, 0.0, 1),
    ("adapter α=0.5", False, 0.5, 1),
    ("adapter α=1", False, 1.0, 1),
    ("adapter α=2", False, 2.0, 1),
    ("rules + guidance", True, 1.0, 1),
    ("rules + guidance + best-of-4", True, 1.0, 4),
]
FULL_PIPELINE = METHODS[-1][0]


@dataclass
class GenerationEvalConfig:
    """``users`` unseen simulated users × ``prompts`` held-out prompts each."""

    users: int = 20
    prompts: int = 10
    shots: int = 16
    max_new_tokens: int = 64
    users_per_batch: int = 4  # users whose requests share one generate_batch call
    seed: int = 0


@dataclass
class GenerationEvalResult:
    model: str
    config: dict
    # name, mean, ci95, per-user means, and the same under "over_pool"
    methods: list[dict] = field(default_factory=list)
    gains: dict = field(default_factory=dict)  # full pipeline minus each other method, paired
    targets: dict = field(default_factory=dict)  # issue 18's quality bars for the full pipeline

    def to_dict(self) -> dict:
        out = asdict(self)
        full = next(m for m in self.methods if m["method"] == FULL_PIPELINE)
        out["full_beats_with_separate_cis"] = {
            m["method"]: {
                "utility": _separate(full, m),
                "over_pool": _separate(full["over_pool"], m["over_pool"]),
                "quality_adjusted": _separate(full["quality_adjusted"], m["quality_adjusted"]),
            }
            for m in self.methods
            if m["method"] in ("base", "rules only")
        }
        return out


def _separate(better: dict, other: dict) -> bool:
    """Whether ``better``'s 95% CI lies wholly above ``other``'s."""
    return bool(better["mean"] - better["ci95"] > other["mean"] + other["ci95"])


def _summary(values: list[float]) -> dict:
    v = np.array(values)
    return {"mean": float(v.mean()), "ci95": ci95(v), "per_user": values}


def _onboard(persona, world: RewardWorld, user, utility, threshold, train_ids, config, rng):
    """Two stored users per simulated one: ``…-rules`` (rules + pairs) and ``…-pairs``."""
    a, b = world.answerable_pairs(train_ids, config.shots, utility, threshold, rng)
    gap = utility[a] - utility[b]
    wins = bt_labels(gap, calibrate_beta(gap), rng)
    pairs = []
    for i, j, won in zip(a, b, wins):
        chosen, rejected = (i, j) if won else (j, i)
        pairs.append((world.prompts[world.prompt_of[chosen]], world.texts[chosen],
                      world.texts[rejected]))  # fmt: skip
    ids = {}
    for suffix, with_rules in (("rules", True), ("pairs", False)):
        stored = persona.user(f"sim-{user.user_id}-{suffix}")
        with suppress(UnknownUserError):  # a killed run may have left this user half-stored
            stored.forget()
        stored.add_pairs(pairs)
        if with_rules:
            for rule in user.oracle_rules():
                stored.add_rule(rule)
        ids[with_rules] = stored.id
    return ids


def _replies(persona, requests, strength: float, best_of: int, config, seed: int) -> list[str]:
    """Greedy replies, or best-of-N sampled at the product's own best-of temperature."""
    sampled = best_of > 1
    replies = persona.generate_batch(
        requests,
        strength=strength,
        best_of=best_of,
        max_new_tokens=config.max_new_tokens,
        temperature=None if sampled else 0.0,
        seed=seed if sampled else None,
    )
    return [r.text for r in replies]


def run_generation_eval(persona, config: GenerationEvalConfig, progress=None, methods=None,
                        checkpoint: Path | None = None) -> GenerationEvalResult:  # fmt: skip
    """Every method's mean true utility, with 95% CIs over users, and its quality;
    ``progress``: rich. ``methods``: a subset of :data:`METHODS` (base, rules only and the
    full pipeline are always kept: the targets compare them). ``checkpoint``: a JSON file
    written after every batch of users; a run with the same settings resumes from it."""
    saved = open_checkpoint(persona, config, methods, checkpoint)
    methods = select_methods(methods)
    world = RewardWorld.build(persona.rewards.featurizer)
    rng = np.random.default_rng(config.seed)
    held_out = [p for p in world.prompts if is_held_out(p)]
    prompts = [held_out[i] for i in rng.permutation(len(held_out))[: config.prompts]]
    train_ids = np.array([i for i, p in enumerate(world.prompts) if not is_held_out(p)])
    users = make_reward_population(config.users, seed=2000 + config.seed)
    utility = world.utilities(users)
    thresholds = world.indifference(utility, 0.5, rng)
    pool = world.replies_of(np.array([world.prompts.index(p) for p in prompts]))
    reference = np.stack([utility[replies].mean(0) for replies in pool])  # (prompts, users)
    tally = _Tally(prompts, reference, [name for name, *_ in methods])
    first = saved.restore(rng, tally)
    if progress is not None:
        task = progress.add_task("eval generation", total=config.users, completed=first)
    for start in range(first, config.users, config.users_per_batch):
        chunk = range(start, min(start + config.users_per_batch, config.users))
        ids = {u: _onboard(persona, world, users[u], utility[:, u], thresholds[u], train_ids,
                           config, rng) for u in chunk}  # fmt: skip
        _generate_chunk(persona, config, methods, tally, users, ids, chunk)
        for u in chunk:
            for stored in ids[u].values():
                persona.user(stored).forget()
        saved.write(chunk.stop, rng, tally)
        if progress is not None:
            progress.advance(task, len(chunk))
    return _result(persona, config, tally)


def _generate_chunk(persona, config, methods, tally: _Tally, users, ids: dict, chunk) -> None:
    """Every method's replies for one batch of users, added to the tally."""
    prompts, start = tally.prompts, chunk.start
    prompted = {u: _contexts(persona, ids[u][True], prompts) for u in chunk}
    for name, rules, strength, best_of in methods:
        if name == "base":  # the base reply does not depend on the user
            if tally.base_texts is None:
                requests = [(ids[start][False], p) for p in prompts]
                tally.set_base(_replies(persona, requests, 0.0, 1, config, 0))
            texts = tally.base_texts * len(chunk)
        else:
            requests = [(ids[u][rules], p) for u in chunk for p in prompts]
            texts = _replies(persona, requests, strength, best_of, config, config.seed + start)
        n = len(prompts)
        for i, u in enumerate(chunk):
            tally.add(name, users[u].weights, u, texts[i * n : (i + 1) * n],
                      prompted[u] if rules else None)  # fmt: skip


def open_checkpoint(persona, config: GenerationEvalConfig, methods: list[str] | None,
                    path: Path | None) -> _Checkpoint:  # fmt: skip
    """The checkpoint of this run at ``path`` (none for None); raises InvalidInputError if
    its folder is missing or the file holds another run, before any work is done."""
    settings = {"model": persona.host.name, "config": asdict(config),
                "methods": [name for name, *_ in select_methods(methods)]}  # fmt: skip
    return _Checkpoint(None if path is None else Path(path), settings)


class _Checkpoint:
    """The tally and the random state after each finished batch of users, as JSON, so a
    killed run resumes where it stopped and gives the figures an unbroken run gives."""

    def __init__(self, path: Path | None, settings: dict):
        self.path, self.settings, self.state = path, settings, None
        if path is None:
            return
        if not path.parent.is_dir():
            raise InvalidInputError(f"checkpoint folder {path.parent} does not exist")
        if path.exists():
            try:
                self.state = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise InvalidInputError(f"checkpoint {path} is unreadable: {exc}") from None
            if self.state.get("settings") != settings:
                raise InvalidInputError(
                    f"checkpoint {path} is from a run with other settings; "
                    "pass another path or delete it"
                )

    def restore(self, rng: np.random.Generator, tally: _Tally) -> int:
        """The first user still to do (0 without a saved state)."""
        if self.state is None:
            return 0
        rng.bit_generator.state = self.state["rng"]
        tally.load(self.state["tally"])
        return int(self.state["done"])

    def write(self, done: int, rng: np.random.Generator, tally: _Tally) -> None:
        if self.path is None:
            return
        state = {"settings": self.settings, "done": done, "rng": rng.bit_generator.state,
                 "tally": tally.state()}  # fmt: skip
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(state))
        os.replace(partial, self.path)  # never a half-written checkpoint


def select_methods(names: list[str] | None) -> list[tuple[str, bool, float, int]]:
    """The :data:`METHODS` named (all for None), plus the three the targets compare."""
    if names is None:
        return METHODS
    known = {name for name, *_ in METHODS}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidInputError(f"unknown method(s) {unknown}; choose from {sorted(known)}")
    keep = set(names) | {"base", "rules only", FULL_PIPELINE}
    return [m for m in METHODS if m[0] in keep]


def _contexts(persona, user_id: str, prompts: list[str]) -> list[tuple[int, ...]]:
    """The token ids each prompt is generated from for this user (rules in the system
    prompt), for the reply's NLL as prompted."""
    return [tuple(persona.host.chat_ids(persona.prompt_for(user_id, p))) for p in prompts]


class _Tally:
    """Per method and user: mean utility, over the pool and quality-adjusted; every reply
    text and the prompt it was written from (for the quality measures at the end)."""

    def __init__(self, prompts: list[str], reference: np.ndarray, names: list[str]):
        self.prompts, self.reference = prompts, reference
        self.base_texts: list[str] | None = None
        self.base_attrs: np.ndarray | None = None
        self.raw, self.over_pool, self.adjusted = ({n: [] for n in names} for _ in range(3))
        self.texts: dict[str, list[str]] = {n: [] for n in names}
        self.contexts: dict[str, list[tuple[int, ...] | None]] = {n: [] for n in names}

    def state(self) -> dict:
        """Everything added so far, as JSON-ready data."""
        keys = ("base_texts", "raw", "over_pool", "adjusted", "texts", "contexts")
        return {key: getattr(self, key) for key in keys}

    def load(self, state: dict) -> None:
        """Continue from :meth:`state`'s data."""
        for key in ("raw", "over_pool", "adjusted", "texts"):
            setattr(self, key, state[key])
        self.contexts = {m: [None if c is None else tuple(c) for c in contexts]
                         for m, contexts in state["contexts"].items()}  # fmt: skip
        if state["base_texts"] is not None:
            self.set_base(state["base_texts"])

    def set_base(self, texts: list[str]) -> None:
        self.base_texts = texts
        self.base_attrs = self._attributes(texts)

    def _attributes(self, texts: list[str]) -> np.ndarray:
        return np.stack([attribute_vector(t, p) for t, p in zip(texts, self.prompts)])

    def add(self, name: str, weights: np.ndarray, user: int, texts: list[str],
            contexts: list[tuple[int, ...]] | None = None) -> None:  # fmt: skip
        values = self._attributes(texts) @ weights
        base_values = self.base_attrs @ weights
        broken = np.array([bool(degenerate_reasons(t, p)) for t, p in zip(texts, self.prompts)])
        self.raw[name].append(float(values.mean()))
        self.over_pool[name].append(float((values - self.reference[:, user]).mean()))
        self.adjusted[name].append(float(np.where(broken, base_values, values).mean()))
        self.texts[name].extend(texts)
        self.contexts[name].extend(contexts or [None] * len(texts))


def _quality(persona, prompts: list[str], tally: _Tally) -> dict[str, dict]:
    """Per method: degenerate rate, base NLL per token after the plain prompt and after the
    prompt the reply was written for, relevance, words; each distinct reply scored once."""
    texts, host = tally.texts, persona.host
    asked = {m: [prompts[i % len(prompts)] for i in range(len(t))] for m, t in texts.items()}
    plain = {p: tuple(prompt_ids(host, p, persona.generation_config.system_prompt))
             for p in prompts}  # fmt: skip
    contexts = {m: [c or plain[p] for c, p in zip(tally.contexts[m], asked[m])] for m in texts}
    unique = list(dict.fromkeys((p, t) for m in texts for p, t in zip(asked[m], texts[m])))
    related = relevance(persona.embedder.encode, [p for p, _ in unique], [t for _, t in unique])
    scored = {key: float(r) for key, r in zip(unique, related)}
    keyed = {m: list(zip(asked[m], texts[m])) for m in texts}
    plain_keys = {(plain[p], t) for m in texts for p, t in keyed[m]}
    nll = _nll(host, plain_keys | {(c, t) for m in texts for c, t in zip(contexts[m], texts[m])})
    out = {}
    for method, keys in keyed.items():
        out[method] = {
            "degenerate_rate": float(np.mean([bool(degenerate_reasons(t, p)) for p, t in keys])),
            "nll_per_token": _mean_finite(nll[(plain[p], t)] for p, t in keys),
            "nll_per_token_as_prompted": _mean_finite(
                nll[(c, t)] for c, t in zip(contexts[method], texts[method])
            ),
            "relevance": float(np.mean([scored[k] for k in keys])),
            "words": float(np.mean([len(t.split()) for _, t in keys])),
        }
    return out


def _nll(host, pairs: set[tuple[tuple[int, ...], str]]) -> dict[tuple, float]:
    """The base model's NLL per token of each (prompt ids, reply text); NaN when empty."""
    keys = list(pairs)
    replies = [host.tokenizer.encode(t, add_special_tokens=False) for _, t in keys]
    logp = score_replies(host.model, [list(c) for c, _ in keys], replies,
                         pad_id=host.tokenizer.pad_token_id or 0)  # fmt: skip
    return {key: -float(lp) for key, lp in zip(keys, logp)}


def _mean_finite(values) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _result(persona, config: GenerationEvalConfig, tally: _Tally) -> GenerationEvalResult:
    quality = _quality(persona, tally.prompts, tally)
    result = GenerationEvalResult(persona.host.name, asdict(config))
    for name in tally.raw:
        result.methods.append({"method": name, **_summary(tally.raw[name]),
                               "over_pool": _summary(tally.over_pool[name]),
                               "quality_adjusted": _summary(tally.adjusted[name]),
                               "quality": quality[name]})  # fmt: skip
    full = np.array(tally.raw[FULL_PIPELINE])
    for name, values in tally.raw.items():
        if name != FULL_PIPELINE:
            diff = full - np.array(values)
            result.gains[name] = {"mean": float(diff.mean()), "ci95": ci95(diff),
                                  "users_better": int((diff > 0).sum())}  # fmt: skip
    result.targets = _targets(result)
    return result


def _targets(result: GenerationEvalResult) -> dict:
    """Issue 18's bars for the full pipeline against the base (and rules only)."""
    by = {m["method"]: m for m in result.methods}
    full, base, rules = by[FULL_PIPELINE], by["base"], by["rules only"]
    fq, bq = full["quality"], base["quality"]
    degenerate = fq["degenerate_rate"] - bq["degenerate_rate"]
    nll = (fq["nll_per_token"] or 0.0) - (bq["nll_per_token"] or 0.0)
    related = fq["relevance"] - bq["relevance"]
    above_base = _separate(full["quality_adjusted"], base["quality_adjusted"])
    above_rules = _separate(full["quality_adjusted"], rules["quality_adjusted"])
    return {
        "degenerate_rate_delta": {"value": degenerate, "target": 0.01, "met": degenerate <= 0.01},
        "nll_per_token_delta": {"value": nll, "target": 0.25, "met": nll <= 0.25},
        "relevance_delta": {"value": related, "target": -0.02, "met": related >= -0.02},
        "adjusted_above_base": {"value": above_base, "target": True, "met": above_base},
        "adjusted_above_rules_only": {"value": above_rules, "target": True, "met": above_rules},
    }
