"""The continuous-batching engine on the tiny model, without HTTP: joining an in-flight
batch changes no greedy output, and cancelled rows leave within one step."""

from __future__ import annotations

import threading
import time

import pytest

from persona_sdk.decoding.loop import sampling_params
from persona_sdk.serving.engine import Engine, EngineConfig, Group
from tests.helpers import add_pairs


class Collect:
    """A group's sink: every event, and a flag once it is done."""

    def __init__(self):
        self.events, self.finished = [], threading.Event()

    def __call__(self, event):
        self.events.append(event)
        if event[0] != "delta":
            self.finished.set()

    def text(self, row=0):
        return "".join(e[1][row] for e in self.events if e[0] == "delta")


def group(persona, user_id, prompt, strength, max_new=24, rows=1, seed=None, temperature=None):
    params = sampling_params(
        persona.generation_config,
        persona.host.max_context,
        1,
        max_new,
        temperature,
        None,
        seed,
        None,
    )
    request = persona._request(user_id, prompt, params, strength)
    sink = Collect()
    return Group(request, rows, params, sink), sink


@pytest.fixture(scope="module")
def tp(tmp_path_factory, tiny_host, embedder, built):
    from persona_sdk import Persona

    data = tmp_path_factory.mktemp("engine") / "data"
    p = Persona.open(data, model=tiny_host, embedder=embedder, adapters=built[0])
    add_pairs(p.user("ann"))
    add_pairs(p.user("bob"), [("Write a note", "a", "bb")])
    yield p
    p.close()


@pytest.fixture(scope="module")
def engine(tp, one_torch_thread):
    eng = Engine(tp, EngineConfig(prefill_tokens=4096))
    eng.start()
    assert eng.ready.wait(60)
    yield eng
    eng.stop(5)


def run_alone(engine, g, sink):
    engine.submit(g)
    assert sink.finished.wait(60)
    return [row.tokens for row in g.decode.gen.rows], sink.text()


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0, 2.0])
def test_greedy_identical_alone_and_joining_a_batch_in_flight(tp, engine, strength):
    g, sink = group(tp, "ann", "Explain black holes", strength)
    alone_tokens, alone_text = run_alone(engine, g, sink)
    library = tp.generate("ann", "Explain black holes", strength=strength, max_new_tokens=24)
    assert alone_text.strip() == library.text

    others = [
        group(tp, "bob", "Write a note to my team", 1.5, max_new=60),
        group(tp, "ann", "How can I sleep better?", 0.0, max_new=60, rows=2),
        group(tp, "carl", "Hi", 1.0, max_new=60, seed=3, temperature=0.9),
    ]
    for other, _ in others:
        engine.submit(other)
    while engine.stats()["steps"] < 5 + engine.counters["admitted"]:  # the others are decoding
        time.sleep(0.005)
    g2, sink2 = group(tp, "ann", "Explain black holes", strength)
    joined_tokens, joined_text = run_alone(engine, g2, sink2)
    assert joined_tokens == alone_tokens and joined_text == alone_text
    for _, other_sink in others:
        assert other_sink.finished.wait(60)
    assert engine.stats()["active_rows"] == 0


def test_seeded_sampling_is_reproducible_in_a_batch(tp, engine):
    runs = []
    for busy in (False, True):
        if busy:
            engine.submit(group(tp, "bob", "Write a note", 1.0, max_new=80)[0])
        g, sink = group(tp, "ann", "Explain black holes", 1.0, rows=3, seed=7, temperature=0.8)
        runs.append(run_alone(engine, g, sink)[0])
    assert runs[0] == runs[1] and len({tuple(r) for r in runs[0]}) > 1


def test_cancelled_rows_leave_within_one_step(tp, engine):
    g, sink = group(tp, "ann", "Explain black holes", 1.0, max_new=400, rows=2)
    g.params.stop = ()
    engine.submit(g)
    while len(sink.events) < 3:
        time.sleep(0.002)
    engine.cancel(g)
    deadline = time.time() + 10
    while engine.stats()["batch_copies"] and time.time() < deadline:
        time.sleep(0.002)
    stats = engine.stats()
    assert stats["batch_copies"] == 0 and stats["cancelled_rows"] == 2
    assert stats["max_cancel_steps"] <= 1


def test_joiners_respect_the_prefill_budget_and_row_limit(tp):
    idle = Engine(tp, EngineConfig(prefill_tokens=1, max_rows=3))  # never started
    groups = [group(tp, "ann", "Explain black holes", 0.0, rows=r)[0] for r in (2, 1, 1)]
    idle._waiting.extend(groups)
    assert idle._take_joiners() == groups[:1]  # one group always fits; the budget is spent
    idle.config.prefill_tokens = 10**6
    assert idle._take_joiners() == groups[1:]  # the budget allows both (3 rows)
    late = group(tp, "ann", "Hi", 0.0)[0]
    late.cancelled = True
    idle._waiting.append(late)
    assert idle._take_joiners() == [] and not idle._waiting
