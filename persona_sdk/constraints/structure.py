"""Structured formats through llguidance: JSON only, and lists (exactly N items or ≥ 2).

llguidance (ARCHITECTURE.md, Decisions) computes the allowed-token set of a grammar in
well under a millisecond per row and step, with no grammar compilation: a matcher is built
per row in microseconds from a JSON schema or a regex. This module wraps one matcher per
row and adds what a grammar alone cannot give a bounded reply: closing in time. A JSON
row near its token budget is closed by the shortest of a few closers the grammar accepts
("}", "\\"}", "]}", ...); a list row moves on to its next item when the item has used its
share of the budget.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from persona_sdk.constraints.masks import TokenTable
from persona_sdk.constraints.types import JsonOnly, ListFormat

_ITEM = r"[^\s][^\n]*"
_CLOSERS = ('}', '"}', ']}', '"]}', '}}', '"}}', '}]}', '"}]}', ' ""}', '""}', '": ""}', '0}',
            ']', '"]', '}]', '"}]')  # fmt: skip
# When none of _CLOSERS completes a JSON row (the required key not written yet, or half
# typed), a closer is a state fixer (end a string, a key half typed, a separator) then a
# tail that writes whatever of the required key and an empty value is still missing.
_KEY = "answer"
_HEADS = ("", '"', "]", "}", " ", ",", '":', *(_KEY[k:] + '"' for k in range(1, len(_KEY))))
_TAILS = ("}", '"}', ': ""}', ':""}', ' ""}', '""}', f'"{_KEY}": ""}}', f'"{_KEY}":""}}',
          f' "{_KEY}": ""}}', f', "{_KEY}": ""}}', f',"{_KEY}":""}}')  # fmt: skip
# The longest closer a JSON row may need (from "{": the required key and an empty value).
LONGEST_JSON_CLOSER = f' "{_KEY}": ""}}'
_LOCK = threading.Lock()
# An object with the reply under "answer" (more keys allowed): a bare "{}" is valid JSON
# but no answer, and a 135M model under {"type": "object"} mostly wrote just that.
JSON_SCHEMA = {
    "type": "object",
    "properties": {_KEY: {"type": "string"}},
    "required": [_KEY],
}


def _ll_tokenizer(table: TokenTable, hf_tokenizer):
    """llguidance's tokenizer for ``table``, built once and kept on it."""
    with _LOCK:
        if table.ll_tokenizer is None:
            import llguidance.hf

            table.ll_tokenizer = llguidance.hf.from_tokenizer(
                hf_tokenizer, n_vocab=table.size, eos_token=table.stop_ids[0]
            )
        return table.ll_tokenizer


def list_regex(c: ListFormat) -> str:
    """A regex for a list of ``c.style`` items: exactly ``c.count``, or at least two."""
    if c.style == "numbered":
        if c.count:
            return r"\n".join(rf"{k}\. {_ITEM}" for k in range(1, c.count + 1))
        return rf"1\. {_ITEM}(\n[0-9]{{1,2}}\. {_ITEM})+"
    if c.count:
        return rf"- {_ITEM}" + (rf"(\n- {_ITEM}){{{c.count - 1}}}" if c.count > 1 else "")
    return rf"- {_ITEM}(\n- {_ITEM})+"


class StructuredRow:
    """One row's matcher: its mask each step, the tokens it took, and how to close it."""

    def __init__(self, constraint: JsonOnly | ListFormat, table: TokenTable, hf_tokenizer):
        from llguidance import LLMatcher

        self.constraint, self.table = constraint, table
        if isinstance(constraint, JsonOnly):
            grammar = LLMatcher.grammar_from_json_schema(
                JSON_SCHEMA, defaults={"whitespace_flexible": True}
            )
            self.items = 0
        else:
            grammar = LLMatcher.grammar_from_regex(list_regex(constraint))
            self.items = constraint.count or 2
        self.matcher = LLMatcher(_ll_tokenizer(table, hf_tokenizer), grammar)
        self.failed = self.matcher.is_error()
        self._bitmask = np.zeros((1, (table.size + 31) // 32), dtype=np.int32)

    @property
    def is_list(self) -> bool:
        return isinstance(self.constraint, ListFormat)

    def accepting(self) -> bool:
        return not self.failed and self.matcher.is_accepting()

    def allowed(self) -> torch.Tensor:
        """The grammar's allowed tokens now (bool, vocabulary wide)."""
        from llguidance.numpy import fill_next_token_bitmask

        fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")
        return torch.from_numpy(bits[: self.table.size].astype(bool))

    def consume(self, token: int) -> None:
        if self.failed:
            return
        self.matcher.consume_token(token)
        self.failed = self.matcher.is_error()

    def closer(self) -> list[int] | None:
        """The shortest forced ending the grammar accepts and then is complete, if any:
        one of the usual closers, else (JSON) the shortest fixer and tail."""
        best: list[int] | None = None
        for text in _CLOSERS:
            ids = self.table.encode(text)
            if best is not None and len(ids) >= len(best):
                continue
            if self._completes(ids) is True:
                best = ids
        if best is None and not self.is_list:
            best = self._search_closer()
        return best

    def _completes(self, ids: list[int]) -> bool | None:
        """True: the grammar takes ``ids`` and is then complete; False: it takes them but
        wants more; None: it refuses them."""
        probe = self.matcher.deep_copy()
        if probe.validate_tokens(ids) != len(ids):
            return None
        probe.consume_tokens(ids)
        return probe.is_accepting()

    def _search_closer(self) -> list[int] | None:
        """The shortest head + tail (:data:`_HEADS`, :data:`_TAILS`) that completes it."""
        best: list[int] | None = None
        for head in _HEADS:
            for tail in _TAILS:
                ids = self.table.encode(head + tail)
                if (best is None or len(ids) < len(best)) and self._completes(ids) is True:
                    best = ids
        return best

    def items_done(self, text: str) -> int:
        """List items finished so far (each ends at a line break)."""
        return text.count("\n") if self.is_list else 0

    def newline_tokens(self) -> torch.Tensor:
        """Tokens holding a line break (to end a list item that used its share)."""
        return torch.from_numpy(self.table.mask_of(lambda t: "\n" in t, "newline"))
