"""DPO checkpoints on the tiny model: a killed run resumes its own checkpoint (and may be
extended), while a checkpoint of another run (pairs, settings, adapter shape, context) or a
longer one is not mixed in, and an unreadable one is trained over."""

from __future__ import annotations

import json

import pytest
import torch

from persona_sdk.adapters.config import DPOConfig, LoraSpec
from persona_sdk.adapters.dpo import PreferencePair, encode_pairs, train_dpo
from persona_sdk.adapters.manifest import lora_config
from persona_sdk.decoding.models import load_model
from tests.helpers import PAIRS

pytestmark = pytest.mark.slow  # it trains

MARK = 123.0  # written into a checkpoint's first loss: only a resumed run carries it on


def _train(tiny_model_dir, pairs, config, checkpoint, rank=2, context=None):
    from peft import get_peft_model

    host = load_model(str(tiny_model_dir), device="cpu", shared=False)
    torch.manual_seed(0)
    model = get_peft_model(host.model, lora_config(LoraSpec(rank=rank, alpha=2.0 * rank)))
    encoded = encode_pairs(host, pairs, 16)
    stats = train_dpo(model, host, encoded, config, checkpoint, context=context)
    return stats, json.loads((checkpoint / "state.json").read_text())


def _mark(checkpoint):
    path = checkpoint / "state.json"
    state = json.loads(path.read_text())
    state["losses"][0] = MARK
    path.write_text(json.dumps(state))


def test_checkpoint_resumes_only_its_own_run(tiny_model_dir, tmp_path):
    pairs = [PreferencePair(p, chosen, rejected) for p, chosen, rejected in PAIRS]
    config = DPOConfig(steps=4, batch_pairs=2, learning_rate=0.05, checkpoint_every=2)
    checkpoint = tmp_path / "partial"
    stats, first = _train(tiny_model_dir, pairs, config, checkpoint)
    assert stats["steps"] == 4 and len(first["losses"]) == 4

    _mark(checkpoint)
    longer = DPOConfig(**{**config.to_dict(), "steps": 6})
    stats, resumed = _train(tiny_model_dir, pairs, longer, checkpoint)
    assert stats["steps"] == 6 and resumed["losses"][0] == MARK  # carried on, not redone
    assert resumed["losses"][1:4] == first["losses"][1:4]

    shorter = DPOConfig(**{**config.to_dict(), "steps": 2})  # past its end: start over
    stats, fresh = _train(tiny_model_dir, pairs, shorter, checkpoint)
    assert stats["steps"] == 2 and fresh["losses"][0] != MARK

    swapped = [PreferencePair(p.prompt, p.rejected, p.chosen) for p in pairs]
    stronger = DPOConfig(**{**config.to_dict(), "beta": 0.5})
    for run in (
        dict(pairs=swapped, config=config),
        dict(pairs=pairs, config=stronger),
        dict(pairs=pairs, config=config, rank=4),  # another LoRA shape: no size mismatch
        dict(pairs=pairs, config=config, context={"base": "another model"}),
    ):
        _train(tiny_model_dir, pairs, config, checkpoint)  # a finished 4-step checkpoint
        _mark(checkpoint)
        stats, other = _train(tiny_model_dir, checkpoint=checkpoint, **run)
        assert stats["steps"] == 4 and other["losses"][0] != MARK, run

    (checkpoint / "state.json").write_text("null")  # unreadable: trained over, no crash
    stats, _ = _train(tiny_model_dir, pairs, config, checkpoint)
    assert stats["steps"] == 4
