"""The continuous-batching engine: one thread owns the model and decodes every request.

A request is a :class:`Group` of rows (``n`` or ``best_of``). Each group runs the
library's own decode (``persona_sdk.replies.Decode``: guided forward, guard, fluency,
sampling with its seeded generator, stop strings, streaming deltas), with one change: its
model call is answered by the shared batch. The group's first step is its own prefill
(its cache then joins the batch); every later step the engine runs one forward over all
groups' copies and hands each group its slice. Between steps, finished and cancelled
groups leave and waiting groups join, under a per-step prompt-token budget.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from persona_sdk.adapters.guidance import GuidedForward
from persona_sdk.decoding.loop import LogitsProcessor, SamplingParams
from persona_sdk.persona import Persona
from persona_sdk.replies import Decode
from persona_sdk.serving.batch import Batch

Event = tuple[str, object]  # ("delta", [str per row]) | ("done", None) | ("error", str)


class QueueFullError(Exception):
    """The waiting queue is full: answer 429."""


class NotReadyError(Exception):
    """The engine is still loading, failed to load, or is shutting down: answer 503."""


@dataclass
class EngineConfig:
    """Scheduling limits."""

    max_waiting: int = 64  # queued groups beyond this get 429
    max_rows: int = 64  # request rows decoding at once
    prefill_tokens: int = 1024  # prompt tokens prefilled per step (one group always fits)
    retry_after_s: int = 1
    torch_threads: int | None = None  # intra-op threads of the engine (None: torch's default)


class _Tap(LogitsProcessor):
    """Keeps each step's sampled tokens: the batch feeds them to the next forward."""

    def __init__(self):
        self.tokens: list[int] = []

    def observe(self, tokens, rows, active) -> None:
        self.tokens = tokens.tolist()


class _ModelCall:
    """A group's model call: its prefill runs for real (captured for the batch); every
    later step returns the logits the engine computed for the group's copies."""

    def __init__(self, real):
        self.real, self.logits, self.prefill = real, None, None

    def __call__(self, input_ids, attention_mask, position_ids, cache, logits_to_keep=1):
        if self.prefill is None:
            logits, cache = self.real(input_ids, attention_mask, position_ids, cache,
                                      logits_to_keep)  # fmt: skip
            self.prefill = (cache, attention_mask, position_ids[:, -1:] + 1)
            return logits, cache
        logits, self.logits = self.logits, None
        return logits, None


@dataclass(eq=False)
class Group:
    """One request's rows. ``request`` is Persona's prepared request (token ids, rules and
    adapter plan, fixed at admission); ``sink`` receives the engine's events; ``decode``
    is set when the group joins the batch."""

    request: object
    rows: int
    params: SamplingParams
    sink: Callable[[Event], None]
    best_of: int = 1
    decode: Decode | None = None
    cancelled: bool = False
    cancel_step: int | None = None
    done: bool = False
    queued_at: float = field(default_factory=time.perf_counter)
    copy_rows: list[int] = field(default_factory=list)  # the row of each cache copy
    _tap: _Tap | None = None
    _call: _ModelCall | None = None
    _steps: object = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.request.token_ids) * self.rows * (1 + self.request.plan.needs_adapter)

    def next_tokens(self) -> list[int]:
        """The token each copy is fed next."""
        return [self._tap.tokens[row] for row in self.copy_rows]


class Engine:
    """Owns the model in one thread; :meth:`submit` queues a group, :meth:`cancel` drops it."""

    def __init__(self, persona: Persona, config: EngineConfig | None = None,
                 on_step: Callable[[Engine, float], None] | None = None):  # fmt: skip
        self.persona = persona
        self.config = config or EngineConfig()
        self.on_step = on_step  # metrics hook: (engine, seconds of the step)
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.counters = {"steps": 0, "admitted": 0, "finished": 0, "cancelled_groups": 0,
                         "cancelled_rows": 0, "rejected": 0, "max_cancel_steps": 0,
                         "prompt_tokens": 0, "completion_tokens": 0}  # fmt: skip
        self._cond = threading.Condition()
        self._waiting: deque[Group] = deque()
        self._active: list[Group] = []
        self._joining: list[Group] = []  # admitted this step, not yet active
        self._stopping = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._batch: Batch | None = None
        self._host = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model and embedder in the engine thread, then serve."""
        self._thread = threading.Thread(target=self._run, name="persona-engine", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 30.0) -> None:
        """Stop admitting; let in-flight groups finish for up to ``drain_s``; then end."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + drain_s
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(drain_s + 30)

    @property
    def accepting(self) -> bool:
        return self.ready.is_set() and not self._stopping

    def _load(self) -> None:
        host = self.persona.host
        self.persona.embedder  # noqa: B018 - load (and check) it before serving
        # The engine decodes with its own tokenizer copy: request threads tokenize prompts
        # with the shared one, and a Rust tokenizer must not be borrowed by two threads.
        self._host = copy.copy(host)
        self._host.tokenizer = copy.deepcopy(host.tokenizer)
        self._batch = Batch(self._host, self.persona.adapter_server)

    # -- requests -------------------------------------------------------------------------

    def submit(self, group: Group) -> None:
        """Queue ``group``; raises :class:`NotReadyError` or :class:`QueueFullError`."""
        with self._cond:
            if not self.accepting:
                raise NotReadyError(self.load_error or "the model is loading")
            if len(self._waiting) >= self.config.max_waiting:
                self.counters["rejected"] += 1
                raise QueueFullError("the waiting queue is full")
            self._waiting.append(group)
            self._cond.notify_all()

    def cancel(self, group: Group) -> None:
        """Drop ``group`` (its client went away): its rows leave before the next step."""
        with self._cond:
            if not group.done and not group.cancelled:
                group.cancelled, group.cancel_step = True, self.counters["steps"]
                self._cond.notify_all()

    def stats(self) -> dict:
        """Counters plus the live queue depth and batch size."""
        with self._cond:
            live = [g for g in self._active if not (g.done or g.cancelled)]
            copies = 0 if self._batch is None else len(self._batch)
            return {**self.counters, "waiting": len(self._waiting), "active_groups": len(live),
                    "active_rows": sum(g.rows for g in live), "batch_copies": copies}  # fmt: skip

    # -- the engine thread ---------------------------------------------------------------

    def _run(self) -> None:
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        try:
            self._load()
        except Exception as exc:  # reported by /health and as 503s
            self.load_error = f"the model failed to load: {exc}"
            return
        self.ready.set()
        with torch.inference_mode():
            while self._wait_for_work():
                started = time.perf_counter()
                try:
                    self._step()
                except Exception as exc:  # a failed step fails its rows, not the server
                    self._fail_active(f"generation failed: {exc}")
                if self.on_step is not None:
                    self.on_step(self, time.perf_counter() - started)

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not (self._waiting or self._active or self._stopping):
                self._cond.wait()
            if self._stopping and time.monotonic() > self._deadline:
                for group in [*self._active, *self._waiting]:
                    if group.cancelled or group.done:
                        continue
                    group.cancelled, group.cancel_step = True, self.counters["steps"]
                    group.sink(("error", "the server shut down before the reply finished"))
            return not (self._stopping and not self._waiting and not self._active)

    def _fail_active(self, message: str) -> None:
        with self._cond:
            for group in [*self._active, *self._joining]:
                if not group.done:
                    group.done = True
                    group.sink(("error", message))
            self._active, self._joining = [], []
        self._batch = Batch(self._host, self.persona.adapter_server)

    def _step(self) -> None:
        self._leave()
        joiners = self._joining = self._take_joiners()
        if self._active:
            logits = self._batch.step([t for g in self._active for t in g.next_tokens()])
            at = 0
            for group in self._active:
                group._call.logits = logits[at : at + len(group.copy_rows)]
                at += len(group.copy_rows)
                self._resume(group)
        for group in joiners:
            slots = self._admit(group)
            self._resume(group)  # its prefill
            self._batch.add(slots, *group._call.prefill)
        with self._cond:
            self._active, self._joining = self._active + joiners, []
        self.counters["steps"] += 1

    def _leave(self) -> None:
        """Finished and cancelled groups leave the batch."""
        with self._cond:
            keep, copies, at = [], [], 0
            for group in self._active:
                if group.cancelled and not group.done:
                    self.counters["cancelled_groups"] += 1
                    self.counters["cancelled_rows"] += group.rows
                    lag = self.counters["steps"] - (group.cancel_step or 0)
                    self.counters["max_cancel_steps"] = max(self.counters["max_cancel_steps"], lag)
                    group._steps.close()
                if not (group.cancelled or group.done):
                    keep.append(group)
                    copies.extend(range(at, at + len(group.copy_rows)))
                at += len(group.copy_rows)
            self._active = keep
        self._batch.keep(copies)

    def _take_joiners(self) -> list[Group]:
        """Waiting groups that fit the row limit and this step's prompt-token budget."""
        joiners, budget = [], self.config.prefill_tokens
        rows = sum(g.rows for g in self._active)
        with self._cond:
            while self._waiting:
                group = self._waiting[0]
                if group.cancelled:
                    self._waiting.popleft()
                    self.counters["cancelled_groups"] += 1
                    continue
                fits = rows + group.rows <= self.config.max_rows or not (self._active or joiners)
                if not fits or (joiners and group.prompt_tokens > budget):
                    break
                self._waiting.popleft()
                joiners.append(group)
                rows += group.rows
                budget -= group.prompt_tokens
        return joiners

    def _admit(self, group: Group) -> list:
        """Build the group's decode with its model call redirected; its copies' slots."""
        persona, request = self.persona, group.request
        requests = [request] if group.best_of > 1 else [request] * group.rows
        decode = Decode(self._host, persona.adapter_server, requests, group.params,
                        group.best_of, persona.generation_config)  # fmt: skip
        group.decode, group._tap = decode, _Tap()
        gen, forward, plans = decode.gen, decode.gen.forward, [request.plan] * group.rows
        gen.processors = [*gen.processors, group._tap]
        if isinstance(forward, GuidedForward):
            group._call = forward.inner = _ModelCall(forward.inner)
            rows = range(group.rows)
            adapter = {int(forward.adapter_t[r]) for r in rows if not bool(forward.only_base[r])}
            group.copy_rows = forward.source.tolist()
            slots = [plans[r].adapter if c in adapter else None
                     for c, r in enumerate(group.copy_rows)]  # fmt: skip
        else:
            group._call = gen.forward = _ModelCall(forward)
            group.copy_rows, slots = list(range(group.rows)), [None] * group.rows
        gen.timings["queued"] = time.perf_counter() - group.queued_at
        group._steps = iter(gen)
        self.counters["admitted"] += 1
        self.counters["prompt_tokens"] += len(request.token_ids)
        return slots

    def _resume(self, group: Group) -> None:
        """One step of the group's own decode loop; its deltas go to the client."""
        rows = group.decode.gen.rows
        before = sum(len(row.tokens) for row in rows)
        for deltas in group._steps:
            if any(deltas):
                group.sink(("delta", deltas))
            if not all(row.finished for row in rows):
                break  # the loop calls the model next: the batch answers next step
        else:  # the loop ended: every row finished
            group.done = True
            self.counters["finished"] += 1
            group.sink(("done", None))
        self.counters["completion_tokens"] += sum(len(row.tokens) for row in rows) - before
