"""``persona show``: the checkable profile first, basis axes only under ``--axes``."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.helpers import Cli

RAIN = "Hello! 😀 Rain is water that falls from clouds when droplets get heavy!!!"


@pytest.fixture(scope="module")
def alice_template(tmp_path_factory, tiny_model_dir):
    """The issue's alice, built once: a rule, a pair and an edit."""
    cli = Cli(tmp_path_factory.mktemp("alice") / "data", tiny_model_dir)
    cli.ok("add-rule", "alice", "Answer in one sentence.")
    cli.ok(
        "add-pair", "alice", "Say hi", "--chosen", "Hi.", "--rejected", "Hello there, friend!!! 😀"
    )
    cli.ok("add-edit", "alice", "What is rain?", "--response", RAIN,
           "--edited", "Rain is water falling from clouds.")  # fmt: skip
    return cli


@pytest.fixture
def alice(alice_template, tmp_path, tiny_model_dir) -> Cli:
    cli = Cli(tmp_path / "data", tiny_model_dir)
    shutil.copytree(alice_template.data, cli.data)
    return cli


def _row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if re.search(rf"│ {label}\s+│", line))


def test_show_prints_the_profile_first_and_no_axis_weight(alice):
    text = alice.ok("show", "alice").stdout
    assert text.index("Answer in one sentence.") < text.index("revealed by 2 pairs and edits")
    assert text.index("revealed by") < text.index("probed on minimal pairs")
    assert text.index("probed on minimal pairs") < re.search(r"(?m)^pairs and edits", text).start()
    assert "2 of 2" in _row(text, "shorter") and "2 of 2" in _row(text, "no emoji")
    assert "1 of 1" in _row(text, "no greeting")
    shorter = _row(text, "shorter")
    p = float(shorter.split("│")[5])
    assert p > 0.5 or ("contradicted" in shorter and "low confidence" in text)
    assert "reward weights" not in text and "±" not in text and "content " not in text


def test_axes_are_shown_only_when_asked_and_unnamed_ones_as_other(alice):
    text = alice.ok("show", "alice", "--axes").stdout
    assert "reward weights of alice (2 pairs)" in text and "±" in text
    assert "content " not in text  # unnamed axes read "other (axis k)"


def test_show_json_is_the_profile(alice):
    shown = alice.json("show", "alice")
    assert "reward" not in shown and shown["counts"] == {"rule": 5, "pair": 2, "edit": 1}
    profile = shown["profile"]
    revealed = {r["label"]: r for r in profile["revealed"]}
    assert revealed["shorter"]["counts"] == "2 of 2" and revealed["shorter"]["edits"] == 1
    assert {"no emoji", "no greeting", "no exclamations"} <= set(revealed)
    assert len(profile["probed"]) == 16 and profile["personalized"]
    assert revealed["shorter"]["flagged"] == ("shorter" in profile["contradictions"])
    assert "weights" not in str(profile)
    assert "reward" in alice.json("show", "alice", "--axes")


def test_a_user_with_rules_only_gets_the_population_probes(alice):
    alice.ok("add-rule", "bob", "Be brief.")
    text = alice.ok("show", "bob").stdout
    assert "revealed by" not in text and "(population default)" in text
    assert alice.json("show", "bob")["profile"]["revealed"] == []
