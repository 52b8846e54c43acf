"""``persona onboard``, ``persona basis`` and ``persona eval reward`` end to end."""

from __future__ import annotations

import json

import pytest

from persona_sdk.reward.basis import RewardBasis
from tests.helpers import assert_error, snapshot


def test_onboard_from_an_answers_file_learns_and_shows_bars(cli, tmp_path):
    answers = tmp_path / "answers.txt"
    answers.write_text("A\nb\ns\nA\n")
    result = cli.ok("onboard", "olga", "--questions", "4", "--answers", str(answers))
    assert "question 1" in result.stdout and "reward weights of olga" in result.stdout
    assert "│" in result.stdout  # the bars
    shown = cli.json("show", "olga", "--axes")
    assert shown["counts"]["pair"] == 3  # the skip stored nothing
    assert shown["reward"]["personalized"] and shown["reward"]["n_pairs"] == 3
    assert all(m["source"] == "onboarding" for m in shown["memories"])
    text = cli.ok("show", "olga", "--axes").stdout
    assert "reward weights of olga (3 pairs)" in text


def test_onboard_json_and_quit(cli, tmp_path):
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(["b", "q", "a"]))
    out = cli.json("onboard", "pat", "--questions", "5", "--answers", str(answers))
    assert [q["answer"] for q in out["questions"]] == ["b"]
    question = out["questions"][0]
    assert question["prompt"] and question["a"] != question["b"]
    assert out["profile"]["n_pairs"] == 1


def test_onboard_bad_answers_are_exit_2(cli, tmp_path):
    answers = tmp_path / "answers.txt"
    answers.write_text("A\nmaybe\n")
    assert_error(cli("onboard", "pat", "--answers", str(answers)), "maybe")
    assert_error(cli("onboard", "pat", "--answers", str(tmp_path / "nope")), "no answers file")
    assert_error(cli("onboard", "pat", "--questions", "0"), "questions")


def _population(path, users=6, per_user=12):
    """Operator data written by hand: half the users like short replies, half long ones."""
    lines = []
    for u in range(users):
        for i in range(per_user):
            prompt = f"Question number {i} about topic {u}?"
            short = f"Short answer {i}."
            long = f"A long and detailed answer number {i}, with context, reasons and caveats."
            chosen, rejected = (short, long) if u % 2 else (long, short)
            lines.append({"user_id": f"op{u}", "prompt": prompt, "chosen": chosen,
                          "rejected": rejected})  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines))
    return path


def test_basis_fit_writes_a_basis_the_data_dir_then_uses(cli, tmp_path):
    data = _population(tmp_path / "pop.jsonl")
    out = cli.json("basis", "fit", str(data), "--rank", "2", "--steps", "50")
    assert out["users"] == 6 and out["pairs"] == 72 and out["rank"] == 2
    assert out["train_accuracy"] > 0.9 and len(out["axes"]) == 2
    saved = RewardBasis.load(out["path"])
    assert saved.rank == 2 and (cli.data / "basis.npz").exists()
    shown = cli.json("basis", "show")
    assert shown["basis_id"] == out["basis_id"] and len(shown["axes"]) == 2
    assert len(shown["prior_mean"]) == 2
    text = cli.ok("basis", "show").stdout
    assert "2 axes" in text and "1." in text


def test_basis_fit_bad_files_are_exit_2_and_change_nothing(cli, tmp_path):
    cli.ok("add-rule", "keep", "Be brief.")
    before = snapshot(cli.data)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"user_id": "a", "prompt": "p", "chosen": "x"}) + "\n")
    assert_error(cli("basis", "fit", str(bad)), "line 1", "missing field")
    assert_error(cli("basis", "fit", str(tmp_path / "missing.jsonl")), "no population file")
    assert_error(cli("basis", "fit", str(bad), "--rank", "0"), "rank")
    assert snapshot(cli.data) == before


def test_a_corrupt_data_dir_basis_is_exit_2_and_keeps_the_pairs(cli, tmp_path):
    cli.ok("add-pair", "rita", "q?", "--chosen", "short", "--rejected", "a much longer reply")
    (cli.data / "basis.npz").write_bytes(b"corrupt")
    assert_error(cli("show", "rita"), "corrupt or truncated")
    assert_error(cli("add-pair", "rita", "q2?", "--chosen", "a", "--rejected", "b"), "basis")
    (cli.data / "basis.npz").unlink()
    assert cli.json("show", "rita")["counts"]["pair"] == 1  # nothing was lost or added


@pytest.mark.slow
def test_eval_reward_small_run_with_plot(cli, tmp_path):
    plot = tmp_path / "reward.png"
    out = cli.json("eval", "reward", "--users", "3", "--seeds", "1", "--seen-users", "12",
                   "--shots", "1,4", "--plot", str(plot))  # fmt: skip
    assert out["shots"] == [1, 4] and plot.stat().st_size > 10_000
    for method in ("sdk", "sdk_active", "shared_a", "shrunk_b", "pca_c", "oracle"):
        assert len(out["accuracy"][method]) == 2
        assert all(0.0 <= a <= 1.0 for a in out["accuracy"][method])
    assert 0.85 <= out["accuracy"]["oracle"][0] <= 0.99
    assert_error(cli("eval", "reward", "--shots", "0,2"), "--shots")
    assert_error(cli("eval", "reward", "--plot", str(tmp_path / "x.jpg")), ".png")
