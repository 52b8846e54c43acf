"""Constraint enforcement inside the batched decode loop, row by row.

:class:`ConstraintProcessor` is a :class:`~persona_sdk.decoding.loop.LogitsProcessor`: each
step it builds every constrained row's allowed-token set and masks the rest. A row moves
through phases:

- ``prefix``: the opening (quote, greeting, start phrase) is forced token by token;
- ``title``: a short first line with no end punctuation, then a line break;
- ``free``: the model writes under the static masks (case, banned characters), the word
  blockers, and the grammar of a structured format; word and sentence budgets are
  counted, and near a word limit sentence ends are favoured;
- ``closing``: entered when the budget of words, sentences or tokens (less what the
  ending needs) is spent, or when the row wants to stop with an ending still to land: the
  open word may finish (never cut mid-word), then the sentence ends;
- ``tail``: the ending is forced (required words, end phrase or question, sign-off, P.S.,
  closing quote), then end of turn.

Rows without constraints are untouched, so a free row in a constrained batch costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from persona_sdk.constraints import counting
from persona_sdk.constraints.masks import TokenTable, is_word_char, token_table
from persona_sdk.constraints.plan import CLOSING_STEPS, RowPlan, build_plan
from persona_sdk.constraints.structure import LONGEST_JSON_CLOSER, StructuredRow
from persona_sdk.constraints.types import Constraint, JsonOnly
from persona_sdk.decoding.loop import LogitsProcessor, RowState

_ENDED = re.compile(r"[.!?…][\"'”’)\]*_]*\s*$")
_CROSSING = re.compile(r"[.!?…][\"'”’)\]]*\s+\S|\n")  # ends a sentence and starts another
_TERMINATOR = re.compile(r"^[.!?]+[\"'”’)\]]*$")
_CONTINUATION = re.compile(r"^\w+$")
_TITLE_BANNED = re.compile(r"[.!?,;:]")
_MAX_TITLE_WORDS = 8
_WANTS_STOP = 0.3  # P(end of turn) from which a row "wants to stop"
_NEAR_LIMIT_WORDS = 8  # words left at which sentence ends start being favoured
_STRUCTURE_RESERVE = 6
_MAX_TITLE_TOKENS = 16
# Characters str.splitlines() breaks at besides "\n": they would split sentences and lines.
_ODD_BREAKS = frozenset("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def completed_sentences(body: str) -> int:
    """Sentences of ``body`` that are finished (the open one is not counted)."""
    n = counting.count_sentences(body)
    open_end = n and not (_ENDED.search(body) or body.endswith("\n"))
    return n - 1 if open_end else n


class RowEnforcer:
    """One row's phase machine (see the module docstring)."""

    def __init__(self, plan: RowPlan, table: TokenTable, hf_tokenizer, max_new_tokens: int):
        self.plan, self.table, self.max_new = plan, table, max_new_tokens
        self.queue: list[int] = table.encode(plan.prefix) if plan.prefix else []
        self.phase = "prefix" if self.queue else ("title" if plan.title else "free")
        self.structure = (
            StructuredRow(plan.structure, table, hf_tokenizer) if plan.structure else None
        )
        self.body_start = 0
        self.closing_steps = 0
        self.glue_check = False
        worst = plan.ending("")
        self.tail_tokens = len(table.encode(worst))
        self.reserve = self.tail_tokens + CLOSING_STEPS if worst or plan.limited else 0
        if plan.structure is not None:  # room for a closer ("\"}]}") or the last item
            self.reserve = max(self.reserve, _STRUCTURE_RESERVE)
            if isinstance(plan.structure, JsonOnly):  # ... or the required key itself
                self.reserve = max(self.reserve, len(table.encode(LONGEST_JSON_CLOSER)) + 1)

    # -- per step ---------------------------------------------------------------------

    def mask(self, allowed: torch.Tensor, logits: torch.Tensor, row: RowState) -> None:
        """Narrow ``allowed`` (this row's bool vector) for the next token."""
        stops = self.table.stop_ids
        if self.phase == "done":
            allowed.zero_()
            allowed[stops] = True
            return
        if self.queue:
            allowed.zero_()
            allowed[self.queue[0]] = True
            return
        self._fold_case(logits)
        self._word_masks(allowed, row.text)
        if self.phase == "title":
            self._title_mask(allowed, row)
            return
        if self.phase == "free" and self._budget_spent(row):
            self._start_closing(row.text)
            if self.queue or self.phase == "done":
                return self._force_next(allowed, row.text)
        if self.phase == "closing":
            self._closing_mask(allowed, row, logits)
        elif self.structure is not None and not self.structure.failed:
            self._structure_mask(allowed, logits, row)
        else:
            self._free_mask(allowed, logits, row)
        if not allowed.any():  # nothing fits: end the row; verification reports it
            allowed[stops] = True

    def _fold_case(self, logits: torch.Tensor) -> None:
        """Move each wrong-case token's probability to its right-case twin (in place)."""
        if self.plan.case_map is None:
            return
        src, dst = self.plan.case_map
        probs = torch.softmax(logits.float(), dim=-1)
        probs.index_add_(0, dst, probs[src])
        logits.copy_(probs.clamp_min(1e-30).log())

    def _word_masks(self, allowed: torch.Tensor, text: str) -> None:
        for blocker in self.plan.blockers:
            allowed[torch.from_numpy(blocker.blocked(text))] = False
        if self.plan.no_greeting is not None and counting.count_words(text) < 3:
            allowed[torch.from_numpy(self.plan.no_greeting.blocked(text))] = False
        if self.glue_check:  # a start phrase must end as a whole word
            allowed[torch.from_numpy(self.table.mask_of(lambda t: t[:1].isalnum(), "glue"))] = False

    def _title_mask(self, allowed: torch.Tensor, row: RowState) -> None:
        text = row.text
        title_words = counting.count_words(text)
        left = self.max_new - len(row.tokens)
        long = len(row.tokens) >= _MAX_TITLE_TOKENS or left <= self.reserve + _MAX_TITLE_WORDS
        if title_words >= _MAX_TITLE_WORDS or (title_words and long):
            allowed &= self._tokens(lambda t: t.startswith("\n"), "newline_start")
            return
        allowed &= ~self._tokens(lambda t: bool(_TITLE_BANNED.search(t)), "title_banned")
        allowed[self.table.stop_ids] = False
        if title_words == 0:
            marker = lambda t: bool(re.match(r"\s*(?:[-*•+]|\d)|\s*\n", t))  # noqa: E731
            allowed &= ~self._tokens(marker, "title_start")
        elif "\n" in text:
            return
        else:
            newline_inside = lambda t: "\n" in t and not t.startswith("\n")  # noqa: E731
            allowed &= ~self._tokens(newline_inside, "newline_inside")

    def _tokens(self, predicate, key: str) -> torch.Tensor:
        return torch.from_numpy(self.table.mask_of(predicate, key))

    def _budget_spent(self, row: RowState) -> bool:
        left = self.max_new - len(row.tokens)
        body = row.text[self.body_start :]
        # A body first (a sign-off under nothing is no sign-off), unless only the ending's
        # own tokens are left.
        body_first = self.structure is None and not re.search(r"\w", body)
        waits = body_first and left > self.tail_tokens + 1  # the sentence end needs 1 more
        if self.reserve and left <= self.reserve and not waits:
            return True
        if self.structure is not None:
            return False
        words = self.plan.word_budget()
        if words is not None:
            n = counting.count_words(body)
            if n >= words or (words - n < 5 and n and _ENDED.search(body)):
                return True
        sentences = self.plan.sentence_budget()
        return sentences is not None and completed_sentences(body) >= sentences

    def _free_mask(self, allowed: torch.Tensor, logits: torch.Tensor, row: RowState) -> None:
        body = row.text[self.body_start :]
        stops = self.table.stop_ids
        sentences = self.plan.sentence_budget()
        if sentences is not None and completed_sentences(body) == sentences - 1:
            allowed &= ~self._tokens(lambda t: bool(_CROSSING.search(t)), "crossing")
            if self.plan.inline_question:  # the last sentence may only end as a question
                allowed &= ~self._tokens(lambda t: bool(re.search(r"[.!…]", t)), "stop_marks")
        words = self.plan.word_budget()
        if words is not None:
            left = words - counting.count_words(body)
            if left <= 1:
                multi = lambda t: len(re.findall(r"\w+", t)) > 1  # noqa: E731
                allowed &= ~self._tokens(multi, "multi_word")
            if left <= _NEAR_LIMIT_WORDS:  # favour ending the sentence before the limit
                bias = 0.6 * (_NEAR_LIMIT_WORDS + 1 - left)
                logits += bias * self._tokens(lambda t: bool(_TERMINATOR.match(t)), "term")
        if not re.search(r"\w", body):
            allowed[stops] = False  # no empty reply
            return
        if self._ending_needed(row.text):
            allowed[stops] = False
            if self._wants_stop(logits, allowed, stops):
                self._start_closing(row.text)
                self._force_next(allowed, row.text)

    def _force_next(self, allowed: torch.Tensor, text: str) -> None:
        """After a transition: the forced token, end of turn, or the closing choice."""
        if self.queue:
            allowed.zero_()
            allowed[self.queue[0]] = True
        elif self.phase == "done":
            allowed.zero_()
            allowed[self.table.stop_ids] = True
        elif self.phase == "closing":
            self._closing_mask(allowed, None, None)

    def _wants_stop(self, logits: torch.Tensor, allowed: torch.Tensor, stops) -> bool:
        probs = torch.softmax(logits.float(), dim=-1)
        return bool(probs[stops].sum() >= _WANTS_STOP or int(probs.argmax()) in stops)

    def _ending_needed(self, text: str) -> bool:
        """An ending to land before end of turn; under a length limit that includes the
        sentence end (a limited reply stops at a sentence boundary)."""
        body = text[self.body_start :]
        if self.plan.limited and self.structure is None and not _ENDED.search(body.rstrip()):
            return True
        return bool(self.plan.ending(body))

    def _structure_mask(self, allowed: torch.Tensor, logits: torch.Tensor, row: RowState) -> None:
        s = self.structure
        assert s is not None
        stops = self.table.stop_ids
        accepting = s.accepting()
        wants = self._wants_stop(logits, allowed, stops)
        allowed &= s.allowed()
        allowed[stops] = accepting and not self._ending_needed(row.text)
        if accepting and self._ending_needed(row.text) and wants:
            self._to_tail(row.text)
            self._force_next(allowed, row.text)
            return
        if s.is_list:
            self._item_budget(allowed, row)

    def _item_budget(self, allowed: torch.Tensor, row: RowState) -> None:
        """Move on to the next item once this one used its share of the tokens."""
        s = self.structure
        assert s is not None
        done = s.items_done(row.text)
        items_left = max(1, s.items - done)
        line_start = row.text.rfind("\n") + 1
        item_tokens = len(self.table.encode(row.text[line_start:]))
        budget_left = self.max_new - len(row.tokens) - self.reserve
        if item_tokens >= max(3, budget_left // items_left) and s.items - done > 1:
            newline = allowed & s.newline_tokens()
            if newline.any():
                allowed.copy_(newline)
        elif s.items - done <= 1 and item_tokens >= max(3, budget_left) and s.accepting():
            self._to_tail(row.text)
            self._force_next(allowed, row.text)

    def _closing_mask(
        self, allowed: torch.Tensor, row: RowState | None, logits: torch.Tensor | None
    ) -> None:
        """Let the open word finish when the model is mid-word (its favourite token goes on
        the word) and the budget has room, else end the sentence."""
        mid_word = (
            row is not None
            and logits is not None
            and self.closing_steps < CLOSING_STEPS - 1
            and is_word_char(row.text[-1:] or " ")
            and self.max_new - len(row.tokens) > self.tail_tokens + 1
        )
        if mid_word:
            cont = self._tokens(lambda t: bool(_CONTINUATION.match(t)), "continuation")
            term = self._tokens(lambda t: bool(_TERMINATOR.match(t)), "term")
            favourite = int(logits.masked_fill(~allowed, float("-inf")).argmax())
            if cont[favourite]:
                allowed &= cont | term
                return
        self.queue = self.table.encode(self.plan.terminator())
        allowed.zero_()
        allowed[self.queue[0]] = True

    # -- transitions ------------------------------------------------------------------

    def _start_closing(self, text: str) -> None:
        body = text[self.body_start :].rstrip()
        if self.structure is not None and not self.structure.failed:
            self._close_structure()
        elif not re.search(r"\w", body) or _ENDED.search(body):
            self._to_tail(text)
        else:  # the open word may finish, then the sentence ends (_closing_mask)
            self.phase, self.closing_steps = "closing", 0

    def _close_structure(self) -> None:
        s = self.structure
        assert s is not None
        if s.accepting():
            self.phase = "done" if not self.plan.ending("") else "tail"
            self.queue = self.table.encode(self.plan.ending("")) if self.phase == "tail" else []
            self.structure = None
            return
        closer = s.closer()
        if closer:
            self.queue = list(closer)
            self.phase = "closer"

    def _to_tail(self, text: str) -> None:
        ending = self.plan.ending(text[self.body_start :])
        self.structure = None
        self.queue = self.table.encode(ending) if ending else []
        self.phase = "tail" if self.queue else "done"

    def observe(self, token: int, row: RowState) -> None:
        """The row took ``token`` into its reply."""
        self.glue_check = False
        forced = bool(self.queue) and self.queue[0] == token
        if forced:
            self.queue.pop(0)
        if self.structure is not None:
            self.structure.consume(token)
            if self.phase == "closer" and not self.queue:
                self.structure = None
        if forced and not self.queue:
            self._after_queue(row)
        elif self.phase == "closing":
            self.closing_steps += 1
            if _ENDED.search(row.text):
                self._to_tail(row.text)
        elif self.phase == "title" and "\n" in row.text:
            self.phase, self.body_start = "free", len(row.text)

    def _after_queue(self, row: RowState) -> None:
        if self.phase == "prefix":
            self.glue_check = self.plan.glue_free
            self.phase = "title" if self.plan.title else "free"
        elif self.phase in ("closing", "closer"):  # the sentence or structure is closed
            self._to_tail(row.text)
        elif self.phase == "tail":
            self.phase = "done"


class ConstraintProcessor(LogitsProcessor):
    """Enforces each row's constraints (``None`` or ``[]``: a free row) in one batch."""

    def __init__(self, host, constraints: Sequence[Sequence[Constraint] | None],
                 max_new_tokens: int):  # fmt: skip
        vocab = int(host.model.get_output_embeddings().weight.shape[0])
        self.table = token_table(host.tokenizer, vocab, host.stop_token_ids)
        self._tokenizer, self._max_new_tokens = host.tokenizer, max_new_tokens
        self.rows: list[RowEnforcer | None] = [self._enforcer(c) for c in constraints]
        self._restarts = [0] * len(self.rows)  # a restarted row starts its plan again
        self.static = torch.ones((len(self.rows), self.table.size), dtype=torch.bool)
        # Special tokens other than end of turn decode to nothing: a constrained row skips them.
        silent = torch.tensor([not raw for raw in self.table.raw])
        silent |= torch.from_numpy(
            self.table.mask_of(lambda t: any(ch in _ODD_BREAKS for ch in t), "odd_breaks")
        )
        silent[self.table.stop_ids] = False
        for i, enforcer in enumerate(self.rows):
            if enforcer is None:
                continue
            self.static[i] &= ~silent
            if enforcer.plan.banned is not None:
                self.static[i] &= torch.from_numpy(~enforcer.plan.banned)

    def _enforcer(self, constraints: Sequence[Constraint] | None) -> RowEnforcer | None:
        if not constraints:
            return None
        plan = build_plan(list(constraints), self.table)
        return RowEnforcer(plan, self.table, self._tokenizer, self._max_new_tokens)

    @property
    def active(self) -> bool:
        return any(r is not None for r in self.rows)

    def process(self, logits: torch.Tensor, rows: Sequence[RowState]) -> torch.Tensor:
        if not self.active:
            return logits
        logits = logits.clone()
        allowed = self.static.clone()
        width = min(logits.shape[-1], self.table.size)
        for i, (enforcer, row) in enumerate(zip(self.rows, rows)):
            if enforcer is not None and row.restarts != self._restarts[i]:
                self._restarts[i] = row.restarts  # the guard dropped its reply
                enforcer = self.rows[i] = self._enforcer(enforcer.plan.constraints)
            if enforcer is None or row.finished:
                continue
            row_logits = logits[i, :width].cpu()
            enforcer.mask(allowed[i], row_logits, row)
            logits[i, :width] = row_logits.to(logits.device)
        mask = allowed[:, :width].to(logits.device)
        logits[:, :width] = logits[:, :width].masked_fill(~mask, float("-inf"))
        return logits

    def observe(self, tokens: torch.Tensor, rows: Sequence[RowState], active: list[bool]) -> None:
        if not self.active:
            return
        ids = tokens.tolist()
        for enforcer, row, token, took in zip(self.rows, rows, ids, active):
            if enforcer is not None and took:
                enforcer.observe(token, row)
