"""Text-only signs that a reply is broken, checked in one pass that can run as it is written.

One implementation serves every caller: :class:`DegenerationMonitor` reads a reply as it
grows (a decode guard feeds it each row's text so far) and :func:`degenerate_reasons` is
that monitor run over a finished reply, so the guard, best-of reranking and the evals
can never disagree about what "broken" means.

The signs, each a reason code:

- ``empty``: no letter, digit or emoji outside empty list markers.
- ``repeated_line``: one sentence or line (3+ words) occurs 3+ times; in code (a fenced
  block, or a line opening with ``<`` or ``>>>``), one line of 10+ characters, letters
  or digits among them, occurs 6+ times (code repeats short lines legitimately).
- ``empty_list_items``: 3+ list items with nothing after the marker (``- 1.``, ``-``, ``1.``).
- ``repetitive``: under half of the word trigrams are distinct, over the reply so far
  (once it has 20) or over its last 40, which catches a loop that starts late in a long
  reply; inside code, under 1/8 distinct over 64.
- ``restates_request``: the reply talks about the request instead of answering it: a
  phrase like "a revised version of your request" twice, or once with nothing else of
  substance, or a reply whose word trigrams mostly come from the prompt. Skipped when
  the prompt itself asks to rewrite, fix or repeat a passage it quotes.

The repetition signs trip as soon as they appear; ``empty`` and the prompt-copy sign are
only decided on the finished reply.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass

EMPTY = "empty"
REPEATED_LINE = "repeated_line"
EMPTY_LIST_ITEMS = "empty_list_items"
REPETITIVE = "repetitive"
RESTATES_REQUEST = "restates_request"
REASONS = (EMPTY, REPEATED_LINE, EMPTY_LIST_ITEMS, REPETITIVE, RESTATES_REQUEST)

_WORD = re.compile(r"\w+(?:'\w+)*")
_ALNUM = re.compile(r"[^\W_]")
_CONTENT = re.compile(r"[^\W_]|[\u2190-\U0010ffff]")  # a letter, digit, symbol or emoji
_SENTENCE_END = re.compile(r"[.!?]+(?=\s)")
_FENCES = ("```", "~~~")
_CODE_STARTS = ("<", ">>>")  # an HTML tag or a Python prompt outside a fence is code too
_HEAD = 40  # chars of a line kept to tell a fence or an empty list item
_LEADING_MARKER = re.compile(r"^\s*(?:[-*•+>#]+\s*)?(?:\(?\d+[.)]\s*)?")
_EMPTY_ITEM = re.compile(r"\s*(?:[-*•+]\s*)?(?:\**\(?\d+[.)]\**)?\s*")
_RESTATE = re.compile(
    r"(?:\b(?:here(?:'s|’s|\s+is)|this\s+is)\s+(?:a|an|the|my)\s+)?"
    r"\b(?:revised|rewritten|rephrased|reworded|improved|refined|updated|edited|clarified|"
    r"corrected)\s+(?:version\s+of\s+)?(?:your|the)\s+(?:request|prompt|question|query|"
    r"instructions?)\b",
    re.IGNORECASE,
)
_REWORK = re.compile(
    r"\b(?:repeat|rewrite|re-write|revise|rephrase|reword|paraphrase|fix|correct|proofread|"
    r"edit|improve|polish|translate|copy|quote|echo|format|summari[sz]e|shorten)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DegenerationLimits:
    """Thresholds of the degenerate signs (see the module doc)."""

    repeated_line: int = 3
    min_line_words: int = 3  # "Yes." or "Step 1" may well recur
    code_repeated_line: int = 6
    min_code_line_chars: int = 10
    empty_items: int = 3
    min_distinct: float = 0.5
    min_trigrams: int = 20  # below this a distinct share says little
    window: int = 40
    code_min_distinct: float = 0.125
    code_window: int = 64
    copy_share: float = 0.6
    min_copy_trigrams: int = 4
    restate_phrases: int = 2
    min_residual_words: int = 3


DEFAULT_LIMITS = DegenerationLimits()


def words(text: str) -> list[str]:
    """Lower-cased words (contractions kept whole), as every sign here counts them."""
    return _WORD.findall(text.lower())


def trigrams(tokens: list[str]) -> list[tuple[str, str, str]]:
    return list(zip(tokens, tokens[1:], tokens[2:]))


def asks_to_rework(prompt: str | None) -> bool:
    """True when the prompt asks to rewrite, fix or repeat a passage it includes, so that
    a reply copying the prompt, or calling itself a revised version, is the answer."""
    if not prompt or not _REWORK.search(prompt):
        return False
    return any(mark in prompt for mark in (":", "\n", '"', "“"))


class _Trigrams:
    """Running counts of one stream of words: all trigrams so far, and the last ``window``."""

    def __init__(self, window: int, keep_all: bool):
        self.size = window
        self.last: tuple[str, ...] = ()
        self.recent: deque[tuple[str, ...]] = deque()
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.total = 0
        self.seen: set[tuple[str, ...]] | None = set() if keep_all else None

    def push(self, word: str) -> tuple[str, ...] | None:
        """Add a word; returns the trigram it completes, if any."""
        self.last = (*self.last, word)[-3:]
        if len(self.last) < 3:
            return None
        gram = self.last
        self.total += 1
        if self.seen is not None:
            self.seen.add(gram)
        self.recent.append(gram)
        self.counts[gram] += 1
        if len(self.recent) > self.size:
            old = self.recent.popleft()
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]
        return gram

    def window_distinct(self) -> float:
        return len(self.counts) / len(self.recent) if self.recent else 1.0

    def all_distinct(self) -> float:
        return len(self.seen) / self.total if self.seen is not None and self.total else 1.0


class DegenerationMonitor:
    """Incremental degenerate check of one reply as it is generated.

    Call :meth:`update` with the reply's full text so far (each step, or every few tokens):
    it reads only what is new since the last call, up to the last whitespace (a word or
    line still being written waits), so each call costs O(new text). :meth:`finish` reads
    the rest and adds the whole-reply signs. ``reasons`` only grows; once ``tripped``, the
    row stays tripped. The text is assumed to only grow, as a decode's text does.
    """

    def __init__(self, prompt: str | None = None, limits: DegenerationLimits = DEFAULT_LIMITS):
        self.limits = limits
        self.reasons: list[str] = []
        self.tripped_at: int | None = None  # chars read by the call that first tripped
        self._rework = asks_to_rework(prompt)
        self._prompt_grams = set(trigrams(words(prompt))) if prompt else None
        self._pos = 0  # chars of the text read
        self._seen = 0  # chars of the text looked at for whitespace
        self._head = ""  # the current line's first chars: a fence or an empty list item?
        self._pending = ""  # the current sentence so far (in code: the current line)
        self._line_content = False
        self._in_code = False
        self._sentences: Counter[str] = Counter()
        self._code_lines: Counter[str] = Counter()
        self._empty_items = 0
        self._has_content = False
        self._phrases = 0
        self._copied = 0  # prose trigrams that also occur in the prompt
        self._prose = _Trigrams(limits.window, keep_all=True)
        self._code = _Trigrams(limits.code_window, keep_all=False)
        self._finished = False

    @property
    def tripped(self) -> bool:
        return bool(self.reasons)

    def update(self, text: str) -> list[str]:
        """Read the new part of ``text`` (the reply so far); returns reasons new in this call."""
        if self._finished:
            return []
        start = max(self._pos, self._seen)  # no whitespace before here that was not read
        end = max(text.rfind(" ", start), text.rfind("\n", start), text.rfind("\t", start))
        self._seen = len(text)
        if end < self._pos:
            return []
        before = list(self.reasons)
        self._read(text[self._pos : end + 1])
        self._pos = end + 1
        if self.reasons and self.tripped_at is None:
            self.tripped_at = self._pos
        return [r for r in self.reasons if r not in before]

    def finish(self, text: str) -> list[str]:
        """Read the rest of the finished reply and decide the whole-reply signs; returns
        every reason, in the order of :data:`REASONS`. Later calls return the same list."""
        if not self._finished:
            self._read(text[self._pos :])
            self._pos = max(self._pos, len(text))
            self._end_line()
            self._finished = True
            if not self._has_content:
                self._flag(EMPTY)
            if self._restates(text):
                self._flag(RESTATES_REQUEST)
            if self.reasons and self.tripped_at is None:
                self.tripped_at = self._pos
        return list(self.reasons)

    # -- reading ------------------------------------------------------------------------

    def _flag(self, reason: str) -> None:
        if reason in self.reasons:
            return
        self.reasons = sorted([*self.reasons, reason], key=REASONS.index)

    def _read(self, chunk: str) -> None:
        parts = chunk.split("\n")
        for i, part in enumerate(parts):
            self._scan(part)
            if i < len(parts) - 1:
                self._end_line()

    def _line_is_code(self) -> bool:
        return self._in_code or self._head.lstrip().startswith(_FENCES + _CODE_STARTS)

    def _scan(self, new: str) -> None:
        """Read ``new``, the next part of the current line (it ends at whitespace or at
        the line's end, so its words are whole)."""
        if len(self._head) < _HEAD:
            self._head = (self._head + new)[:_HEAD]
        if not self._line_content and _CONTENT.search(new):
            self._line_content = True
        code, limits = self._line_is_code(), self.limits
        for word in words(new):
            if code:
                self._code.push(word)
                if (
                    len(self._code.recent) == limits.code_window
                    and self._code.window_distinct() < limits.code_min_distinct
                ):
                    self._flag(REPETITIVE)
            else:
                self._push_prose(word)
        if code:
            self._pending += new
            return
        start = 0
        for match in _SENTENCE_END.finditer(new):
            self._sentence(self._pending + new[start : match.end()])
            self._pending, start = "", match.end()
        self._pending += new[start:]

    def _push_prose(self, word: str) -> None:
        gram = self._prose.push(word)
        if gram is None:
            return
        if self._prompt_grams is not None and gram in self._prompt_grams:
            self._copied += 1
        limits = self.limits
        if self._prose.total >= limits.min_trigrams and (
            self._prose.all_distinct() < limits.min_distinct
            or self._prose.window_distinct() < limits.min_distinct
        ):
            self._flag(REPETITIVE)

    def _sentence(self, sentence: str) -> None:
        if not self._rework:
            self._phrases += len(_RESTATE.findall(sentence))
            if self._phrases >= self.limits.restate_phrases:
                self._flag(RESTATES_REQUEST)
        tokens = words(_LEADING_MARKER.sub("", sentence, count=1))
        if len(tokens) < self.limits.min_line_words:
            return
        key = " ".join(tokens)
        self._sentences[key] += 1
        if self._sentences[key] >= self.limits.repeated_line:
            self._flag(REPEATED_LINE)

    def _end_line(self) -> None:
        head, code = self._head, self._line_is_code()
        fence = head.lstrip().startswith(_FENCES)
        if code:
            stripped = self._pending.strip()
            long_enough = len(stripped) >= self.limits.min_code_line_chars
            if not fence and long_enough and _ALNUM.search(stripped):  # not a box border
                self._code_lines[stripped] += 1
                if self._code_lines[stripped] >= self.limits.code_repeated_line:
                    self._flag(REPEATED_LINE)
        else:
            self._sentence(self._pending)
            if head.strip() and len(head) < _HEAD and _EMPTY_ITEM.fullmatch(head):
                self._empty_items += 1
                if self._empty_items >= self.limits.empty_items:
                    self._flag(EMPTY_LIST_ITEMS)
                self._line_content = False  # a list marker's digits are no content
        self._has_content = self._has_content or self._line_content
        if fence:
            self._in_code = not self._in_code
        self._head, self._pending, self._line_content = "", "", False

    # -- whole-reply signs --------------------------------------------------------------

    def _restates(self, text: str) -> bool:
        if self._rework or RESTATES_REQUEST in self.reasons:
            return False
        limits, grams = self.limits, self._prompt_grams
        if self._phrases:  # what is left once the talk about the request is taken out
            rest = words(_RESTATE.sub(" ", text))
            if len(rest) < limits.min_residual_words:
                return True  # "Here's a revised version of your request:" and little else
            return grams is not None and _copy_share(rest, grams) >= limits.copy_share
        total = self._prose.total + self._code.total  # an email in a code block is an answer
        if grams is None or total < limits.min_copy_trigrams:
            return False
        return self._copied / total >= limits.copy_share


def _copy_share(tokens: list[str], prompt_grams: set[tuple[str, str, str]]) -> float:
    grams = trigrams(tokens)
    return sum(g in prompt_grams for g in grams) / len(grams) if grams else 0.0


def degenerate_reasons(
    text: str, prompt: str | None = None, limits: DegenerationLimits = DEFAULT_LIMITS
) -> list[str]:
    """Why ``text``, a reply to ``prompt`` (the user's request, if known), is broken:
    reason codes from :data:`REASONS` in the order found, ``[]`` for a usable reply."""
    return DegenerationMonitor(prompt, limits).finish(text)


def is_degenerate(
    text: str, prompt: str | None = None, limits: DegenerationLimits = DEFAULT_LIMITS
) -> bool:
    """True when :func:`degenerate_reasons` finds any sign."""
    return bool(degenerate_reasons(text, prompt, limits))
