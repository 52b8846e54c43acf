"""``persona show`` and ``explain`` say which rules are enforced, with their parameters;
``persona generate --json`` reports each constraint's check."""

from __future__ import annotations

from tests.helpers import Cli


def test_show_explain_and_generate_report_enforced_rules(cli: Cli):
    cli.ok("add-rule", "alice", "Keep every reply under 30 words and sign as Sam.")
    cli.ok("add-rule", "alice", "Be warm.")
    shown = cli.ok("show", "alice").stdout
    assert "max_words(limit=30)" in shown and "sign_off(name='Sam')" in shown
    assert "prompt only" in shown
    explained = cli.json("explain", "alice", "Say hi")
    enforced = explained["enforced"]
    assert [c["kind"] for c in enforced[0]["constraints"]] == ["max_words", "sign_off"]
    assert "max_words(limit=30)" in cli.ok("explain", "alice", "Say hi").stdout
    reply = cli.json("generate", "alice", "Say hi", "--max-new-tokens", "24")
    assert [c["constraint"]["kind"] for c in reply["constraints"]] == ["max_words", "sign_off"]
    assert all(c["passed"] for c in reply["constraints"]), reply["text"]


def test_eval_rules_command_writes_plot_and_json(cli: Cli, tmp_path):
    plot, out = tmp_path / "rules.png", tmp_path / "rules.json"
    result = cli.ok("eval", "rules", "--prompts", "1", "--phrasings", "4", "--max-new-tokens",
                    "16", "--plot", str(plot), "--out", str(out))  # fmt: skip
    assert "compliance by constraint type" in result.stdout
    assert plot.stat().st_size > 0 and out.stat().st_size > 0
    assert cli("eval", "rules", "--prompts", "99").exit_code == 2
