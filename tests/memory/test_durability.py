"""Durability of preference memory: concurrent writers in separate processes, a writer
killed mid-run, forget leaving no trace, per-user isolation, hostile input, all-or-nothing
import and doctor's repairs. A real store (SQLite, or PostgreSQL on the PostgreSQL run),
real FAISS; the fake embedder (in the writer processes too)."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_sdk import (
    InvalidInputError,
    InvalidUserIdError,
    MemoryNotFoundError,
    Persona,
    RetrievalConfig,
    UnknownUserError,
)
from persona_sdk.memory.edits import analyse_edit
from persona_sdk.memory.index import INDEX_DIRNAME, user_file_stem
from persona_sdk.memory.retrieval import Retriever
from persona_sdk.validation import INVISIBLE
from tests.helpers import snapshot

SQL = "'); DROP TABLE memories;--"
SQL_METAS = [SQL, "%", "_", '"', '50% off_the "best" \'; --']


# -- helpers -------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_torch_thread")


ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """Environment for writer processes: offline, one thread each (the box may be small),
    the repository importable (for the fake embedder)."""
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )


def index_agrees(persona: Persona, user_id: str) -> list[int]:
    """The user's FAISS ids equal the store's retrievable ids; returns them."""
    retrievable = persona.store.retrievable_ids(user_id)
    assert persona.indexes.get(user_id).ids() == retrievable
    return retrievable


def total_memories(persona: Persona) -> int:
    return persona.store.query("SELECT COUNT(*) FROM memories")[0][0]


EMOJI_RESPONSE = (
    "Congratulations on the new job 🎉 so happy for you and the team 😊 see you Friday 🍕"
)
EMOJI_EDITED = "Congratulations on the new job, so happy for you and the team, see you Friday"


def build_rich_user(persona: Persona, user_id: str) -> None:
    """A user with history: a superseded rule, a contextual rule, a pair, an edit."""
    user = persona.user(user_id)
    user.add_rule("Use emojis.")
    user.add_rule("Never use emojis.")  # supersedes the first
    user.add_rule("Use a bulleted list.", context="tips and advice")
    user.add_pair("How do I sleep better?", chosen="Keep a schedule.", rejected="It depends.")
    user.add_edit(
        "Write a note about the plan",
        response="This is a great plan! We start Monday! The team will love it!",
        edited="This is a great plan. We start Monday. The team will love it.",
        context="notes to my team",
    )


# -- concurrency: two processes ----------------------------------------------------------

WRITE_BATCHES = r"""
import json, time

WORDS = ["apples", "harbor", "violin", "glacier", "saturn", "garden", "rocket", "museum",
         "coffee", "winter", "bicycle", "opera", "desert", "robot", "castle", "jazz",
         "forest", "chess", "volcano", "lighthouse", "penguin", "tulips", "marble"]


def write_batches(persona, name, batches, emit):
    for i in range(batches):
        user = persona.user("shared" if i % 2 == 0 else "solo-" + name)
        if (i // 2) % 2 == 0:
            kind = "pair"
            memories = user.add_pairs([
                (f"{name}/{i}/{j} which wording is better?", f"chosen {name}/{i}/{j}",
                 f"rejected {name}/{i}/{j}")
                for j in range(2)
            ])
        else:
            kind = "rule"
            w = lambda k: WORDS[k % len(WORDS)]
            memories = user.add_rules([
                f"Mention {w(i * 7)} whenever we discuss {w(i * 3 + 5)}.",
                (f"Compare everything to {w(i * 5 + 1)}.", f"questions about {w(i * 11 + 2)}"),
            ])
        emit({"user": user.id, "kind": kind, "batch": i, "writer": name, "at": time.time(),
              "ids": [m.id for m in memories]})
"""
WRITER = (
    WRITE_BATCHES
    + r"""
import os, sys
from persona_sdk import Persona

from tests.helpers import FakeEmbedder

data, name, batches, basis = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
persona = Persona.open(data, device="cpu", embedder=FakeEmbedder(), basis=basis)
persona.rewards.check()  # load the basis before the start signal, so the writes overlap
print(json.dumps({"ready": name}), flush=True)
sys.stdin.readline()
write_batches(persona, name, batches, lambda ack: print(json.dumps(ack), flush=True))
persona.close()
print(json.dumps({"done": name}), flush=True)
os._exit(0)  # skip the interpreter's slow teardown
"""
)


@pytest.mark.slow
def test_two_processes_write_concurrently(tmp_path, embedder, basis):
    """This process and a child write at once, to a shared user and to their own."""
    data = tmp_path / "data"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    batches = 100
    basis_file = basis.save(tmp_path / "basis.npz")
    child = subprocess.Popen(
        [sys.executable, str(script), str(data), "b", str(batches), str(basis_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "writer.err").open("w"),
        text=True,
        env=child_env(),
    )
    namespace: dict = {}
    exec(WRITE_BATCHES, namespace)
    acks: list[dict] = []
    try:
        ready = child.stdout.readline()
        assert json.loads(ready) == {"ready": "b"}, (tmp_path / "writer.err").read_text()
        with Persona.open(data, embedder=embedder, basis=basis) as mine:
            child.stdin.write("go\n")
            child.stdin.flush()
            # start once the child has acknowledged a write: with fast (fake) embeddings a
            # whole run can otherwise finish before the other process begins
            acks.append(json.loads(child.stdout.readline()))
            namespace["write_batches"](mine, "a", batches, acks.append)
        # the rest through the same buffer: readline() may have read ahead, and
        # communicate() would read the pipe beneath it, losing those lines
        out = child.stdout.read()
        child.wait(timeout=240)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, (tmp_path / "writer.err").read_text()
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1] == {"done": "b"}
    acks += lines[:-1]
    assert len(acks) == 2 * batches
    times = {w: [a["at"] for a in acks if a["writer"] == w] for w in "ab"}
    assert min(times["a"]) < max(times["b"]) and min(times["b"]) < max(times["a"])  # overlap

    with Persona.open(data, embedder=embedder, basis=basis) as persona:
        store = persona.store
        assert persona.users() == ["shared", "solo-a", "solo-b"]
        for user_id in persona.users():
            mine = [a for a in acks if a["user"] == user_id]
            # Pairs: every acknowledged id present exactly once, holding what was sent.
            pair_ids = [i for a in mine if a["kind"] == "pair" for i in a["ids"]]
            assert len(pair_ids) == len(set(pair_ids))
            stored_pairs = {m.id: m for m in store.memories(user_id, kind="pair")}
            assert sorted(stored_pairs) == sorted(pair_ids)
            for ack in (a for a in mine if a["kind"] == "pair"):
                for j, memory_id in enumerate(ack["ids"]):
                    tag = f"{ack['writer']}/{ack['batch']}/{j}"
                    assert stored_pairs[memory_id].prompt == f"{tag} which wording is better?"
                    assert stored_pairs[memory_id].chosen == f"chosen {tag}"
            # Rules: a write adds a rule or reinforces one, so no support is ever lost.
            rule_acks = [a for a in mine if a["kind"] == "rule"]
            rules = store.memories(user_id, kind="rule")
            assert sum(r.support for r in rules) == 2 * len(rule_acks)
            assert {r.id for r in rules} == {i for a in rule_acks for i in a["ids"]}
            # The index (from disk, or rebuilt) agrees with the store.
            retrievable = index_agrees(persona, user_id)
            assert retrievable == [r.id for r in rules if r.is_valid]
        shared = [a for a in acks if a["user"] == "shared"]
        assert {a["writer"] for a in shared} == {"a", "b"} and len(shared) == batches
        report = persona.doctor()
        assert report.ok, report.to_dict()


# -- crash: SIGKILL mid-run ----------------------------------------------------------------

CRASHER = r"""
import json, sys
from persona_sdk import Persona
from tests.helpers import FakeEmbedder

persona = Persona.open(sys.argv[1], device="cpu", embedder=FakeEmbedder(), basis=sys.argv[2])
user = persona.user("crash")
persona.rewards.check()
print(json.dumps({"ready": True}), flush=True)
for i in range(100000):
    if i % 3 == 2:
        result = user.add_edit(
            f"batch {i}: write a note to my team",
            response=f"Hey team!!! batch {i} is done 🎉 great work everyone 😊",
            edited=f"Team, batch {i} is done. Great work everyone.",
            context=f"notes to my team, batch {i}",
        )
        ack = {"edit": result.memory.id, "pair": result.pair.id,
               "rules": [r.id for r in result.inferred_rules]}
    else:
        memories = user.add_pairs([
            (f"batch {i} pair {j}: pick one", f"chosen {i}/{j}", f"rejected {i}/{j}")
            for j in range(3)
        ])
        ack = {"pairs": [m.id for m in memories]}
    if i % 4 == 3:
        persona.indexes.flush()  # so a kill can also land mid-flush
    print(json.dumps({"batch": i, **ack}), flush=True)
"""
CRASH_RESPONSE = "Hey team!!! batch {i} is done 🎉 great work everyone 😊"
CRASH_EDITED = "Team, batch {i} is done. Great work everyone."


@pytest.mark.slow
def test_killed_writer_loses_no_acknowledged_batch(tmp_path, embedder, basis):
    data = tmp_path / "data"
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    basis_file = basis.save(tmp_path / "basis.npz")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(data), str(basis_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    try:
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        acks: list[dict] = []
        while len(acks) < 30:
            line = proc.stdout.readline()
            assert line.endswith(b"\n"), "the writer stopped early"
            acks.append(json.loads(line))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Lines the writer finished printing before it died were acknowledged too.
    acks += [json.loads(line) for line in rest.split(b"\n")[:-1]]
    acked = {a["batch"] for a in acks}
    assert acked == set(range(len(acks)))

    with Persona.open(data, embedder=embedder, basis=basis) as persona:
        store = persona.store
        memories = store.memories("crash")
        by_id = {m.id: m for m in memories}
        for ack in acks:  # every acknowledged id is there, with what was sent
            i = ack["batch"]
            if "pairs" in ack:
                assert [by_id[m].prompt for m in ack["pairs"]] == [
                    f"batch {i} pair {j}: pick one" for j in range(3)
                ]
            else:
                assert by_id[ack["edit"]].kind == "edit"
                assert by_id[ack["edit"]].chosen == CRASH_EDITED.format(i=i)
                assert by_id[ack["pair"]].origin_id == ack["edit"]
                assert all(by_id[r].kind == "rule" for r in ack["rules"])
        # All or nothing: each batch present is whole; at most one unacknowledged batch
        # (the one in flight) may have committed.
        batches: dict[int, list] = {}
        for m in memories:
            if m.kind != "rule":
                batches.setdefault(int(re.match(r"batch (\d+)", m.prompt).group(1)), []).append(m)
        assert acked <= set(batches) <= acked | {max(acked) + 1}
        for i, rows in batches.items():
            kinds = sorted(m.kind for m in rows)
            assert kinds == (["edit", "pair"] if i % 3 == 2 else ["pair"] * 3), (i, kinds)
        edits = [m for m in memories if m.kind == "edit"]
        for edit in edits:
            assert [m.id for m in memories if m.origin_id == edit.id and m.kind == "pair"]
        # The rules each edit taught are all there: their support adds up exactly.
        per_edit = len(analyse_edit(CRASH_RESPONSE.format(i=5), CRASH_EDITED.format(i=5)))
        assert per_edit >= 2
        rules = store.memories("crash", kind="rule")
        assert sum(r.support for r in rules) == per_edit * len(edits)
        assert {r.origin_id for r in rules} <= {e.id for e in edits}

        report = persona.doctor()
        assert report.ok, report.to_dict()
        index_agrees(persona, "crash")
        again = persona.doctor(repair=False)
        assert again.ok and all(c["status"] == "ok" for c in again.checks), again.to_dict()


# -- forget ------------------------------------------------------------------------------

MARK = "Quixotrylmark"
B_MARK = "Brontofigmark"


def test_forget_leaves_no_trace_in_any_file(tmp_path, tiny_host, embedder, store_files):
    """On PostgreSQL the scan covers the cluster's table files (base/) too; its WAL is
    left out (see ARCHITECTURE.md, "Store backends")."""
    data = tmp_path / "data"
    persona = Persona.open(data, model=tiny_host, embedder=embedder)
    alice, bob = persona.user("alice"), persona.user("bob")
    alice_rules = [f"Call me {MARK}-one.", (f"Mention {MARK}-two often.", f"{MARK} questions")]
    alice.add_rules(alice_rules)
    alice.add_pair(f"{MARK} prompt?", chosen=f"{MARK} chosen", rejected=f"{MARK} rejected")
    alice.add_edit(
        f"{MARK} edit prompt",
        response=f"{MARK} response!!! 🎉 so great!!!",
        edited=f"{MARK} edited.",
        context=f"{MARK} edit context",
    )
    bob.add_rules([f"Call me {B_MARK}.", (f"Use {B_MARK} examples.", "cooking questions")])
    bob.add_pair(f"{B_MARK} prompt?", chosen=f"{B_MARK} chosen", rejected=f"{B_MARK} rejected")
    bob_before = [m.to_dict() for m in bob.memories()]
    alice_vectors = [
        v.tobytes()
        for v in persona.store.embeddings("alice", persona.store.retrievable_ids("alice")).values()
    ]
    persona.indexes.flush()
    alice_files = persona.indexes.paths("alice")
    assert all(p.exists() for p in alice_files)
    assert any(MARK.encode() in b for b in store_files(data).values())

    # A second handle on the same dir holds a dirty copy of alice's index when she goes.
    other = Persona.open(data, model=tiny_host, embedder=embedder)
    other.user("alice").add_rule(f"Sign as {MARK}-three.")
    alice.forget()
    other.close()  # must not write alice's index back

    def no_trace() -> None:
        for path, content in store_files(data).items():
            assert MARK.encode() not in content, path
            assert MARK.lower().encode() not in content, path  # the lexical index's terms
            for vector in alice_vectors:
                assert vector not in content, path
        stem = user_file_stem("alice")
        assert not any(stem in p.name for p in (data / INDEX_DIRNAME).iterdir())
        assert not any(p.exists() for p in alice_files)

    no_trace()
    assert persona.users() == ["bob"]
    with pytest.raises(UnknownUserError):
        alice.forget()
    persona.close()
    no_trace()
    assert any(B_MARK.encode() in content for content in store_files(data).values())

    with Persona.open(data, model=tiny_host, embedder=embedder) as again:
        assert again.users() == ["bob"]
        assert not again.user("alice").exists and again.user("alice").explain("hi").rules == []
        assert [m.to_dict() for m in again.user("bob").memories()] == bob_before
        index_agrees(again, "bob")
        texts = [r.text for r in again.user("bob").explain("any cooking questions?").rules]
        assert f"Call me {B_MARK}." in texts and f"Use {B_MARK} examples." in texts
        assert again.doctor().ok


def test_forget_removes_a_temp_index_file_left_by_a_crash(persona):
    alice = persona.user("alice")
    alice.add_rule(f"Call me {MARK}.")
    persona.indexes.flush()
    index_path, _ = persona.indexes.paths("alice")
    leftover = index_path.with_name(f".{index_path.name}.4242.1.tmp")  # what a kill leaves
    shutil.copy(index_path, leftover)
    alice.forget()
    assert not any(user_file_stem("alice") in p.name for p in index_path.parent.iterdir())


# -- isolation -----------------------------------------------------------------------------

TOPICS = [
    "emails to my manager",
    "birthday messages for friends",
    "python debugging",
    "travel plans for Japan",
    "cooking pasta",
    "quarterly tax filing",
    "gym workout plans",
    "poems about the sea",
]
STYLES = [
    "Use a bulleted list.",
    "Answer in one sentence.",
    "Use emojis.",
    "Never use emojis.",
    "Include code examples.",
    "Start with a greeting.",
    "Use a formal tone.",
    "Be casual.",
]


def test_retrieval_never_crosses_users(persona, embedder):
    rng = random.Random(20240611)
    users = [f"user-{n}" for n in range(8)] + ["a_c", "abc"]  # "_" is a LIKE wildcard
    owned: dict[str, set[int]] = {}
    for user_id in users:
        user = persona.user(user_id)
        specs = [(f"Address me as Agent {user_id}.", None)]
        specs += [(rng.choice(STYLES), rng.choice(TOPICS)) for _ in range(3)]
        user.add_rules(specs)
        topic = rng.choice(TOPICS)
        user.add_edit(f"Write something about {topic}", EMOJI_RESPONSE, EMOJI_EDITED, context=topic)
        owned[user_id] = {m.id for m in persona.store.memories(user_id)}
    assert sum(map(len, owned.values())) == len(set().union(*owned.values()))

    queries = TOPICS + [f"Address me as Agent {u}." for u in users] + STYLES
    wide = Retriever(
        persona.store, persona.indexes, RetrievalConfig(top_k=100, min_similarity=-1.0)
    )
    for _ in range(40):
        user_id, query = rng.choice(users), rng.choice(queries)
        explained = persona.user(user_id).explain(query)
        vector = embedder.encode_one(query)
        everything = wide.retrieve(user_id, vector)
        assert explained.rules and everything
        for rule in explained.rules + everything:
            assert rule.id in owned[user_id], (user_id, query, rule)
            assert persona.store.get_memory(user_id, rule.id).user_id == user_id
            if rule.text.startswith("Address me as Agent"):
                assert rule.text == f"Address me as Agent {user_id}."
        assert f"Address me as Agent {user_id}." in [r.text for r in explained.rules]
        hits = persona.indexes.get(user_id).search(vector, 1000)
        assert hits and {h.memory_id for h in hits} <= owned[user_id]
        stranger = rng.choice([u for u in users if u != user_id])
        with pytest.raises(MemoryNotFoundError):
            persona.store.get_memory(stranger, explained.rules[0].id)
    for user_id in users:  # (exact agreement: see the batch test below)
        assert set(persona.indexes.get(user_id).ids()) <= owned[user_id]
        assert set(persona.store.retrievable_ids(user_id)) <= owned[user_id]
    assert persona.user("nobody").explain("emails to my manager").rules == []


@pytest.mark.parametrize(
    ("specs", "valid"),
    [
        (["Use emojis.", "Never use emojis."], 1),
        # one rule stated for two contexts: two scoped rules, never one global rule
        (
            [
                ("Use a bulleted list.", "cooking pasta"),
                ("Use a bulleted list.", "quarterly tax filing"),
            ],
            2,
        ),
    ],
    ids=["supersede-within-batch", "scoped-twice-within-batch"],
)
def test_index_mirrors_a_batch_that_consolidates_with_itself(persona, specs, valid):
    user = persona.user("alice")
    user.add_rules(specs)
    assert len(user.rules()) == valid and all(
        r.context is not None for r in user.rules() if valid == 2
    )
    index_agrees(persona, "alice")


# -- bad input -----------------------------------------------------------------------------

# Any code point (lone surrogates and controls included), weighted towards the tricky ones.
# (Built from integers: st.characters would write a unicode cache into the repository.)
CHARS = st.one_of(
    st.integers(0, 0x10FFFF).map(chr),
    st.integers(0x20, 0x7E).map(chr),
    st.sampled_from(
        list(" \t\n\r\x0b\x0c\x00\x1c\x85\xa0\u2028\u3000\ufeff\ud800\udfff🎉é'%_\";-")
    ),
)
TEXTS = st.one_of(st.text(alphabet=CHARS, max_size=40), st.binary(max_size=30))


def accepted(value: str | bytes) -> str | None:
    """What the store must hold for a text field given ``value``, or None: refused."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    text = value.strip()
    if not text or "\x00" in text or all(unicodedata.category(c) in INVISIBLE for c in text):
        return None  # empty to a reader: only spaces, controls or zero-width characters
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text


def test_arbitrary_rule_text_round_trips_or_is_refused(persona):
    counter = itertools.count()
    stored: list[tuple[str, int]] = []

    @settings(max_examples=30, deadline=None, database=None)
    @given(text=TEXTS, context=st.one_of(st.none(), TEXTS))
    def check(text, context):
        user = persona.user(f"hyp-{next(counter)}")  # fresh: nothing to consolidate with
        before = total_memories(persona)
        want = accepted(text)
        blank_context = context is None or (isinstance(context, str) and not context.strip())
        want_context = None if blank_context else accepted(context)
        if want is None or (not blank_context and want_context is None):
            with pytest.raises(InvalidInputError):
                user.add_rule(text, context=context)
            assert total_memories(persona) == before and not user.exists
            return
        memory = user.add_rule(text, context=context)
        assert (memory.text, memory.context) == (want, want_context)
        again = persona.store.get_memory(user.id, memory.id)
        assert (again.text, again.context, again.kind) == (want, want_context, "rule")
        assert total_memories(persona) == before + 1
        stored.append((user.id, memory.id))

    check()
    assert total_memories(persona) == len(stored)
    for user_id, memory_id in stored:
        assert index_agrees(persona, user_id) == [memory_id]
    assert persona.doctor().ok


def test_arbitrary_pair_text_round_trips_or_is_refused(persona):
    user = persona.user("pairs")
    stored: dict[int, tuple[str, str, str]] = {}

    @settings(max_examples=30, deadline=None, database=None)
    @given(prompt=TEXTS, chosen=TEXTS, rejected=TEXTS)
    def check(prompt, chosen, rejected):
        before = total_memories(persona)
        want = (accepted(prompt), accepted(chosen), accepted(rejected))
        if None in want or want[1] == want[2]:
            with pytest.raises(InvalidInputError):
                user.add_pair(prompt, chosen=chosen, rejected=rejected)
            assert total_memories(persona) == before
            return
        memory = user.add_pair(prompt, chosen=chosen, rejected=rejected)
        assert (memory.prompt, memory.chosen, memory.rejected) == want
        stored[memory.id] = want
        assert total_memories(persona) == before + 1

    check()
    found = {m.id: (m.prompt, m.chosen, m.rejected) for m in user.memories(kind="pair")}
    assert found == stored
    assert persona.doctor().ok


BAD_VALUES = {
    "empty": "",
    "blank": " \t\n\r\x0b\u3000 ",
    "one-megabyte": "x" * (1 << 20),
    "non-utf8": b"caf\xe9 \xff\xfe",
    "nul": "be\x00brief",
}
FIELDS = [
    "rule.text",
    "rule.context",
    "pair.prompt",
    "pair.chosen",
    "pair.rejected",
    "edit.prompt",
    "edit.response",
    "edit.edited",
    "edit.context",
]


def feedback(user, field: str, value):
    """Call add_rule / add_pair / add_edit with ``field`` set to ``value``."""
    kind, name = field.split(".")
    if kind == "rule":
        args = {"text": "Keep replies short.", "context": "emails to my boss"}
        return user.add_rule(**{**args, name: value})
    if kind == "pair":
        args = {"prompt": "How do I sleep?", "chosen": "Keep a schedule.", "rejected": "Hm."}
        return user.add_pair(**{**args, name: value})
    args = {
        "prompt": "Write a note to the team",
        "response": "Great job!!! 🎉",
        "edited": "Great job.",
        "context": "notes to the team",
    }
    return user.add_edit(**{**args, name: value})


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize("field", FIELDS)
def test_bad_text_in_every_field(persona, field, bad):
    user = persona.user("carol")
    user.add_rule("Answer in one sentence.")
    version, counts = persona.store.memory_version("carol"), persona.store.count_memories("carol")
    value = BAD_VALUES[bad]
    if field.endswith(".context") and bad in ("empty", "blank"):
        # A blank context means "not given": a global rule, or the edit's prompt.
        result = feedback(user, field, value)
        if field == "rule.context":
            assert result.context is None and result.text == "Keep replies short."
        else:
            assert result.memory.context == "Write a note to the team"
        return
    with pytest.raises(InvalidInputError):
        feedback(user, field, value)
    assert persona.store.memory_version("carol") == version
    assert persona.store.count_memories("carol") == counts
    assert persona.users() == ["carol"]


def test_identical_chosen_and_rejected_are_refused(persona):
    user = persona.user("dave")
    for chosen, rejected in [("same", "same"), ("same", "  same\n")]:
        with pytest.raises(InvalidInputError, match="same"):
            user.add_pair("Which?", chosen=chosen, rejected=rejected)
        with pytest.raises(InvalidInputError):
            user.add_edit("Which?", response=rejected, edited=chosen)
    assert not user.exists and persona.users() == []
    # UTF-8 bytes are text too.
    memory = user.add_pair(b"caf\xc3\xa9?", chosen=b"yes", rejected="no")
    assert (memory.prompt, memory.chosen, memory.rejected) == ("café?", "yes", "no")


@pytest.mark.parametrize(
    "user_id", ["../x", "..", "a/b", "~root", "%2e%2e", ".", "...", "a\\b", "/etc", "a\x00b", ""]
)
def test_path_traversal_user_ids_are_refused(persona, tmp_path, user_id):
    persona.user("safe").add_rule("Answer in one sentence.")
    lines = list(persona.export_user("safe"))
    persona.indexes.flush()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidUserIdError):
        persona.user(user_id)
    with pytest.raises(InvalidUserIdError):
        list(persona.export_user(user_id))
    with pytest.raises(InvalidUserIdError):
        persona.import_user(lines, user_id=user_id)
    header = json.loads(lines[0])
    with pytest.raises(InvalidUserIdError):
        persona.import_user([json.dumps({**header, "user_id": user_id}), *lines[1:]])
    persona.indexes.flush()
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert persona.users() == ["safe"]


def test_sql_metacharacters_in_every_field_are_stored_verbatim(persona):
    for n, meta in enumerate(SQL_METAS):
        user = persona.user(f"sql{n}")
        context = f"{meta} questions about cooking"
        rule = user.add_rule(meta, context=context)
        pair = user.add_pair(f"{meta} prompt", chosen=f"{meta} chosen", rejected=meta)
        edit = user.add_edit(
            f"{meta} edit prompt",
            response=f"{meta} great!!! 🎉🎉",
            edited=f"{meta} great.",
            context=f"{meta} notes",
        )
        got = persona.store.get_memory(user.id, rule.id)
        assert (got.text, got.context) == (meta, context)
        got = persona.store.get_memory(user.id, pair.id)
        assert (got.prompt, got.chosen, got.rejected) == (f"{meta} prompt", f"{meta} chosen", meta)
        got = persona.store.get_memory(user.id, edit.memory.id)
        assert (got.prompt, got.rejected, got.chosen, got.context) == (
            f"{meta} edit prompt",
            f"{meta} great!!! 🎉🎉",
            f"{meta} great.",
            f"{meta} notes",
        )
        assert edit.inferred_rules and all(
            r.context == f"{meta} notes" for r in edit.inferred_rules
        )
        assert [r.id for r in user.explain(context).rules][:1] == [rule.id]
        assert {r.id for r in edit.inferred_rules} <= {
            r.id for r in user.explain(f"{meta} notes").rules
        }
        index_agrees(persona, user.id)
    assert persona.users() == [f"sql{n}" for n in range(len(SQL_METAS))]
    assert total_memories(persona) >= 4 * len(SQL_METAS)  # the table survived
    assert persona.doctor().ok


# -- import: all or nothing ------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_host, embedder, store_templates) -> tuple[Path, list[str]]:
    """A closed data dir holding alice (with history), and alice's export; tests copy it
    with ``store_templates.copy`` (on PostgreSQL the database is copied too)."""
    data = tmp_path_factory.mktemp("exported") / "data"
    with (
        store_templates.building(data),
        Persona.open(data, model=tiny_host, embedder=embedder) as persona,
    ):
        build_rich_user(persona, "alice")
        lines = list(persona.export_user("alice"))
    return data, lines


def change(lines: list[str], kind: str, /, valid: bool = False, **fields) -> list[str]:
    """``lines`` with the first memory of ``kind`` (``valid``: still valid) changed; a
    None value deletes the field."""
    out = list(lines)
    for n, line in enumerate(out[1:], start=1):
        record = json.loads(line)
        if record["kind"] == kind and not (valid and record["valid_to"]):
            record.update(fields)
            out[n] = json.dumps({k: v for k, v in record.items() if v is not None})
            return out
    raise AssertionError(f"no {kind} in the export")


def header(lines: list[str], **fields) -> list[str]:
    return [json.dumps({**json.loads(lines[0]), **fields}), *lines[1:]]


def non_utf8(lines: list[str]) -> list[bytes]:
    marked = change(lines, "pair", chosen="ZZMARKZZ")
    return [line.encode().replace(b"ZZMARKZZ", b"caf\xe9\xff") for line in marked]


def huge_confidence(lines: list[str]) -> list[str]:
    return [line.replace('"HUGE"', "1e400") for line in change(lines, "rule", confidence="HUGE")]


def cut_mid_line(lines: list[str]) -> list[str]:
    text = "\n".join(lines)
    return text[: len(text) - 25].split("\n")


BROKEN_IMPORTS = {
    "nan-confidence": lambda ls: change(ls, "rule", confidence=float("nan")),
    "infinity-confidence": lambda ls: change(ls, "rule", confidence=float("inf")),
    "minus-infinity-confidence": lambda ls: change(ls, "rule", confidence=float("-inf")),
    "1e400-confidence": huge_confidence,
    "confidence-above-1": lambda ls: change(ls, "rule", confidence=1.01),
    "confidence-below-0": lambda ls: change(ls, "pair", confidence=-0.5),
    "confidence-string": lambda ls: change(ls, "rule", confidence="0.9"),
    "confidence-bool": lambda ls: change(ls, "rule", confidence=True),
    "support-0": lambda ls: change(ls, "rule", support=0),
    "support-string": lambda ls: change(ls, "rule", support="3"),
    "support-float": lambda ls: change(ls, "rule", support=2.5),
    "support-negative": lambda ls: change(ls, "edit", support=-1),
    "support-bool": lambda ls: change(ls, "rule", support=True),
    "malformed-json": lambda ls: [ls[0], ls[1][:-3], *ls[2:]],
    "truncated-last-line-missing": lambda ls: ls[:-1],
    "truncated-mid-line": cut_mid_line,
    "header-count-too-high": lambda ls: header(ls, memories=len(ls)),
    "wrong-format": lambda ls: header(ls, format="persona-sdk/other"),
    "wrong-version": lambda ls: header(ls, version=2),
    "version-string": lambda ls: header(ls, version="1"),
    "no-header": lambda ls: ls[1:],
    "header-not-object": lambda ls: ["[]", *ls[1:]],
    "header-user-traversal": lambda ls: header(ls, user_id="../x"),
    "unknown-field": lambda ls: change(ls, "rule", embedding=[0.1, 0.2]),
    "ref-out-of-order": lambda ls: change(ls, "rule", ref=2),
    "origin-dangling": lambda ls: change(ls, "pair", origin=999),
    "superseded-by-zero": lambda ls: change(ls, "rule", superseded_by=0),
    "origin-string": lambda ls: change(ls, "pair", origin="1"),
    "non-utf8-bytes": non_utf8,
    "empty-file": lambda ls: [],
    "blank-file": lambda ls: ["", "   ", "\t"],
    "unknown-kind": lambda ls: change(ls, "rule", kind="fact"),
    "unknown-source": lambda ls: change(ls, "pair", source="guessed"),
    "rule-without-text": lambda ls: change(ls, "rule", text=None),
    "pair-without-chosen": lambda ls: change(ls, "pair", chosen=None),
    "nul-in-text": lambda ls: change(ls, "rule", text="be\x00brief"),
    "lone-surrogate": lambda ls: change(ls, "edit", prompt="bad \ud800 text"),
    "blank-text": lambda ls: change(ls, "rule", text="   "),
    "oversized-text": lambda ls: change(ls, "pair", rejected="x" * 100_001),
    "bad-timestamp": lambda ls: change(ls, "rule", valid_from="yesterday"),
    "record-not-object": lambda ls: [ls[0], "[1, 2]", *ls[2:]],
}


def assert_import_changes_nothing(data, tiny_host, embedder, lines, user_id, error):
    before = snapshot(data)
    with Persona.open(data, model=tiny_host, embedder=embedder) as persona:
        users = persona.users()
        with pytest.raises(error):
            persona.import_user(lines, user_id=user_id)
        assert persona.users() == users
    assert snapshot(data) == before


@pytest.mark.parametrize("broken", list(BROKEN_IMPORTS))
def test_broken_import_changes_nothing(
    exported, tmp_path, tiny_host, embedder, broken, store_templates
):
    template, lines = exported
    data = tmp_path / "data"
    store_templates.copy(template, data)
    bad = BROKEN_IMPORTS[broken](lines)
    assert bad != lines
    assert_import_changes_nothing(data, tiny_host, embedder, bad, "fresh", InvalidInputError)


@pytest.mark.parametrize("user_id", [None, "../x"])
def test_import_over_an_existing_user_or_a_bad_id_changes_nothing(
    exported, tmp_path, tiny_host, embedder, user_id, store_templates
):
    template, lines = exported
    data = tmp_path / "data"
    store_templates.copy(template, data)
    assert_import_changes_nothing(data, tiny_host, embedder, lines, user_id, InvalidInputError)


def test_import_refuses_an_out_of_range_support(
    exported, tmp_path, tiny_host, embedder, store_templates
):
    template, lines = exported
    data = tmp_path / "data"
    store_templates.copy(template, data)
    bad = change(lines, "rule", support=10**30)
    assert_import_changes_nothing(data, tiny_host, embedder, bad, "fresh", InvalidInputError)


def test_import_of_a_malformed_template_cannot_break_retrieval(persona, exported):
    _, lines = exported
    bad = change(lines, "rule", valid=True, template="bogus")
    try:
        user = persona.import_user(bad, user_id="fresh")
    except InvalidInputError:
        assert persona.users() == []
        return
    assert user.explain("Write a note about the plan").rules


def test_export_import_export_round_trips_exactly(exported, tmp_path, tiny_host, embedder):
    _, lines = exported
    records = [json.loads(line) for line in lines[1:]]
    assert json.loads(lines[0])["memories"] == len(records)
    # The export carries the history and the provenance links.
    superseded = [r for r in records if r["valid_to"] is not None]
    assert superseded and all(r["superseded_by"] for r in superseded)
    edit_ref = next(r["ref"] for r in records if r["kind"] == "edit")
    assert any(r["kind"] == "pair" and r["origin"] == edit_ref for r in records)
    assert any(r["kind"] == "rule" and r["origin"] == edit_ref for r in records)

    with Persona.open(tmp_path / "other", model=tiny_host, embedder=embedder) as persona:
        persona.user("zed").add_rule("Answer in one sentence.")  # ids do not start at 1
        persona.import_user(lines)
        assert list(persona.export_user("alice")) == lines
        renamed = persona.import_user([line.encode() for line in lines], user_id="new")
        again = list(persona.export_user("new"))
        assert again[1:] == lines[1:]
        assert json.loads(again[0]) == {**json.loads(lines[0]), "user_id": "new"}
        # Imported memories work: history kept, links point inside the user, index current.
        valid = [r.text for r in renamed.rules()]
        assert "Never use emojis." in valid and "Use emojis." not in valid
        old = next(r for r in renamed.rules(include_superseded=True) if r.text == "Use emojis.")
        assert persona.store.get_memory("new", old.superseded_by).text == "Never use emojis."
        edit = renamed.memories(kind="edit")[0]
        assert [m.kind for m in persona.store.memories("new", origins=[edit.id])].count("pair") == 1
        for user_id in ("alice", "new"):
            index_agrees(persona, user_id)
        texts = [r.text for r in renamed.explain("any tips and advice for a trip?").rules]
        assert "Use a bulleted list." in texts and "Use emojis." not in texts
        persona.user("alice").forget()
        assert list(persona.export_user("new"))[1:] == lines[1:]
        assert persona.doctor().ok


# -- doctor --------------------------------------------------------------------------------


def test_doctor_repairs_damaged_indexes_and_removes_strays(tmp_path, tiny_host, embedder):
    data = tmp_path / "data"
    users = ["missing-index", "missing-manifest", "corrupt-index", "corrupt-manifest", "stale"]
    with Persona.open(data, model=tiny_host, embedder=embedder) as persona:
        for n, user_id in enumerate(users):
            persona.user(user_id).add_rule(f"Call me {user_id} number {n}.")
        paths = {u: persona.indexes.paths(u) for u in users}
        persona.indexes.flush()
        stale_vector = embedder.encode_one("Mention penguins.")
        # A write that bypasses the index (as another tool on the same store would do).
        persona.store.add_memories(
            "stale",
            [
                {
                    "kind": "rule",
                    "text": "Mention penguins.",
                    "embedding": stale_vector,
                    "text_embedding": stale_vector,
                }
            ],
        )
    paths["missing-index"][0].unlink()
    paths["missing-manifest"][1].unlink()
    blob = bytearray(paths["corrupt-index"][0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    paths["corrupt-index"][0].write_bytes(bytes(blob))
    paths["corrupt-manifest"][1].write_text("{not json")
    strays = [data / INDEX_DIRNAME / f"{'0' * 32}.faiss", data / INDEX_DIRNAME / f"{'0' * 32}.json"]
    for stray in strays:
        stray.write_bytes(b"left behind")
    expected = {
        "index:missing-index": "missing",
        "index:missing-manifest": "missing",
        "index:corrupt-index": "corrupt",
        "index:corrupt-manifest": "corrupt",
        "index:stale": "stale",
        "stray files": "found",
    }

    before = snapshot(data)
    with Persona.open(data, model=tiny_host, embedder=embedder) as persona:
        report = persona.doctor(repair=False)
    assert snapshot(data) == before  # check-only changes no file
    checks = {c["check"]: c for c in report.checks}
    assert not report.ok
    assert {k: checks[k]["status"] for k in expected} == expected
    assert not any(c["repaired"] for c in report.checks)

    with Persona.open(data, model=tiny_host, embedder=embedder) as persona:
        report = persona.doctor()
        assert report.ok, report.to_dict()
        checks = {c["check"]: c for c in report.checks}
        assert {k: checks[k]["status"] for k in expected} == expected
        assert all(checks[k]["repaired"] for k in expected)
        assert not any(s.exists() for s in strays)
        for n, user_id in enumerate(users):
            assert all(p.exists() for p in paths[user_id])
            assert persona.indexes.inspect(user_id) == "ok"
            index_agrees(persona, user_id)
            texts = [r.text for r in persona.user(user_id).explain("hello there").rules]
            assert f"Call me {user_id} number {n}." in texts
        assert "Mention penguins." in [r.text for r in persona.user("stale").explain("hi").rules]
        again = persona.doctor(repair=False)
        assert again.ok and all(c["status"] == "ok" for c in again.checks), again.to_dict()


def test_doctor_restores_missing_embeddings(persona):
    user = persona.user("alice")
    rule = user.add_rule("Use a bulleted list.", context="tips and advice")
    persona.indexes.flush()
    with persona.store.transaction() as conn:  # damage, as another tool could do it
        conn.execute("UPDATE memories SET embedding = NULL, text_embedding = NULL")
    report = persona.doctor(repair=False)
    embeddings = next(c for c in report.checks if c["check"] == "embeddings")
    assert not report.ok and embeddings["status"] == "missing" and not embeddings["repaired"]
    report = persona.doctor()
    embeddings = next(c for c in report.checks if c["check"] == "embeddings")
    assert report.ok and embeddings["repaired"]
    assert [r.id for r in user.explain("any tips and advice for a trip?").rules] == [rule.id]
    assert math.isclose(
        float(
            persona.store.embeddings("alice", [rule.id])[rule.id]
            @ persona.embedder.encode_one("tips and advice")
        ),
        1.0,
        abs_tol=1e-4,
    )
    index_agrees(persona, "alice")
