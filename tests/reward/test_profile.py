"""The checkable profile (issue 23): revealed contrasts, probes, contradictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from persona_sdk.memory.store import Memory
from persona_sdk.reward.posterior import Posterior
from persona_sdk.reward.profile import (
    MEASURES,
    MIN_DELTA,
    WORDS,
    Probe,
    Signal,
    build_profile,
    load_probes,
    measure_matrix,
    probe_differences,
    revealed_preferences,
    sign_test,
    signals_of,
)

SAY_HI = ("Say hi", "Hi.", "Hello there, friend!!! 😀")
RAIN = (
    "What is rain?",
    "Rain is water falling from clouds.",
    "Hello! 😀 Rain is water that falls from clouds when droplets get heavy!!!",
)
ALICE = [Signal(*SAY_HI), Signal(*RAIN, kind="edit")]


def _memory(**values) -> Memory:
    fields = dict.fromkeys(Memory.__dataclass_fields__)
    fields.update(user_id="alice", source="stated", confidence=1.0, support=1)
    fields.update(valid_from="", created_at="")
    return Memory(**{**fields, **values})


def test_sign_test():
    assert sign_test(3, 3) == 0.25 and sign_test(0, 3) == 0.25
    assert sign_test(2, 2) == 0.5 and sign_test(0, 0) == 1.0
    assert sign_test(5, 10) == 1.0
    assert sign_test(10, 10) == pytest.approx(2 / 1024)


def test_every_measure_has_words_and_a_threshold():
    assert set(WORDS) == set(MEASURES) == set(MIN_DELTA)
    assert measure_matrix(["p"], ["Hello! 😀"]).shape == (1, len(MEASURES))


def test_alice_reveals_shorter_no_emoji_and_no_greeting():
    revealed = {r.label: r for r in revealed_preferences(ALICE)}
    assert revealed["shorter"].counts == "2 of 2" and revealed["shorter"].edits == 1
    assert revealed["no emoji"].counts == "2 of 2" and revealed["no emoji"].unanimous
    assert revealed["no exclamations"].counts == "2 of 2"
    assert revealed["no greeting"].counts == "1 of 1"  # "Hi." is a greeting too
    assert revealed["shorter"].p_value == 0.5 and revealed["shorter"].confidence == 0.5
    assert not {"longer", "emoji", "greeting"} & set(revealed)


def test_revealed_counts_split_and_small_differences():
    longer = Signal("q", "A long answer with many more words in it than the other.", "Short.")
    shorter = Signal("q", "Short.", "A long answer with many more words in it than the other.")
    same = Signal("q", "One two three four five.", "One two three four six.")
    (length, *_) = revealed_preferences([longer, shorter, same])
    assert length.measure == "length" and length.signals == 2 and length.direction == 0
    assert length.label == "length: split" and length.p_value == 1.0 and not length.unanimous
    assert revealed_preferences([same]) == [] and revealed_preferences([]) == []


def test_an_edit_and_its_pair_count_once():
    edit = _memory(id=3, kind="edit", prompt=RAIN[0], chosen=RAIN[1], rejected=RAIN[2])
    pair = _memory(id=4, kind="pair", source="inferred", origin_id=3, prompt=RAIN[0],
                   chosen=RAIN[1], rejected=RAIN[2])  # fmt: skip
    stated = _memory(id=2, kind="pair", prompt=SAY_HI[0], chosen=SAY_HI[1], rejected=SAY_HI[2])
    rule = _memory(id=1, kind="rule", text="Answer in one sentence.")
    signals = signals_of([rule, stated, edit, pair])
    assert [s.kind for s in signals] == ["pair", "edit"]
    assert signals_of([rule, edit]) == [Signal(*RAIN, kind="edit")]  # its pair was deleted


def _one_axis_profile(weight: float):
    """Alice's signals, and probes whose projection on a single axis is +1: with
    ``weight > 0`` the longer reply and the one with emoji win."""
    probes = [Probe("length", "p", "long", "short")] * 3 + [Probe("emoji", "p", "🙂", "")]
    g = np.ones((4, 1))
    posterior = Posterior(np.array([weight]), np.eye(1) * 0.01, n_pairs=2)
    return build_profile("alice", ALICE, posterior, g, probes, [{"text": "Be brief."}])


def test_a_unanimous_contrast_the_model_goes_against_is_flagged():
    profile = _one_axis_profile(5.0)  # the model prefers longer replies, and emoji
    assert profile.contradictions == ["shorter", "no emoji"]
    length = profile.probed_for("length")
    assert length.probes == 3 and length.p_more > 0.99 and length.p_of(-1) < 0.01
    shown = profile.to_dict()
    json.dumps(shown)
    rows = {r["label"]: r for r in shown["revealed"]}
    assert rows["shorter"]["flagged"] and rows["shorter"]["probed"] < 0.01
    assert not rows["no greeting"]["flagged"] and rows["no greeting"]["probed"] is None
    assert shown["rules"] == [{"text": "Be brief."}] and shown["signals"] == 2
    assert "weights" not in json.dumps(shown)


def test_agreement_is_not_flagged_and_one_signal_never_is():
    profile = _one_axis_profile(-5.0)
    assert profile.contradictions == []
    assert profile.probed_for("length").p_of(-1) > 0.99
    alone = build_profile(
        "a", ALICE[:1], Posterior(np.array([5.0]), np.eye(1), 1),
        np.array([[1.0]]), [Probe("length", "p", "long", "short")],
    )  # fmt: skip
    assert alone.contradictions == []  # "shorter: 1 of 1" is too little to contradict


def test_shipped_probes_are_minimal_pairs_on_their_measure():
    probes = load_probes()
    for measure in MEASURES:
        mine = [p for p in probes if p.measure == measure]
        assert len(mine) >= 4, measure
        j = MEASURES.index(measure)
        for probe in mine:
            rows = measure_matrix([probe.prompt] * 2, [probe.more, probe.less])
            assert rows[0, j] - rows[1, j] >= MIN_DELTA[measure], probe


def test_shipped_probes_are_what_the_builder_builds():
    from persona_sdk.simulation.probe_builder import build_probes

    assert tuple(build_probes()) == load_probes()


class _CountingFeaturizer:
    identity, dim = "counting", 3

    def __init__(self):
        self.calls = 0

    def features(self, prompts, replies):
        self.calls += 1
        return np.array([[len(r), len(p), 1.0] for p, r in zip(prompts, replies)], np.float32)


def test_probes_are_featurized_in_one_call():
    featurizer = _CountingFeaturizer()
    probes = load_probes()
    diffs = probe_differences(featurizer, probes)
    assert featurizer.calls == 1 and diffs.shape == (len(probes), 3)
    assert diffs[0, 0] == len(probes[0].more) - len(probes[0].less) and not diffs[:, 1:].any()


def _alice(persona):
    alice = persona.user("alice")
    assert alice.profile().revealed == [] and not alice.profile().personalized
    alice.add_rule("Answer in one sentence.")
    alice.add_pair(*SAY_HI)
    alice.add_edit(RAIN[0], response=RAIN[2], edited=RAIN[1])
    profile = alice.profile()
    revealed = {r.label: r.counts for r in profile.revealed}
    assert revealed["shorter"] == "2 of 2" and revealed["no emoji"] == "2 of 2"
    assert revealed["no greeting"] == "1 of 1"
    assert profile.probed_for("length").p_of(-1) > 0.5 or "shorter" in profile.contradictions
    assert "Answer in one sentence." in [r["text"] for r in profile.rules]
    assert persona.rewards.contradiction_count("alice") == len(profile.contradictions)
    return alice, profile


def test_alice_through_the_api(persona):
    alice, profile = _alice(persona)
    assert alice.profile() is profile  # cached until her memories change
    alice.add_pair("Say bye", "Bye.", "Goodbye, my dear friend!!! 😀👋")
    assert alice.profile().n_signals == 3
    alice.forget()
    assert alice.profile().revealed == [] and alice.profile().rules == []


@pytest.mark.integration
def test_alice_on_the_real_embedder_and_shipped_basis(tmp_path, tiny_host, real_embedder):
    from persona_sdk import Persona

    with Persona.open(tmp_path / "data", model=tiny_host, embedder=real_embedder) as persona:
        _, profile = _alice(persona)
        assert persona.rewards.basis.rank == 8 and len(profile.probed) == len(MEASURES)
        featurizer = persona.rewards.featurizer
        assert featurizer.cache.misses < 20  # the probes' vectors ship with them
