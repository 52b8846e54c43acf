"""On-policy basis-adapter builds on the tiny model: the base model's own samples, cached
in the build folder and reused, are what a direction's pairs are ranked from."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from persona_sdk import AdapterError, InvalidInputError
from persona_sdk.adapters.build import build_basis_adapters, is_held_out
from persona_sdk.adapters.config import BuildConfig, DPOConfig, LoraSpec
from persona_sdk.adapters.samples import SAMPLES_FILE
from persona_sdk.decoding.models import load_model
from persona_sdk.reward.features import EmbeddingStyleFeaturizer


@pytest.mark.slow
def test_on_policy_build_samples_once_and_records_it(
    built, tiny_model_dir, world, basis, embedder, tmp_path
):
    out = tmp_path / "adapters"
    shutil.copytree(built[0], out)
    host = load_model(str(tiny_model_dir), device="cpu", shared=False)
    dpo = DPOConfig(steps=2, batch_pairs=2, learning_rate=0.05)
    config = BuildConfig(
        lora=LoraSpec(rank=2, alpha=4.0),
        dpo=dpo,
        directions=(2,),
        samples_per_prompt=3,
        sample_prompts=4,
        sample_max_new_tokens=24,
    )
    with pytest.raises(InvalidInputError, match="featurizer"):
        build_basis_adapters(host, basis, world, out, config, progress=False, retrain=True)
    featurizer = EmbeddingStyleFeaturizer(embedder)
    with pytest.raises(AdapterError, match="two distinct"):  # one-token replies: nothing to rank
        tiny = dataclasses.replace(config, sample_max_new_tokens=1)
        shutil.copytree(built[0], tmp_path / "one-token")
        build_basis_adapters(host, basis, world, tmp_path / "one-token", tiny, progress=False,
                             retrain=True, featurizer=featurizer)  # fmt: skip
    manifest = build_basis_adapters(host, basis, world, out, config, progress=False,
                                    retrain=True, featurizer=featurizer)  # fmt: skip
    rows = [json.loads(line) for line in (out / SAMPLES_FILE).read_text().splitlines()]
    train = [p for p in world.prompts if not is_held_out(p)]
    assert len(rows) == min(4, len(train)) and {r["prompt"] for r in rows} <= set(train)
    assert all(r["settings"]["per_prompt"] == 3 and len(r["replies"]) <= 3 for r in rows)
    stats = manifest.directions["2"]["stats"]
    assert stats["replies"] == "base samples" and stats["samples_per_prompt"] == 3
    assert 0 < stats["pairs"] <= len(rows) * config.pairs_per_prompt  # from the samples
    assert manifest.directions["1"]["stats"].get("replies", "pool") == "pool"
    # a second direction reuses the samples; a prompt whose line a kill cut is sampled again
    lines = (out / SAMPLES_FILE).read_text().splitlines()
    kept = "".join(line + "\n" for line in lines[:-1])
    (out / SAMPLES_FILE).write_text(kept + lines[-1][:40])
    again = dataclasses.replace(config, directions=(5,))
    host = load_model(str(tiny_model_dir), device="cpu", shared=False)  # the last one has LoRA
    build_basis_adapters(host, basis, world, out, again, progress=False, retrain=True,
                         featurizer=featurizer)  # fmt: skip
    text = (out / SAMPLES_FILE).read_text().splitlines()
    assert text[: len(lines) - 1] == lines[:-1] and text[-2] == lines[-1][:40]
    assert json.loads(text[-1])["prompt"] == rows[-1]["prompt"]
