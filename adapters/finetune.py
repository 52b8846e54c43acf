"""``persona adapters finetune``: DPO on one user's own pairs, starting from their generated
adapter, against the plain base model as reference (the same loss as the basis build)."""

from __future__ import annotations

import warnings

from persona_sdk.adapters.config import DPOConfig
from persona_sdk.adapters.dpo import PreferencePair, encode_pairs, train_dpo
from persona_sdk.adapters.manager import UserAdapters
from persona_sdk.errors import NotEnoughDataError

DEFAULT_MIN_PAIRS = 50


def finetune_user(
    manager: UserAdapters,
    user_id: str,
    config: DPOConfig | None = None,
    min_pairs: int = DEFAULT_MIN_PAIRS,
    progress: bool = True,
) -> dict:
    """Fine-tune ``user_id``'s adapter on their pairs (edits count as pairs); the result is
        served from the next request on. It trains the shared model's weights in place, so do
    not serve from this process meanwhile (``persona adapters finetune --background`` trains
    in a process of its own)."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from rich.progress import Progress

    config = config or DPOConfig(steps=30, learning_rate=5e-4)
    manager.store.require_user(user_id)
    memories = manager.store.memories(user_id, kind="pair")
    if len(memories) < min_pairs:
        raise NotEnoughDataError(
            f"user {user_id!r} has {len(memories)} pairs; a fine-tune needs at least "
            f"{min_pairs} (set --min-pairs to change this)"
        )
    generated = manager.resolve(user_id)
    pairs = [PreferencePair(m.prompt, m.chosen, m.rejected) for m in memories]
    host = manager.host
    encoded = encode_pairs(host, pairs, config.max_reply_tokens, manager.system_prompt)
    server = manager.server
    with server.lock, server.detached(), Progress(disable=not progress) as bar:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", (FutureWarning, UserWarning))
            model = get_peft_model(host.model, generated.config, adapter_name="finetune")
        try:
            set_peft_model_state_dict(model, generated.state, adapter_name="finetune")
            stats = train_dpo(model, host, encoded, config, None, bar, f"fine-tuning {user_id}")
            state = get_peft_model_state_dict(model, adapter_name="finetune")
            state = {k: v.detach().clone() for k, v in state.items()}
        finally:
            model.unload()  # the shared model gets its plain layers back
            host.model.eval()
    folder = manager.save_finetune(user_id, state, generated.rank, len(pairs), stats)
    return {"user_id": user_id, "path": str(folder), "pairs": len(pairs), **stats}
