"""``persona adapters build-basis``: one LoRA per reward direction, trained once per base
model with DPO on base-model replies ranked by that direction's reward (design §3)."""

from __future__ import annotations

import hashlib
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from persona_sdk.adapters.config import BuildConfig, check_pairing
from persona_sdk.adapters.dpo import Encoded, PreferencePair, encode_pairs, train_dpo
from persona_sdk.adapters.manifest import (
    AdapterManifest,
    lora_config,
    model_fingerprint,
    save_peft_folder,
)
from persona_sdk.adapters.samples import sample_prompts, sample_world
from persona_sdk.decoding.models import ModelHost
from persona_sdk.errors import AdapterError, InvalidInputError
from persona_sdk.reward.basis import RewardBasis
from persona_sdk.reward.features import Featurizer
from persona_sdk.reward.pool import FeaturizedPool

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel

HELD_OUT_EVERY = 5  # one prompt in five is never trained on


def is_held_out(prompt: str) -> bool:
    """A stable split of prompts (by text hash), shared by the build and ``eval adapters``."""
    return hashlib.blake2b(prompt.encode(), digest_size=4).digest()[0] % HELD_OUT_EVERY == 0


def direction_rewards(world: FeaturizedPool, basis: RewardBasis) -> np.ndarray:
    """``r_k`` of every reply in ``world``: ``(n_replies, K)``."""
    return basis.project(world.features)


def direction_pairs(
    world: FeaturizedPool,
    rewards: np.ndarray,
    k: int,
    pairs_per_prompt: int,
    contrast: bool = False,
    seed: int = 0,
    pairing: str = "extremes",
) -> list[PreferencePair]:
    """Per train prompt, its i-th best reply under ``r_k`` against a lower one: its i-th
    worst (``pairing="extremes"``), or the reply of its lower half that shares the most words
    with it (``"nearest"``: a minimal pair, so the pair differs mostly in what ``r_k``
    rewards and DPO's gradient is not spent on unrelated wording). With ``contrast``, also
    its best reply against the best reply to another (seeded, random) train prompt, so a
    reply that scores by ignoring the request loses."""
    check_pairing(pairing)
    train = np.array([i for i, p in enumerate(world.prompts) if not is_held_out(p)])
    groups = world.replies_of(train)
    pairs = []
    for prompt_id, replies in zip(train, groups):
        ranked = replies[np.argsort(-rewards[replies, k], kind="stable")]
        lower = list(ranked[len(ranked) - len(ranked) // 2 :])  # the lower half
        for i in range(min(pairs_per_prompt, len(ranked) // 2)):
            best = ranked[i]
            if pairing == "extremes":
                worst = ranked[len(ranked) - 1 - i]
            else:
                worst = max(lower, key=lambda j: _word_overlap(world.texts[best], world.texts[j]))
                lower.remove(worst)
            if rewards[best, k] > rewards[worst, k]:
                pairs.append(
                    PreferencePair(world.prompts[prompt_id], world.texts[best], world.texts[worst])
                )
    return pairs + (_contrast_pairs(world, rewards[:, k], train, groups, seed) if contrast else [])


def _word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of two texts' lower-cased word sets."""
    x, y = set(a.lower().split()), set(b.lower().split())
    return len(x & y) / max(1, len(x | y))


def _contrast_pairs(world, reward, train, groups, seed: int) -> list[PreferencePair]:
    best = {p: g[np.argmax(reward[g])] for p, g in zip(train, groups) if len(g)}
    prompts = list(best)
    if len(prompts) < 2:
        return []
    rng = np.random.default_rng(seed)
    pairs = []
    for i, p in enumerate(prompts):
        other = prompts[(i + 1 + rng.integers(len(prompts) - 1)) % len(prompts)]  # never p
        pairs.append(
            PreferencePair(world.prompts[p], world.texts[best[p]], world.texts[best[other]])
        )
    return pairs


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def _sampled_world(host, basis, world, featurizer, config, out, bar) -> FeaturizedPool:
    if featurizer is None:
        raise InvalidInputError("samples_per_prompt needs the basis's featurizer to score them")
    basis.check(featurizer)
    train = [p for p in world.prompts if not is_held_out(p)]
    prompts = sample_prompts(train, config.sample_prompts, config.dpo.seed)
    return sample_world(host, featurizer, prompts, config, out, bar)


def _open_manifest(
    out: Path,
    host: ModelHost,
    fingerprint: str,
    basis: RewardBasis,
    world: FeaturizedPool,
    config: BuildConfig,
) -> AdapterManifest:
    """The manifest in ``out`` when it was built for this model and basis, else a new one."""
    try:
        manifest = AdapterManifest.load(out)
        manifest.check(host.name, fingerprint, basis.basis_id, 0)
    except Exception:
        manifest = AdapterManifest(
            base_model=host.name,
            base_fingerprint=fingerprint,
            basis_id=basis.basis_id,
            featurizer=basis.featurizer,
            lora=config.lora.to_dict(),
            dpo=config.dpo.to_dict(),
            data={"pairs_per_prompt": config.pairs_per_prompt, "prompts": len(world.prompts),
                  "replies": len(world.texts), "held_out_every": HELD_OUT_EVERY},
        )  # fmt: skip
    return manifest


def _directions_to_train(
    manifest: AdapterManifest, basis: RewardBasis, config: BuildConfig, retrain: bool, out: Path
) -> list[int]:
    """The requested directions not finished yet (all of them with ``retrain``); raises
    before any data is ranked or any step is trained when the request cannot be built."""
    directions = config.directions or tuple(range(basis.rank))
    for k in directions:
        if not 0 <= k < basis.rank:
            raise InvalidInputError(f"direction {k} is outside 0..{basis.rank - 1}")
    todo = [k for k in directions if retrain or str(k) not in manifest.directions]
    if todo and manifest.directions and manifest.lora != config.lora.to_dict():
        raise AdapterError(
            f"{out} holds adapters with LoRA {manifest.lora}, not {config.lora.to_dict()}; "
            "every direction must share one shape (build into a new folder)"
        )
    return todo


def _encoded_direction_pairs(
    host: ModelHost, world: FeaturizedPool, rewards: np.ndarray, k: int, config: BuildConfig
) -> list[Encoded]:
    pairs = direction_pairs(world, rewards, k, config.pairs_per_prompt,
                            config.contrast_pairs, config.dpo.seed, config.pairing)  # fmt: skip
    if not pairs:
        raise AdapterError(f"direction {k}: no train prompt has two replies to rank")
    return encode_pairs(host, pairs, config.dpo.max_reply_tokens)


def _activate_new_adapter(
    host: ModelHost, peft_model: PeftModel | None, name: str, spec: LoraConfig
) -> PeftModel:
    """Add adapter ``name`` and make it the trained one; the first one wraps ``host.model``
    (returned: the peft model every later direction is added to)."""
    from peft import get_peft_model

    if peft_model is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(host.model, spec, adapter_name=name)
    else:
        peft_model.add_adapter(name, spec)
    peft_model.set_adapter(name)
    return peft_model


def _save_adapter(peft_model: PeftModel, name: str, spec: LoraConfig, out: Path) -> str:
    """Write adapter ``name`` as a PEFT folder under ``out``; returns its sha256."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model, adapter_name=name)
    spec.base_model_name_or_path = None  # peft fills in a local cache path
    return save_peft_folder(out / name, spec, state, dtype=torch.float16)


def _direction_stats(
    config: BuildConfig, basis: RewardBasis, rewards: np.ndarray, k: int, seconds: float
) -> dict:
    """What a direction's build records beside the DPO statistics: the settings it was
    trained with, so a retrained direction says how it differs."""
    return dict(wall_seconds=round(seconds, 1), reward_std=float(rewards[:, k].std()),
                axis=basis.axes[k].name, dpo=config.dpo.to_dict(),
                pairs_per_prompt=config.pairs_per_prompt, contrast_pairs=config.contrast_pairs,
                pairing=config.pairing, **config.replies_source())  # fmt: skip


def build_basis_adapters(
    host: ModelHost,
    basis: RewardBasis,
    world: FeaturizedPool,
    out: Path,
    config: BuildConfig | None = None,
    progress: bool = True,
    retrain: bool = False,
    featurizer: Featurizer | None = None,
) -> AdapterManifest:
    """Train (or resume) every direction's adapter into ``out``; returns the manifest.

    ``host`` is trained in place (load it unshared). Finished directions are skipped, and an
    interrupted one resumes from its last checkpoint under ``out/.partial``. ``retrain``
    trains ``config.directions`` again even if finished (the others are kept); each
    direction's stats record the DPO settings it was trained with. ``config.samples_per_prompt``
    ranks the base model's own samples (resumable, kept in ``out``) instead of ``world``'s
    replies; it needs ``featurizer`` (``basis``'s) to score them.
    """
    config = config or BuildConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = model_fingerprint(host.model)
    manifest = _open_manifest(out, host, fingerprint, basis, world, config)
    todo = _directions_to_train(manifest, basis, config, retrain, out)
    peft_model = None
    with _progress() as bar:
        bar.disable = not progress
        if todo and config.samples_per_prompt:
            world = _sampled_world(host, basis, world, featurizer, config, out, bar)
        rewards = direction_rewards(world, basis)
        for k in todo:
            name = f"direction_{k}"
            encoded = _encoded_direction_pairs(host, world, rewards, k, config)
            torch.manual_seed(config.dpo.seed + k)  # the same init when a build resumes
            spec = lora_config(config.lora)
            peft_model = _activate_new_adapter(host, peft_model, name, spec)
            start = time.perf_counter()
            stats = train_dpo(
                peft_model, host, encoded, config.dpo, out / ".partial" / name, bar,
                f"direction {k} ({basis.axes[k].name})",
                context={"base": fingerprint, "lora": config.lora.to_dict()},
            )  # fmt: skip
            sha = _save_adapter(peft_model, name, spec, out)
            stats.update(_direction_stats(config, basis, rewards, k, time.perf_counter() - start))
            manifest.directions[str(k)] = {"folder": name, "sha256": sha, "stats": stats}
            manifest.save(out)
            shutil.rmtree(out / ".partial" / name, ignore_errors=True)
            peft_model.delete_adapter(name)
    shutil.rmtree(out / ".partial", ignore_errors=True)
    return manifest
