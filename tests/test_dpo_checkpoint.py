"""DPO checkpoints on the tiny model: a killed run resumes its own checkpoint (and may be
extended), while a checkpoint trained on other pairs or settings is not mixed in."""

from __future__ import annotations

import json

import torch
from conftest import PAIRS

from persona_sdk.adapters.config import DPOConfig, LoraSpec
from persona_sdk.adapters.dpo import PreferencePair, encode_pairs, train_dpo
from persona_sdk.adapters.manifest import lora_config
from persona_sdk.models import load_model


def _train(tiny_model_dir, pairs, config, checkpoint):
    from peft import get_peft_model

    host = load_model(str(tiny_model_dir), device="cpu", shared=False)
    torch.manual_seed(0)
    model = get_peft_model(host.model, lora_config(LoraSpec(rank=2, alpha=4.0)))
    stats = train_dpo(model, host, encode_pairs(host, pairs, 16), config, checkpoint)
    return stats, json.loads((checkpoint / "state.json").read_text())


def test_checkpoint_resumes_only_its_own_run(tiny_model_dir, tmp_path):
    pairs = [PreferencePair(p, chosen, rejected) for p, chosen, rejected in PAIRS]
    config = DPOConfig(steps=4, batch_pairs=2, learning_rate=0.05, checkpoint_every=2)
    checkpoint = tmp_path / "partial"
    stats, first = _train(tiny_model_dir, pairs, config, checkpoint)
    assert stats["steps"] == 4 and len(first["losses"]) == 4

    longer = DPOConfig(**{**config.to_dict(), "steps": 6})
    stats, resumed = _train(tiny_model_dir, pairs, longer, checkpoint)
    assert stats["steps"] == 6 and resumed["losses"][:4] == first["losses"]

    swapped = [PreferencePair(p.prompt, p.rejected, p.chosen) for p in pairs]
    stats, fresh = _train(tiny_model_dir, swapped, config, checkpoint)
    assert stats["steps"] == 4 and len(fresh["losses"]) == 4  # not the 6-step run, resumed
    assert fresh["fingerprint"] != resumed["fingerprint"]

    stronger = DPOConfig(**{**config.to_dict(), "beta": 0.5, "steps": 3})
    stats, other = _train(tiny_model_dir, pairs, stronger, checkpoint)
    assert stats["steps"] == 3 and len(other["losses"]) == 3
    assert other["fingerprint"] not in (first["fingerprint"], fresh["fingerprint"])
