"""The CLI reproducers of the memory hostile test (../shared/reports/memory-hostile-test.md):
A1 through the CLI, B1/B3/B4 bad input, C1/C2 stored text shown safely, D doctor."""

from __future__ import annotations

import json
import os
import random

import pytest

from tests.helpers import Cli, assert_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a1_a_negation_through_the_cli(cli: Cli):
    assert cli.json("add-rule", "alice", "Always use emojis")["id"] == 1
    second = cli.json("add-rule", "alice", "Never use emojis")
    assert (second["id"], second["text"]) == (2, "Never use emojis")
    rules = cli.json("rules", "alice", "--all")
    assert [(r["text"], r["superseded_by"]) for r in rules] == [
        ("Always use emojis", 2),
        ("Never use emojis", None),
    ]


def test_b1_an_overflowing_memory_id(cli: Cli):
    cli.ok("add-rule", "alice", "Be brief.")
    assert_error(cli("delete-memory", "alice", "100000000000000000000"), "no memory")


def test_b3_deeply_nested_import(cli: Cli, tmp_path):
    path = tmp_path / "nested.jsonl"
    header = {"format": "persona-sdk/user", "version": 1, "user_id": "n", "memories": 1}
    path.write_text(json.dumps(header) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    assert_error(cli("import", str(path)), "import line 2")


def test_b4_basis_fit_on_bad_input(cli: Cli, tmp_path):
    binary = tmp_path / "pop_bin.jsonl"
    binary.write_bytes(b"\xff\xfe\n")
    assert_error(cli("basis", "fit", str(binary)), "UTF-8")
    tiny = tmp_path / "pop_tiny.jsonl"
    tiny.write_text(
        '{"user_id":"u1","prompt":"p","chosen":"a","rejected":"b"}\n'
        '{"user_id":"u2","prompt":"q","chosen":"c","rejected":"d"}\n'
    )
    out = tmp_path / "outdir"
    out.mkdir()
    result = cli("basis", "fit", str(tiny), "--steps", "2", "--rank", "2", "--out", str(out))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "directory" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "outdir", "pop_bin.jsonl",
                                                          "pop_tiny.jsonl"]  # fmt: skip


MARKUP = [
    "Wrap code in [/] brackets",
    "Mark uncertain claims with [citation needed]",
    "Say [bold]hi[/bold] and [x]",
]


@pytest.mark.parametrize("text", MARKUP)
def test_c1_markup_in_stored_text_is_shown_as_written(cli: Cli, text):
    cli.ok("add-rule", "bob", text)
    for args in (("rules", "bob"), ("show", "bob"), ("explain", "bob", "hi")):
        out = " ".join(cli.ok(*args).stdout.split())
        assert text in out, (args, out)


def test_c1_markup_in_an_error_message(cli: Cli):
    line = assert_error(cli("show", "[/]"))
    assert "[/]" in line
    line = assert_error(cli("add-rule", "x[red]y", "Be brief."))
    assert "x[red]y" in line


def test_c2_terminal_escapes_never_reach_the_terminal(cli: Cli):
    text = "Be brief \x1b]0;PWNED\x07\x1b[2J done\x9b31m"
    cli.ok("add-rule", "eve", text)
    for args in (("rules", "eve"), ("show", "eve"), ("explain", "eve", "hi")):
        out = cli.ok(*args).stdout
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out, args
        assert "Be brief" in out and "PWNED" in out  # the text stays readable


def test_d1_doctor_on_a_garbled_database(cli: Cli):
    from persona_sdk import Persona

    with Persona.open(cli.data) as persona:  # the session's fake embedder, as the CLI's
        for user_id in ("alice", "bob"):
            persona.user(user_id).add_rules(
                [f"Mention {word} {user_id}mark{i}" for i, word in enumerate(WORDS * 15)]
            )
    db = cli.data / "persona.db"
    with open(db, "r+b") as handle:
        handle.seek(os.path.getsize(db) // 2)
        handle.write(random.Random(1).randbytes(8192))
    doctor = cli("doctor")
    assert doctor.exit_code in (1, 2) and "Traceback" not in doctor.output, doctor.output
    assert "corrupt" in doctor.output or "error:" in doctor.output
    for args in (("show", "alice"), ("export", "alice"), ("users",)):
        result = cli(*args)
        assert "Traceback" not in result.output and result.exit_code in (0, 2), result.output


WORDS = ["moss", "tide", "kiln", "fern", "loom", "quay", "sled", "wren", "yurt", "otter"]


def test_d2_doctor_keeps_index_files_of_an_emptied_database(cli: Cli):
    cli.ok("add-rule", "alice", "Be brief.")
    indexes = sorted(p.name for p in (cli.data / "indexes").iterdir())
    (cli.data / "persona.db").write_bytes(b"")
    result = cli("doctor")
    assert result.exit_code == 1 and "suspicious" in result.stdout
    assert sorted(p.name for p in (cli.data / "indexes").iterdir()) == indexes


def test_d3_add_rule_with_a_null_manifest(cli: Cli):
    cli.ok("add-rule", "alice", "Be brief.")
    manifest = next((cli.data / "indexes").glob("*.json"))
    manifest.write_text("null")
    cli.ok("add-rule", "alice", "Mention tide tables")
    assert len(cli.json("rules", "alice")) == 2
    assert cli.json("doctor")["ok"] is True
