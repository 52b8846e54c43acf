"""The reward-hacking guards of ``persona eval adapters``: on-topic similarity, repeated
trigrams and length, base vs adapter."""

from __future__ import annotations

import numpy as np
import pytest

from persona_sdk.evals.adapters import quality_fields, repeated_trigram_share, reply_quality


def test_repeated_trigram_share_spots_loops():
    assert repeated_trigram_share("the cat sat on the mat") == 0
    assert repeated_trigram_share("I can help. " * 4) == pytest.approx(1 - 3 / 10)
    assert repeated_trigram_share("too short") == 0


def test_reply_quality_pairs_each_reply_with_its_own_prompt():
    topics = {"cats": [1.0, 0.0], "taxes": [0.0, 1.0]}

    def encode(texts):  # a unit vector per topic word
        return np.array([next(v for w, v in topics.items() if w in t) if t else [0.6, 0.8]
                         for t in texts])  # fmt: skip

    prompts = ["about cats", "about taxes", "about cats"]
    quality = reply_quality(encode, prompts, ["cats purr", "cats again", ""])
    assert quality["on_topic"].tolist() == [1.0, 0.0, 0.0]  # off topic, and empty, score 0
    assert quality["words"].tolist() == [2, 2, 0]
    fields = quality_fields(quality, reply_quality(encode, prompts, ["cats", "taxes", "cats"]))
    assert fields["on_topic_base"] == pytest.approx(1 / 3) and fields["on_topic_adapter"] == 1.0
