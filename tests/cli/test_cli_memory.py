"""The ``persona`` memory commands end to end: add-pair, add-edit, export, import, doctor
and show's history (real data dir, the tiny Llama and the fake embedder)."""

from __future__ import annotations

import json

import pytest

from persona_sdk.memory.index import INDEX_DIRNAME, user_file_stem
from tests.helpers import Cli, assert_error, snapshot

EMOJI_RESPONSE = (
    "Congratulations on the new job 🎉 so happy for you and the team 😊 see you Friday 🍕"
)
EMOJI_EDITED = "Congratulations on the new job, so happy for you and the team, see you Friday"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


PLAN_PROMPT = "Write a note about the plan"
PLAN_RESPONSE = "This is a great plan! We start Monday! The team will love it!"
PLAN_EDITED = "This is a great plan. We start Monday. The team will love it."


def add_edit(cli: Cli, *extra: str):
    return cli(
        "add-edit",
        "alice",
        "Write a note about my new job",
        "--response",
        EMOJI_RESPONSE,
        "--edited",
        EMOJI_EDITED,
        *extra,
    )


@pytest.fixture
def stocked(cli) -> Cli:
    """alice: a superseded rule and its successor, a pair and an edit (with its pair)."""
    cli.json("add-rule", "alice", "Use emojis.")
    cli.json("add-rule", "alice", "Never use emojis.")
    cli.json("add-pair", "alice", "How do I sleep better?", "--chosen", "Keep a schedule.",
             "--rejected", "It depends.")  # fmt: skip
    cli.json("add-edit", "alice", PLAN_PROMPT, "--response", PLAN_RESPONSE, "--edited", PLAN_EDITED)
    return cli


# -- add-pair and add-edit -----------------------------------------------------------------


def test_add_pair_text_and_json(cli):
    result = cli.ok(
        "add-pair", "alice", "How do I sleep?", "--chosen", "Keep a schedule.", "--rejected", "Hm."
    )
    assert result.stdout.strip() == "added pair 1 for alice"
    pair = cli.json("add-pair", "alice", "Which?", "--chosen", "This one", "--rejected", "That")
    assert pair["id"] == 2 and pair["user_id"] == "alice"
    assert (pair["kind"], pair["source"], pair["prompt"], pair["chosen"], pair["rejected"]) == (
        "pair",
        "stated",
        "Which?",
        "This one",
        "That",
    )
    shown = cli.json("show", "alice")
    assert shown["counts"] == {"rule": 0, "pair": 2, "edit": 0}
    assert [m["id"] for m in shown["memories"]] == [1, 2]


def test_add_pair_errors(cli):
    assert_error(
        cli("add-pair", "alice", "Which?", "--chosen", "same", "--rejected", " same "), "same"
    )
    assert_error(cli("add-pair", "../x", "Which?", "--chosen", "a", "--rejected", "b"), "user id")
    assert_error(cli("add-pair", "alice", "  ", "--chosen", "a", "--rejected", "b"), "empty")
    assert cli.json("users") == []
    missing = cli("add-pair", "alice", "Which?", "--chosen", "a")
    assert missing.exit_code == 2 and "--rejected" in missing.output


def test_add_edit_text(cli):
    result = add_edit(cli)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "stored edit 1 and pair 2"
    assert len(lines) == 2 and lines[1].split() == ["added", "Do", "not", "use", "emojis."]
    again = add_edit(cli)
    assert again.stdout.splitlines()[0] == "stored edit 4 and pair 5"
    assert again.stdout.splitlines()[1].split()[0] == "reinforced"
    assert "duplicate of rule 3" in again.stdout


def test_add_edit_json(cli):
    result = add_edit(cli, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    edit, pair = data["memory"], data["pair"]
    assert (edit["kind"], edit["chosen"], edit["rejected"]) == (
        "edit",
        EMOJI_EDITED,
        EMOJI_RESPONSE,
    )
    assert edit["context"] == "Write a note about my new job"
    assert (pair["kind"], pair["origin_id"], pair["source"]) == ("pair", edit["id"], "inferred")
    (rule,) = data["inferred_rules"]
    assert (rule["text"], rule["origin_id"], rule["template"]) == (
        "Do not use emojis.",
        edit["id"],
        "emoji:-",
    )
    assert data["outcomes"] == [
        {"action": "added", "rule_id": rule["id"], "reason": "", "superseded": []}
    ]
    no_change = cli("add-edit", "alice", "Hi", "--response", "Same.", "--edited", " Same. ")
    assert_error(no_change, "same")


# -- export and import ---------------------------------------------------------------------


def test_export_to_stdout_and_to_a_file(stocked, tmp_path):
    out = stocked.ok("export", "alice").stdout
    lines = out.splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "persona-sdk/user" and header["user_id"] == "alice"
    records = [json.loads(line) for line in lines[1:]]
    assert header["memories"] == len(records) == 6  # 3 rules, 2 pairs, 1 edit
    assert [r["ref"] for r in records] == list(range(1, 7))
    superseded = next(r for r in records if r["text"] == "Use emojis.")
    assert superseded["valid_to"] and superseded["superseded_by"] == 2
    target = tmp_path / "alice.jsonl"
    result = stocked.ok("export", "alice", "-o", str(target))
    assert result.stdout == "" and target.read_text(encoding="utf-8") == out
    assert f"exported 6 memories of alice to {target}" in " ".join(result.stderr.split())
    assert_error(stocked("export", "nobody"), "unknown user")


def test_import_a_file_and_stdin(stocked, tmp_path):
    export = stocked.ok("export", "alice").stdout
    path = tmp_path / "alice.jsonl"
    path.write_text(export, encoding="utf-8")
    other = tmp_path / "other"
    result = stocked.ok("import", str(path), data=other)
    assert result.stdout.strip() == "imported alice: 3 rules, 2 pairs, 1 edits"
    assert stocked.ok("export", "alice", data=other).stdout == export

    counts = json.loads(
        stocked.ok(
            "import", "-", "--user", "bob", "--json", input=export.encode(), data=other
        ).stdout
    )
    assert counts == {"user_id": "bob", "rule": 3, "pair": 2, "edit": 1}
    bob = stocked.ok("export", "bob", data=other).stdout.splitlines()
    assert bob[1:] == export.splitlines()[1:] and json.loads(bob[0])["user_id"] == "bob"
    assert [u["user_id"] for u in stocked.json("users", data=other)] == ["alice", "bob"]
    # Imported rules are retrievable straight away.
    explained = stocked.json("explain", "bob", "Write a birthday message", data=other)
    assert "Never use emojis." in [r["text"] for r in explained["rules"]]
    assert "Use emojis." not in [r["text"] for r in explained["rules"]]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"format": "persona-sdk/user", "version": 1, "user_id": "x", "memories": 1}\n{oops\n',
         "import line 2"),
        (b"", "not a persona-sdk user export"),
        (b"\xff\xfe\x00garbage\n", "not valid UTF-8"),
        (b'{"format": "persona-sdk/user", "version": 1, "user_id": "x", "memories": 3}\n',
         "truncated"),
    ],
    ids=["malformed-json", "empty", "not-utf8", "truncated"],
)  # fmt: skip
def test_import_errors_are_one_line_and_change_nothing(stocked, tmp_path, content, needle):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    before = snapshot(stocked.data)
    assert_error(stocked("import", str(bad)), needle)
    assert_error(stocked("import", "-", input=content), needle)
    assert snapshot(stocked.data) == before


def test_import_existing_user_or_missing_file_fails(stocked, tmp_path):
    export = stocked.ok("export", "alice").stdout
    before = snapshot(stocked.data)
    assert_error(stocked("import", "-", input=export), "already exists")
    assert_error(stocked("import", "-", "--user", "../x", input=export), "invalid user id")
    assert_error(stocked("import", str(tmp_path / "nope.jsonl")), "cannot read")
    assert snapshot(stocked.data) == before
    assert [u["user_id"] for u in stocked.json("users")] == ["alice"]


# -- doctor --------------------------------------------------------------------------------


def test_doctor_json_on_a_healthy_dir(stocked):
    report = stocked.json("doctor")
    assert report["ok"] is True
    checks = {c["check"]: c for c in report["checks"]}
    assert {"sqlite", "schema", "embedder", "embeddings", "index:alice", "stray files"} <= set(
        checks
    )
    assert all(c["status"] == "ok" for c in report["checks"])
    check_only = stocked.json("doctor", "--check-only")
    assert check_only["ok"] is True and not any(c["repaired"] for c in check_only["checks"])


def test_doctor_does_not_claim_to_repair_a_healthy_index(stocked):
    report = stocked.json("doctor")
    assert [c["check"] for c in report["checks"] if c["repaired"]] == []


def test_doctor_repairs_a_deleted_index(stocked):
    index = stocked.data / INDEX_DIRNAME / f"{user_file_stem('alice')}.faiss"
    assert index.exists()
    index.unlink()

    check = stocked("doctor", "--check-only")
    assert check.exit_code == 1, check.output
    assert "missing" in check.stdout and "index:alice" in check.stdout
    assert not index.exists()  # check-only repairs nothing
    check_json = stocked("doctor", "--check-only", "--json")
    assert check_json.exit_code == 1
    assert json.loads(check_json.stdout)["ok"] is False

    report = stocked.json("doctor")
    assert report["ok"] is True
    alice = next(c for c in report["checks"] if c["check"] == "index:alice")
    assert (alice["status"], alice["repaired"]) == ("missing", True)
    assert index.exists()
    explained = stocked.json("explain", "alice", "Write a note about the plan for Friday")
    texts = [r["text"] for r in explained["rules"]]
    assert "Never use emojis." in texts and "Avoid exclamation marks." in texts

    index.unlink()
    text = stocked.ok("doctor").stdout
    assert "repaired" in text and "index:alice: rebuilt from SQLite" in " ".join(text.split())
    assert stocked.ok("doctor", "--check-only").exit_code == 0


def test_doctor_removes_stray_index_files(stocked):
    stray = stocked.data / INDEX_DIRNAME / f"{'f' * 32}.faiss"
    stray.write_bytes(b"left by a crash")
    assert stocked("doctor", "--check-only").exit_code == 1 and stray.exists()
    report = stocked.json("doctor")
    strays = next(c for c in report["checks"] if c["check"] == "stray files")
    assert (strays["status"], strays["repaired"]) == ("found", True)
    assert not stray.exists()


# -- show: pairs, edits and rule history -------------------------------------------------


def test_show_lists_pairs_edits_and_rule_history(stocked):
    text = " ".join(stocked.ok("show", "alice").stdout.split())
    assert "alice: 3 rules, 2 pairs, 1 edits" in text
    assert "superseded by 2" in text and "valid" in text
    assert "Use emojis." in text and "Never use emojis." in text
    assert "How do I sleep better?" in text and PLAN_PROMPT in text
    assert " pair " in text and " edit " in text

    shown = stocked.json("show", "alice")
    rules = {r["text"]: r for r in shown["rules"]}
    assert rules["Use emojis."]["superseded_by"] == rules["Never use emojis."]["id"]
    assert rules["Use emojis."]["valid_to"] is not None
    assert rules["Never use emojis."]["valid_to"] is None
    inferred = rules["Avoid exclamation marks."]
    kinds = {m["id"]: m["kind"] for m in shown["memories"]}
    assert sorted(kinds.values()) == ["edit", "pair", "pair"]
    assert kinds[inferred["origin_id"]] == "edit"
    edit_pair = next(m for m in shown["memories"] if m["origin_id"] == inferred["origin_id"])
    assert edit_pair["kind"] == "pair" and edit_pair["chosen"] == PLAN_EDITED

    valid = [r["text"] for r in stocked.json("rules", "alice")]
    history = [r["text"] for r in stocked.json("rules", "alice", "--all")]
    assert "Use emojis." not in valid and "Use emojis." in history
