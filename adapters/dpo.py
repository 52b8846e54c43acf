"""DPO on LoRA adapters, shared by the basis-adapter build and the per-user fine-tune.

The reference policy is the adapter-disabled base model, so a trained adapter's implicit
reward ``β (log π_adapter − log π_base)`` is exactly the per-token reward that decoding-time
guidance extrapolates (design §4). GenARM's reference-free ARM loss was not used: its
adapter would be a reward model, not a policy, and strength 1 must be a fluent policy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from persona_sdk.adapters.config import DPOConfig
from persona_sdk.config import DEFAULT_SYSTEM_PROMPT
from persona_sdk.decoding.models import ModelHost


@dataclass(frozen=True)
class PreferencePair:
    """One prompt with a preferred and a dispreferred reply."""

    prompt: str
    chosen: str
    rejected: str


Encoded = tuple[list[int], list[int], list[int]]  # prompt ids, chosen ids, rejected ids


def prompt_ids(
    host: ModelHost, prompt: str, system_prompt: str = DEFAULT_SYSTEM_PROMPT
) -> list[int]:
    """A single-turn request under the chat template: the context adapters are trained,
    sampled and evaluated in."""
    return host.chat_ids([{"role": "system", "content": system_prompt},
                          {"role": "user", "content": prompt}])  # fmt: skip


def encode_pairs(
    host: ModelHost,
    pairs: Sequence[PreferencePair],
    max_reply_tokens: int,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
) -> list[Encoded]:
    """Token ids under the chat template; each reply ends with the end-of-turn token so the
    adapter also learns where replies stop (length is a taste too)."""
    tokenizer = host.tokenizer
    end = host.stop_token_ids[:1] or [tokenizer.eos_token_id]
    encoded = []
    for pair in pairs:
        prompt = prompt_ids(host, pair.prompt, system_prompt)
        replies = [
            tokenizer(text, add_special_tokens=False)["input_ids"][:max_reply_tokens] + end
            for text in (pair.chosen, pair.rejected)
        ]
        encoded.append((prompt, *replies))
    return encoded


def sequence_logprobs(
    model: torch.nn.Module, prompts: Sequence[list[int]], replies: Sequence[list[int]], pad: int
) -> torch.Tensor:
    """``log π(reply | prompt)`` summed over reply tokens, one value per row."""
    rows = [p + r for p, r in zip(prompts, replies)]
    width = max(len(r) for r in rows)
    device = next(model.parameters()).device
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.zeros_like(ids, dtype=torch.bool)
    for i, (row, prompt) in enumerate(zip(rows, prompts)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        targets[i, len(prompt) : len(row)] = True
    ids, mask, targets = ids.to(device), mask.to(device), targets.to(device)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    token_logp = torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None]).squeeze(-1)
    return (token_logp * targets[:, 1:]).sum(-1)


def dpo_loss(
    policy: torch.Tensor, reference: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``policy``/``reference``: (2, n) log-probs of (chosen, rejected). Returns the mean
    loss and each pair's implicit reward margin."""
    margin = beta * ((policy[0] - reference[0]) - (policy[1] - reference[1]))
    return -F.logsigmoid(margin).mean(), margin.detach()


def _schedule(n_pairs: int, config: DPOConfig) -> np.ndarray:
    """Pair indices for every step, fixed by the seed so a resumed run sees the same batches."""
    rng = np.random.default_rng(config.seed)
    need = config.steps * config.batch_pairs
    order = np.concatenate([rng.permutation(n_pairs) for _ in range(need // n_pairs + 1)])
    return order[:need].reshape(config.steps, config.batch_pairs)


def run_fingerprint(
    encoded: Sequence[Encoded], config: DPOConfig, params: dict, context: dict | None = None
) -> str:
    """What a checkpoint was trained on: the pairs, every setting but the step counts, the
    adapter's parameter shapes and ``context`` (base model, LoRA spec), so a run resumes only
    its own checkpoint (``steps`` may grow: the schedule's prefix is fixed)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("steps", "checkpoint_every")}
    shapes = {name: list(p.shape) for name, p in params.items()}
    key = json.dumps([settings, shapes, context or {}], sort_keys=True, default=str)
    digest = hashlib.blake2b(key.encode(), digest_size=16)
    digest.update(json.dumps(list(encoded)).encode())
    return digest.hexdigest()


def _save_checkpoint(path: Path, params: dict, optimizer, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save({k: v.detach().cpu() for k, v in params.items()}, tmp / "adapter.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def _fresh_state(fingerprint: str) -> dict:
    return {"step": 0, "losses": [], "margins": [], "accuracies": [], "seconds": 0.0,
            "fingerprint": fingerprint}  # fmt: skip


def _resume(checkpoint: Path, fingerprint: str, steps: int, params: dict, optimizer) -> dict:
    """The checkpoint's state after loading its weights and optimizer, or a fresh state when
    it belongs to another run, is past ``steps`` or cannot be read (training starts over)."""
    fresh = _fresh_state(fingerprint)
    try:
        state = json.loads((checkpoint / "state.json").read_text())
        if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
            return fresh
        if not 0 <= state["step"] <= steps:  # past this run's end: not an extension
            return fresh
        saved = torch.load(checkpoint / "adapter.pt")
        optimizer_state = torch.load(checkpoint / "optimizer.pt")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError):
        return fresh
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)
    optimizer.load_state_dict(optimizer_state)
    return state


def _trainable_params(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable adapter parameters")
    return params


def _batch_loss(
    model: torch.nn.Module, batch: Sequence[Encoded], pad: int, config: DPOConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The DPO loss of one batch against the adapter-disabled model (plus the optional SFT
    term on chosen replies) and each pair's implicit reward margin."""
    prompts = [b[0] for b in batch] * 2
    replies = [b[1] for b in batch] + [b[2] for b in batch]
    with torch.no_grad(), model.disable_adapter():
        reference = sequence_logprobs(model, prompts, replies, pad).view(2, -1)
    policy = sequence_logprobs(model, prompts, replies, pad).view(2, -1)
    loss, margin = dpo_loss(policy, reference, config.beta)
    if config.sft_weight > 0:
        chosen_tokens = torch.tensor([len(b[1]) for b in batch], device=policy.device)
        loss = loss - config.sft_weight * (policy[0] / chosen_tokens).mean()
    return loss, margin


def _apply_gradients(
    loss: torch.Tensor, params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer
) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
    optimizer.step()


def _record_step(
    state: dict, steps_done: int, loss: torch.Tensor, margin: torch.Tensor, started: float
) -> None:
    state["step"] = steps_done
    state["losses"].append(round(loss.item(), 5))
    state["margins"].append(round(float(margin.mean()), 5))
    state["accuracies"].append(round(float((margin > 0).float().mean()), 4))
    state["seconds"] += time.perf_counter() - started


def _checkpoint_due(state: dict, config: DPOConfig) -> bool:
    return state["step"] % config.checkpoint_every == 0 or state["step"] == config.steps


def _tail_mean(values: list[float]) -> float | None:
    """The mean of the last quarter of a run's per-step values (``None`` before any step)."""
    if not values:
        return None
    return float(np.mean(values[-max(1, len(values) // 4) :]))


def _run_stats(state: dict, n_pairs: int) -> dict:
    return {
        "pairs": n_pairs,
        "steps": state["step"],
        "seconds": round(state["seconds"], 1),
        "first_loss": state["losses"][0] if state["losses"] else None,
        "final_loss": _tail_mean(state["losses"]),
        "final_reward_accuracy": _tail_mean(state["accuracies"]),
        "final_margin": _tail_mean(state["margins"]),
    }


def train_dpo(
    model,
    host: ModelHost,
    encoded: Sequence[Encoded],
    config: DPOConfig,
    checkpoint: Path | None = None,
    progress=None,
    description: str = "DPO",
    context: dict | None = None,
) -> dict:
    """Train the active adapter of peft ``model`` on ``encoded`` pairs; returns statistics.

    ``checkpoint`` (a folder) makes the run resumable: it is written every
    ``config.checkpoint_every`` steps and read back on start, unless it was trained on other
    pairs, settings, adapter shapes or ``context`` (a changed command), or is past
    ``config.steps``, in which case training starts over.
    """
    params = _trainable_params(model)
    optimizer = torch.optim.AdamW(
        params.values(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    fingerprint = run_fingerprint(encoded, config, params, context)
    if checkpoint is None:
        state = _fresh_state(fingerprint)
    else:
        state = _resume(checkpoint, fingerprint, config.steps, params, optimizer)
    schedule = _schedule(len(encoded), config)
    pad = host.tokenizer.pad_token_id
    task = None
    if progress is not None:
        task = progress.add_task(description, total=config.steps, completed=state["step"])
    for step in range(state["step"], config.steps):
        start = time.perf_counter()
        loss, margin = _batch_loss(model, [encoded[i] for i in schedule[step]], pad, config)
        _apply_gradients(loss, params, optimizer)
        _record_step(state, step + 1, loss, margin, start)
        if checkpoint is not None and _checkpoint_due(state, config):
            _save_checkpoint(checkpoint, params, optimizer, state)
        if task is not None:
            progress.update(task, advance=1, description=f"{description} loss {loss.item():.3f}")
    return _run_stats(state, len(encoded))
