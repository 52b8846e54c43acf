"""The ``persona`` CLI end to end (real data dir, the tiny Llama and the fake embedder).
Expected errors: exit 2, one ``error:`` line, no traceback, the data dir left unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from persona_sdk.cli.main import app
from tests.helpers import RUNNER, Cli, assert_error, snapshot

GLOBAL_RULE = "Answer in one sentence."
CONTEXT_RULE, CONTEXT = "Use a bulleted list.", "tips and advice"
COMMANDS = ["users", "show", "rules", "add-rule", "forget", "generate", "chat", "demo", "explain"]


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory, tiny_model_dir) -> tuple[Path, tuple[int, int]]:
    """Built once through the CLI: alice holds a global rule and a contextual one."""
    cli = Cli(tmp_path_factory.mktemp("seeded") / "data", tiny_model_dir)
    first = cli.json("add-rule", "alice", GLOBAL_RULE)
    second = cli.json("add-rule", "alice", CONTEXT_RULE, "--context", CONTEXT)
    return cli.data, (first["id"], second["id"])


@pytest.fixture
def seeded(cli, seeded_template) -> Cli:
    """A private copy of the seeded data dir; the rule ids are in ``cli.ids``."""
    shutil.copytree(seeded_template[0], cli.data)
    cli.ids = seeded_template[1]
    return cli


def test_help_lists_every_command():
    result = RUNNER.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert command in result.stdout, command


def test_command_summaries_are_one_line_each():
    import typer

    def walk(command):
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    commands = [c for c in walk(typer.main.get_command(app)) if c.help]
    assert len(commands) > len(COMMANDS)  # subcommands of eval, adapters, basis... too
    for command in commands:
        summary = command.short_help
        assert summary and "\n" not in summary and "  " not in summary, command.name
        assert summary == " ".join(command.help.split("\n\n")[0].split())


def test_users_empty(cli):
    assert "no users yet" in cli.ok("users").stdout
    assert cli.json("users") == []


def test_add_rule_text_and_json(cli):
    result = cli.ok("add-rule", "alice", f"  {GLOBAL_RULE}  ")
    assert result.stdout.strip().startswith("added rule ")
    assert result.stdout.strip().endswith(" for alice")
    memory = cli.json("add-rule", "alice", CONTEXT_RULE, "--context", CONTEXT)
    assert memory["user_id"] == "alice" and memory["kind"] == "rule"
    assert memory["text"] == CONTEXT_RULE and memory["context"] == CONTEXT
    assert memory["source"] == "stated" and memory["valid_to"] is None
    assert isinstance(memory["id"], int) and "embedding" not in memory
    rules = cli.json("rules", "alice")
    assert [r["text"] for r in rules] == [GLOBAL_RULE, CONTEXT_RULE]  # stripped, oldest first
    assert rules[0]["context"] is None and rules[1]["id"] == memory["id"]


def test_users_lists_counts(seeded):
    seeded.ok("add-rule", "bob", "Be terse.")
    text = seeded.ok("users").stdout.splitlines()
    assert text == ["alice  rules=2 pairs=0 edits=0", "bob  rules=1 pairs=0 edits=0"]
    assert seeded.json("users") == [
        {"user_id": "alice", "rule": 2, "pair": 0, "edit": 0},
        {"user_id": "bob", "rule": 1, "pair": 0, "edit": 0},
    ]


def test_rules_table_and_json(seeded):
    table = seeded.ok("rules", "alice").stdout
    for expected in ("rules of alice", GLOBAL_RULE, CONTEXT_RULE, "(everywhere)", CONTEXT, "valid"):
        assert expected in table
    rules = seeded.json("rules", "alice")
    assert [r["id"] for r in rules] == list(seeded.ids)
    assert all(r["user_id"] == "alice" and r["valid_to"] is None for r in rules)
    assert seeded.json("rules", "alice", "--all") == rules  # nothing superseded yet


def test_show_table_and_json(seeded):
    text = seeded.ok("show", "alice").stdout
    assert "alice: 2 rules, 0 pairs, 0 edits" in text
    assert GLOBAL_RULE in text and CONTEXT_RULE in text
    shown = seeded.json("show", "alice")
    assert set(shown) == {"user_id", "counts", "profile", "rules", "memories"}  # no weights
    assert shown["user_id"] == "alice" and shown["profile"]["personalized"] is False
    assert shown["counts"] == {"rule": 2, "pair": 0, "edit": 0}
    assert [r["id"] for r in shown["rules"]] == list(seeded.ids)
    assert [r["text"] for r in shown["rules"]] == [GLOBAL_RULE, CONTEXT_RULE]
    assert shown["memories"] == []


def test_delete_memory(seeded):
    global_id, context_id = seeded.ids
    deleted = seeded.ok("delete-memory", "alice", str(global_id)).stdout
    assert f"deleted memory {global_id} of alice" in deleted
    assert [r["id"] for r in seeded.json("rules", "alice", "--all")] == [context_id]
    assert seeded.json("show", "alice")["counts"]["rule"] == 1
    explained = seeded.json("explain", "alice", "Explain black holes.")
    assert global_id not in [r["id"] for r in explained["rules"]]
    deleted = seeded.json("delete-memory", "alice", str(context_id))
    assert deleted == {"user_id": "alice", "deleted": context_id}
    assert seeded.json("rules", "alice") == []
    before = snapshot(seeded.data)
    assert_error(seeded("delete-memory", "alice", str(global_id)), str(global_id))
    assert snapshot(seeded.data) == before


@pytest.mark.parametrize("memory_id", ["999999", "0"])
def test_delete_unknown_memory_fails(seeded, memory_id):
    before = snapshot(seeded.data)
    assert_error(seeded("delete-memory", "alice", memory_id), "no memory")
    assert snapshot(seeded.data) == before


def test_delete_memory_of_another_user_fails(seeded):
    bob_rule = seeded.json("add-rule", "bob", "Be terse.")["id"]
    before = snapshot(seeded.data)
    assert_error(seeded("delete-memory", "alice", str(bob_rule)))
    assert snapshot(seeded.data) == before
    assert [r["id"] for r in seeded.json("rules", "bob")] == [bob_rule]


@pytest.mark.parametrize("how", [["--yes"], ["-y", "--json"], "y\n"])
def test_forget_deletes_the_user(seeded, how):
    seeded.ok("add-rule", "bob", "Be terse.")
    args, answer = (how, None) if isinstance(how, list) else ([], how)
    result = seeded.ok("forget", "alice", *args, input=answer)
    if "--json" in args:
        assert json.loads(result.stdout) == {"user_id": "alice", "forgotten": True}
    else:
        assert "forgot alice" in result.stdout
    assert seeded.json("users") == [{"user_id": "bob", "rule": 1, "pair": 0, "edit": 0}]
    assert_error(seeded("show", "alice"), "unknown user")
    assert all(GLOBAL_RULE.encode() not in p.read_bytes() for p in seeded.data.rglob("*.db"))


@pytest.mark.parametrize("answer", ["n\n", "\n", ""], ids=["no", "default", "eof"])
def test_forget_declined_keeps_everything(seeded, answer):
    before = snapshot(seeded.data)
    result = seeded("forget", "alice", input=answer)
    assert result.exit_code == 1, result.output
    assert "aborted" in result.stderr.lower()  # EOF is click's own "Aborted."
    assert "Traceback" not in result.output
    assert snapshot(seeded.data) == before
    assert [u["user_id"] for u in seeded.json("users")] == ["alice"]


def test_explain(seeded):
    global_id, context_id = seeded.ids
    explained = seeded.json("explain", "alice", "Give me tips and advice to sleep better.")
    assert explained["user_id"] == "alice" and explained["prompt"].startswith("Give me tips")
    by_id = {r["id"]: r for r in explained["rules"]}
    assert by_id[global_id]["text"] == GLOBAL_RULE and by_id[global_id]["context"] is None
    assert isinstance(by_id[global_id]["similarity"], float)
    assert -1.0 <= by_id[global_id]["similarity"] <= 1.0
    assert by_id[context_id]["similarity"] >= 0.25  # contextual rule clears the floor
    sims = [r["similarity"] for r in explained["rules"]]
    assert sims == sorted(sims, reverse=True)
    table = seeded.ok("explain", "alice", "Write a poem.").stdout
    assert "rules for: Write a poem." in table and "applies everywhere" in table


def test_generate_plain_json_and_stream(seeded):
    global_id, _ = seeded.ids
    prompt = ("generate", "alice", "Explain black holes.", "--max-new-tokens", "5")
    plain = seeded.ok(*prompt)
    assert plain.stdout.endswith("\n")
    assert "tokens in" in plain.stderr and "rules used" in plain.stderr
    reply = seeded.json(*prompt)
    assert {"text", "used_rules", "strength", "tokens", "timings"} <= set(reply)
    assert reply["user_id"] == "alice" and reply["personalized"] is True
    assert 0 <= reply["tokens"] <= 5 and reply["finish_reason"] in ("stop", "length")
    assert global_id in [r["id"] for r in reply["used_rules"]]
    assert set(reply["timings"]) >= {"retrieve", "ttft", "generate", "total"}
    assert all(v >= 0 for v in reply["timings"].values())
    assert plain.stdout.strip() == reply["text"]  # greedy: same reply either way
    streamed = seeded.ok(*prompt, "--stream")
    assert streamed.stdout.strip() == reply["text"]
    assert f"{reply['tokens']} tokens in" in streamed.stderr


def test_generate_for_user_without_rules(cli):
    reply = cli.json("generate", "nobody", "Hi there.", "--max-new-tokens", "3")
    assert reply["used_rules"] == [] and reply["personalized"] is False
    assert reply["tokens"] <= 3
    assert cli.json("users") == []  # generating stores nothing


def test_chat(seeded):
    result = seeded.ok("chat", "alice", "--max-new-tokens", "3", input="hello\n/rules\n/exit\n")
    out = result.stdout
    assert "chatting as alice" in out
    assert out.count("you> ") == 3 and out.count("bot> ") == 1
    assert "rules of alice" in out and GLOBAL_RULE in out


def test_chat_ends_on_eof(seeded):
    result = seeded.ok("chat", "alice", "--max-new-tokens", "2", input="hi\n\nagain\n")
    assert result.stdout.count("bot> ") == 2  # the blank line is skipped


def test_demo_json(cli, tiny_model_dir):
    result = cli.ok("demo", "--json", "--max-new-tokens", "4")
    demo = json.loads(result.stdout)
    assert demo["model"] == str(tiny_model_dir)
    assert set(demo["users"]) == {"ana", "ben"} and len(demo["replies"]) == 6
    assert {r["user_id"] for r in demo["replies"]} == {"ana", "ben"}
    assert len({r["prompt"] for r in demo["replies"]}) == 3
    assert all(0 <= r["tokens"] <= 4 and r["used_rules"] for r in demo["replies"])
    assert set(demo["timings"]) == {"embedder_load_s", "model_load_s", "generate_s", "tokens_per_s"}
    assert all(v >= 0 for v in demo["timings"].values())
    assert not cli.data.exists()  # the demo never touches --data


# -- bad input: exit 2, one line, nothing written ------------------------------------------

BAD_IDS = ["../x", "..", ".", "a/b", "", "x" * 129, "bob smith", "ünï", "a\\b", "~root"]
ID_COMMANDS = [
    "add-rule {} Brief.", "show {}", "rules {}", "explain {} hi", "forget {} --yes",
    "delete-memory {} 1", "generate {} hi --max-new-tokens 2", "chat {}",
]  # fmt: skip


@pytest.mark.parametrize("command", ID_COMMANDS, ids=lambda c: c.split()[0])
@pytest.mark.parametrize("user_id", BAD_IDS, ids=lambda u: repr(u[:12]))
def test_invalid_user_id(seeded, command, user_id):
    before = snapshot(seeded.data)
    argv = [user_id if arg == "{}" else arg for arg in command.split()]
    assert_error(seeded(*argv, input="hello\n/exit\n"), "invalid user id")
    assert snapshot(seeded.data) == before
    assert not (seeded.data.parent / "x").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["add-rule", "alice", ""], "rule is empty"),
        (["add-rule", "alice", "   "], "rule is empty"),
        (["add-rule", "alice", "x" * 1_000_000], "rule is too long"),
        (["add-rule", "newbie", "\n\t "], "rule is empty"),
        (["add-rule", "alice", "Be brief.", "--context", "c" * 3000], "context is too long"),
        (["explain", "alice", "  "], "prompt is empty"),
    ],
    ids=["empty", "blank", "1MB", "blank-new-user", "long-context", "explain-blank"],
)
def test_bad_text(seeded, args, needle):
    before = snapshot(seeded.data)
    assert_error(seeded(*args), needle)
    assert snapshot(seeded.data) == before


UNKNOWN_USER_COMMANDS = [
    "show", "rules", "rules --all", "forget --yes", "forget", "explain hello",
    "delete-memory 1", "show --json",
]  # fmt: skip


@pytest.mark.parametrize("command", UNKNOWN_USER_COMMANDS)
def test_unknown_user(seeded, command):
    before = snapshot(seeded.data)
    name, *rest = command.split()
    line = assert_error(seeded(name, "nobody", *rest, input="y\n"), "unknown user")
    assert "nobody" in line
    assert snapshot(seeded.data) == before


@pytest.mark.parametrize("command", [["users"], ["add-rule", "alice", "Be brief."], ["show", "a"]])
def test_data_dir_is_a_file(cli, tmp_path, command):
    regular = tmp_path / "not-a-dir"
    regular.write_bytes(b"precious")
    assert_error(cli(*command, data=regular), "is a file")
    assert regular.is_file() and regular.read_bytes() == b"precious"
    assert_error(cli(*command, data=regular / "sub"))  # a dir under a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


GENERATE_BAD = {
    "nan": (["hi", "--strength", "nan"], "strength must be finite"),
    "inf": (["hi", "--strength", "inf"], "strength must be finite"),
    "negative": (["hi", "--strength", "-1"], "strength must be >= 0"),
    "huge-strength": (["hi", "--strength", "100"], "strength must be <="),
    "zero-tokens": (["hi", "--max-new-tokens", "0"], "max_new_tokens"),
    "negative-tokens": (["hi", "--max-new-tokens", "-3"], "max_new_tokens"),
    "too-many-tokens": (["hi", "--max-new-tokens", "100000"], "max_new_tokens"),
    "nan-temperature": (["hi", "--temperature", "nan"], "temperature"),
    "negative-seed": (["hi", "--seed", "-1"], "seed"),
    "empty-prompt": ([""], "prompt is empty"),
    "blank-prompt": (["  \n "], "prompt is empty"),
    "stream-nan": (["hi", "--stream", "--strength", "nan"], "strength"),
}


@pytest.mark.parametrize(("args", "needle"), GENERATE_BAD.values(), ids=GENERATE_BAD.keys())
def test_generate_bad_input(seeded, args, needle):
    before = snapshot(seeded.data)
    assert_error(seeded("generate", "alice", *args), needle)
    assert snapshot(seeded.data) == before


def test_generate_prompt_over_context(seeded):
    # Every add-rule leaves the on-disk index current, so nothing needs a rebuild here.
    before = snapshot(seeded.data)
    assert_error(seeded("generate", "alice", "hi " * 2000, "--max-new-tokens", "5"), "exceeds")
    assert snapshot(seeded.data) == before


@pytest.mark.slow
def test_real_console_script_error_has_no_traceback(tmp_path):
    script = Path(sys.executable).parent / "persona"
    argv = [str(script), "--data", str(tmp_path / "d"), "show", "nobody"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.splitlines() == ["error: unknown user 'nobody'"]
    assert run.stdout == ""
