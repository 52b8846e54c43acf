"""The reward model through the public API: basis files, per-user fits on the fake
embedder's basis, bad input; the shipped basis against the real MiniLM (integration)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from persona_sdk import BasisError, FeaturizerMismatchError, InvalidInputError, Persona
from persona_sdk.errors import PopulationDataError
from persona_sdk.reward.basis import RewardBasis, default_basis_path
from persona_sdk.reward.features import EmbeddingStyleFeaturizer, featurizer_hash
from persona_sdk.reward.population import read_population
from persona_sdk.simulation.users import ATTRIBUTES, make_reward_population
from persona_sdk.text.style import LEXICAL_FEATURES, STYLE_FEATURES

PROMPTS = [
    "How do I keep a sourdough starter alive?",
    "What should I pack for a weekend hiking trip?",
    "How can I get better at public speaking?",
    "Explain how vaccines train the immune system.",
    "How do I ask my landlord to fix the heating?",
    "What is a good way to start running?",
    "How do I choose a laptop for university?",
    "Why do leaves change colour in autumn?",
    "How can I sleep better?",
    "What is compound interest?",
]
LONG = (
    " It is worth taking the time to understand the background first, because the details "
    "matter a great deal in practice and most people skip them. There are several steps to "
    "consider, each with its own trade-offs, and the right choice depends on your situation, "
    "your budget, and how much time you can spend on it every week."
)


def _short_and_long(prompt: str) -> tuple[str, str]:
    topic = prompt.rstrip("?.").split(" ", 3)[-1]
    return f"Keep it simple: {topic}.", f"Here is a detailed answer about {topic}." + LONG


# -- the shipped basis and its file format ---------------------------------------------------


@pytest.mark.integration
def test_shipped_basis_matches_the_default_featurizer_and_names_its_axes(real_embedder):
    featurizer = EmbeddingStyleFeaturizer(real_embedder)
    basis = RewardBasis.load(default_basis_path(), featurizer)
    assert basis.rank == 8 and basis.dim == featurizer.dim
    assert basis.featurizer_hash == featurizer_hash(featurizer)
    assert len(set(basis.axis_names)) == 8 and all(basis.axis_names)
    assert all(axis.top_examples and axis.bottom_examples for axis in basis.axes)
    np.testing.assert_allclose(basis.prior_cov, basis.prior_cov.T)
    assert np.all(np.linalg.eigvalsh(basis.prior_cov) > 0)


def test_at_least_a_third_of_attributes_are_invisible_to_interpretable_features():
    visible = set(STYLE_FEATURES) | {"numbers", "jargon", "echo"}  # the lexical measures
    assert len(LEXICAL_FEATURES) == 3
    hidden = [a.name for a in ATTRIBUTES if a.name not in visible]
    assert len(hidden) >= len(ATTRIBUTES) / 3
    assert {"analogies", "second_person", "caveats", "examples"} <= set(hidden)


def test_basis_roundtrip_and_every_broken_file_is_a_clear_error(tmp_path, embedder, basis):
    featurizer = EmbeddingStyleFeaturizer(embedder)
    saved = basis.save(tmp_path / "copy.npz")
    again = RewardBasis.load(saved, featurizer)
    assert again.basis_id == basis.basis_id and again.axis_names == basis.axis_names

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(BasisError, match="corrupt or truncated"):
        RewardBasis.load(truncated)

    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **{**dict(np.load(saved)), "prior_mean": basis.prior_mean + 1})
    with pytest.raises(BasisError, match="checksum"):
        RewardBasis.load(tampered)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a basis at all")
    with pytest.raises(BasisError):
        RewardBasis.load(garbage)
    with pytest.raises(BasisError, match="no basis file"):
        RewardBasis.load(tmp_path / "missing.npz")


def test_a_basis_refuses_another_featurizer(tmp_path, tiny_host, embedder):
    class OtherFeaturizer:
        identity, dim = "hidden-state:tiny", 64

        def features(self, prompts, replies):
            return np.zeros((len(replies), 64), dtype=np.float32)

    basis = RewardBasis.load(default_basis_path())
    with pytest.raises(FeaturizerMismatchError, match="persona basis fit"):
        basis.check(OtherFeaturizer())
    with Persona.open(tmp_path, model=tiny_host, embedder=embedder,
                      featurizer=OtherFeaturizer()) as p:  # fmt: skip
        with pytest.raises(FeaturizerMismatchError):
            p.user("ann").add_pair("q?", chosen="a", rejected="b")
        assert not p.user("ann").exists  # checked before anything was stored


# -- users ---------------------------------------------------------------------------------


def test_new_user_is_the_population_default_then_learns(persona):
    user = persona.user("dana")
    prior = user.reward_profile()
    assert not prior.personalized and prior.n_pairs == 0
    assert list(user.weights) == persona.rewards.basis.axis_names
    prompt = PROMPTS[0]
    short, long = _short_and_long(prompt)
    user.add_pair(prompt, chosen=short, rejected=long)
    after = user.reward_profile()
    assert after.personalized and after.n_pairs == 1
    assert after.weights != prior.weights
    assert all(s1 <= s0 + 1e-9 for s0, s1 in zip(prior.std, after.std))  # less uncertain


def test_operator_pairs_outside_the_simulator_are_learned(persona):
    """A hand-written user who always prefers the shorter reply."""
    user = persona.user("brief")
    user.add_pairs([(p, *_short_and_long(p)) for p in PROMPTS[:6]])
    for prompt in PROMPTS[6:]:
        short, long = _short_and_long(prompt)
        assert user.prefer(prompt, short, long) > 0.6
        assert user.score(prompt, short) > user.score(prompt, long)
    other = persona.user("verbose")
    other.add_pairs([(p, *reversed(_short_and_long(p))) for p in PROMPTS[:6]])
    for prompt in PROMPTS[6:]:
        assert other.prefer(prompt, *_short_and_long(prompt)) < 0.4


def test_edits_refit_the_weights_and_deletes_undo_them(persona):
    user = persona.user("eve")
    before = user.weights
    prompt = PROMPTS[2]
    short, long = _short_and_long(prompt)
    result = user.add_edit(prompt, response=long, edited=short)
    assert user.reward_profile().n_pairs == 1 and user.weights != before
    user.delete_memory(result.memory.id)  # takes the edit's pair along
    assert user.weights == before and not user.reward_profile().personalized


def test_next_question_is_the_most_uncertain_unanswered_pair(persona):
    user = persona.user("quinn")
    question = user.next_question()
    assert question.prompt and question.a != question.b
    assert 0 <= question.p_a <= 1 and question.information > 0
    user.add_pair(question.prompt, question.a, question.b, source="onboarding")
    following = user.next_question()
    assert {following.a, following.b} != {question.a, question.b}
    replies = ["Short.", "A much longer reply with a lot more words in it.", "Medium reply."]
    own = user.next_question(PROMPTS[0], replies)
    assert own.prompt == PROMPTS[0] and {own.a, own.b} <= set(replies)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda u: u.add_pair("q?", chosen="same", rejected="same"), "same text"),
        (lambda u: u.add_pair("q?", chosen="", rejected="b"), "chosen"),
        (lambda u: u.add_pair("", chosen="a", rejected="b"), "prompt"),
        (lambda u: u.score("q?", "   "), "response"),
        (lambda u: u.prefer("q?", "a", ""), "b"),
        (lambda u: u.next_question("q?", ["only one"]), "two distinct"),
    ],
)
def test_bad_reward_input_is_a_clear_error_and_stores_nothing(persona, call, match):
    user = persona.user("zed")
    with pytest.raises(InvalidInputError, match=match):
        call(user)
    assert not user.exists


def test_forget_removes_pair_features(persona):
    user = persona.user("gone")
    user.add_pairs([(p, *_short_and_long(p)) for p in PROMPTS[:3]])
    count = "SELECT COUNT(*) FROM pair_features WHERE user_id = ?"
    assert persona.store.query(count, ("gone",))[0][0] == 3
    user.forget()
    assert persona.store.query(count, ("gone",))[0][0] == 0
    assert not persona.user("gone").reward_profile().personalized


# -- population files ----------------------------------------------------------------------


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.parametrize(
    "records, match",
    [
        ([{"user_id": "a", "prompt": "p", "chosen": "x"}], "missing field"),
        ([{"prompt": "p", "chosen": "x", "rejected": "y"}], "user_id"),
        (
            [
                {"user_id": "a", "pairs": []},
                {"user_id": "b", "prompt": "p", "chosen": "x", "rejected": "y"},
            ],
            "has no pairs",
        ),
        ([{"user_id": "a", "prompt": "p", "chosen": "x", "rejected": "x"}], "same text"),
        ([{"user_id": "a", "prompt": " ", "chosen": "x", "rejected": "y"}], "prompt"),
        ([{"user_id": "a", "prompt": "p", "chosen": "x", "rejected": "y"}], "at least 2"),
        ([{"user_id": "bad id!", "prompt": "p", "chosen": "x", "rejected": "y"}], "line 1"),
    ],
)
def test_population_file_problems_name_the_line(tmp_path, records, match):
    with pytest.raises(PopulationDataError, match=match):
        read_population(_write(tmp_path / "pop.jsonl", records))


def test_population_file_formats(tmp_path):
    flat = {"user_id": "a", "prompt": "p", "chosen": "x", "rejected": "y"}
    grouped = {"user_id": "b", "pairs": [{"prompt": "p", "chosen": "y", "rejected": "x"}] * 2}
    data = read_population(_write(tmp_path / "pop.jsonl", [flat, grouped, flat]))
    assert data.user_ids == ["a", "b"] and data.users == [0, 1, 1, 0] and len(data) == 4
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(PopulationDataError, match="line 1: not valid JSON"):
        read_population(tmp_path / "bad.jsonl")


def test_simulated_population_is_sparse_and_reproducible():
    users = make_reward_population(20, seed=4)
    again = make_reward_population(20, seed=4)
    assert all(np.array_equal(u.weights, v.weights) for u, v in zip(users, again))
    top_share = [np.sort(np.abs(u.weights))[-5:].sum() / np.abs(u.weights).sum() for u in users]
    assert np.median(top_share) > 0.5  # 5 of 25 attributes carry most of a user's taste


def test_shipped_data_fits_in_the_package_budget():
    data = default_basis_path().parent
    total = sum(p.stat().st_size for p in data.iterdir())
    assert total <= 20 * 1024 * 1024
