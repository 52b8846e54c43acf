"""Token masks for token-local constraints, precomputed once per tokenizer and cached.

A :class:`TokenTable` holds every token's bytes and text. From it come boolean arrays of
the tokens a constraint bans: any token holding an uppercase letter (lowercase rule), an
emoji, a comma... Multi-byte characters split over tokens are handled by their bytes: a
token that *ends* in the first bytes of a banned character is banned too, so a banned
character can never be assembled from pieces (the next token only completes what is left).

Forbidden words span tokens, so :class:`WordBlocker` bans, at each step, just the tokens
that would *complete* a forbidden word (or an inflection) from the row's text so far; the
word itself may begin ("del" is fine) but never end as "delve".
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from persona_sdk.constraints.types import _EMOJI_RANGES, BANNED_CHARACTERS, is_emoji

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'"})
_CASE_PREDICATES: dict[str, Callable[[str], bool]] = {
    "upper": str.isupper,  # banned under a lowercase rule
    "lower": str.islower,  # banned under an uppercase rule
}


def is_word_char(ch: str) -> bool:
    """A regex ``\\w`` character."""
    return ch.isalnum() or ch == "_"


def _split_utf8(raw: bytes) -> tuple[str, bytes]:
    """A token's complete characters, and the first bytes of a character it leaves open.

    Leading continuation bytes finish a character the previous token began; they are
    skipped (that character was judged when its first bytes were).
    """
    start = 0
    while start < len(raw) and 0x80 <= raw[start] < 0xC0:
        start += 1
    body = raw[start:]
    for cut in range(len(body), max(len(body) - 4, -1), -1):
        try:
            return body[:cut].decode("utf-8"), body[cut:]
        except UnicodeDecodeError:
            continue
    return body.decode("utf-8", errors="ignore"), b""


def _code_points(category: str) -> list[int]:
    """Every non-ASCII code point a category bans (multi-byte, so it can be split)."""
    if category == "emoji":
        return [c for low, high in _EMOJI_RANGES for c in range(low, high + 1)]
    if category in _CASE_PREDICATES:
        pred = _CASE_PREDICATES[category]
        return [c for c in range(0x80, 0x20000) if not 0xD800 <= c < 0xE000 and pred(chr(c))]
    return [ord(ch) for ch in BANNED_CHARACTERS[category] if ord(ch) >= 0x80]


def _predicate(category: str) -> Callable[[str], bool]:
    if category == "emoji":
        return is_emoji
    if category in _CASE_PREDICATES:
        return _CASE_PREDICATES[category]
    chars = BANNED_CHARACTERS[category]
    return chars.__contains__


@dataclass
class TokenTable:
    """Every token of one tokenizer: bytes, text, and which ids end a turn."""

    raw: list[bytes]
    stop_ids: list[int]
    encode: Callable[[str], list[int]]
    ll_tokenizer: object = None  # llguidance's view, built on first structured constraint
    _masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _blockers: dict[tuple[str, ...], WordBlocker] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def size(self) -> int:
        return len(self.raw)

    @cached_property
    def texts(self) -> list[str]:
        """Each token's text (complete characters only)."""
        return [_split_utf8(r)[0] for r in self.raw]

    @cached_property
    def folded(self) -> list[str]:
        """Each token's text, case-folded with straight apostrophes (for word matching)."""
        return [t.translate(_APOSTROPHES).lower() for t in self.texts]

    @cached_property
    def sorted_folded(self) -> tuple[list[str], list[int]]:
        """Folded texts in sorted order with their ids, for prefix lookups."""
        pairs = sorted((t, i) for i, t in enumerate(self.folded) if t)
        return [t for t, _ in pairs], [i for _, i in pairs]

    def banned(self, category: str) -> np.ndarray:
        """Tokens holding (or opening) a character of ``category``: a case ("upper" or
        "lower": the letters banned) or a :data:`BANNED_CHARACTERS` key. Cached."""
        with self._lock:
            if category not in self._masks:
                self._masks[category] = self._build(category)
            return self._masks[category]

    def _build(self, category: str) -> np.ndarray:
        pred = _predicate(category)
        prefixes = set()
        for code in _code_points(category):
            encoded = chr(code).encode("utf-8")
            prefixes.update(encoded[:k] for k in range(1, len(encoded)))
        out = np.zeros(self.size, dtype=bool)
        stops = set(self.stop_ids)
        for i, raw in enumerate(self.raw):
            if i in stops:
                continue
            text, tail = _split_utf8(raw)
            out[i] = (tail in prefixes) or any(pred(ch) for ch in text)
        return out

    def word_blocker(self, forms: Sequence[str]) -> WordBlocker:
        """The cached :class:`WordBlocker` of ``forms`` (building one scans every token,
        about 0.15 s: too slow to repeat on every request of a user)."""
        key = tuple(sorted({f for f in forms if f}))
        with self._lock:
            if key not in self._blockers:
                self._blockers[key] = WordBlocker(self, key)
            return self._blockers[key]

    def mask_of(self, predicate: Callable[[str], bool], key: str) -> np.ndarray:
        """Tokens whose text satisfies ``predicate`` (cached under ``key``)."""
        with self._lock:
            if key not in self._masks:
                self._masks[key] = np.array([predicate(t) for t in self.texts], dtype=bool)
            return self._masks[key]

    def case_map(self, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Token pairs (banned, same text in ``mode`` case) for a case rule: the banned
        token's probability moves to its twin, so "The" becomes "the" rather than
        pushing the row to whatever else is left (which made it loop)."""
        key = f"case_map_{mode}"
        with self._lock:
            if key not in self._masks:
                ids = {t: i for i, t in enumerate(self.texts) if t}
                fold = str.lower if mode == "lower" else str.upper
                pairs = [(i, ids.get(fold(t), -1)) for i, t in enumerate(self.texts)]
                pairs = [(i, j) for i, j in pairs if j >= 0 and j != i]
                self._masks[key] = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            pairs = self._masks[key]
        return pairs[:, 0], pairs[:, 1]

    def starting_with(self, prefix: str) -> list[int]:
        """Ids of tokens whose folded text starts with ``prefix``."""
        keys, ids = self.sorted_folded
        lo = bisect.bisect_left(keys, prefix)
        hi = bisect.bisect_left(keys, prefix + "\U0010ffff")
        return ids[lo:hi]


_TABLES: dict[int, tuple[object, TokenTable]] = {}
_TABLES_LOCK = threading.Lock()


def token_table(tokenizer, vocab_size: int, stop_ids: Sequence[int]) -> TokenTable:
    """The cached :class:`TokenTable` of a Hugging Face tokenizer, ``vocab_size`` wide (the
    model's logits may be wider than the tokenizer: extra ids get no bytes)."""
    key = id(tokenizer)
    with _TABLES_LOCK:
        held = _TABLES.get(key)
        if held is not None and held[0] is tokenizer and held[1].size == vocab_size:
            return held[1]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    raw: list[bytes] = []
    for i in range(vocab_size):
        if i in special or i >= len(tokenizer):
            raw.append(b"")
            continue
        raw.append(_token_bytes(tokenizer, i))
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    table = TokenTable(raw, sorted(stop_ids), encode)
    with _TABLES_LOCK:
        _TABLES[key] = (tokenizer, table)
    return table


_BYTE_DECODER: dict[str, int] | None = None


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-character alphabet for bytes, inverted."""
    global _BYTE_DECODER
    if _BYTE_DECODER is None:
        bs = [*range(33, 127), *range(161, 173), *range(174, 256)]
        cs = list(bs)
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        _BYTE_DECODER = {chr(c): b for b, c in zip(bs, cs)}
    return _BYTE_DECODER


def _token_bytes(tokenizer, token_id: int) -> bytes:
    """One token's bytes: exact for byte-level BPE, else its decoded text."""
    piece = tokenizer.convert_ids_to_tokens(token_id)
    decoder = _byte_decoder()
    if isinstance(piece, str) and piece and all(ch in decoder for ch in piece):
        return bytes(decoder[ch] for ch in piece)
    return tokenizer.decode([token_id]).encode("utf-8", errors="ignore")


def inflections(word: str) -> list[str]:
    """The forms a forbidden word also bans (as :func:`counting.word_pattern` matches)."""
    word = " ".join(word.translate(_APOSTROPHES).lower().split())
    forms = [word]
    if word.isalpha() and len(word) >= 3:
        forms += [word + s for s in ("s", "es", "d", "ed", "ing")]
        if word.endswith("e"):
            forms.append(word[:-1] + "ing")
    return forms


class WordBlocker:
    """Bans the tokens that would complete one of ``forms`` as a whole word.

    A form is completed when its last character is written at a word start (the text
    before it ends in a non-word character) and the token ends there or goes on with a
    non-word character. A form that goes on as a longer word ("delver") is only banned
    at the token that would end it exactly, which is conservative: such a row picks a
    different token.
    """

    def __init__(self, table: TokenTable, forms: Sequence[str]):
        self.table = table
        self.forms = sorted({f for f in forms if f})
        self.longest = max((len(f) for f in self.forms), default=0)
        inside, at_start = [], []
        for i, text in enumerate(table.folded):
            for form in self.forms:
                hit = self._occurrence(text, form)
                if hit == "inside":
                    inside.append(i)
                elif hit == "start":
                    at_start.append(i)
        self.inside = np.array(sorted(set(inside)), dtype=np.int64)
        self.at_start = np.array(sorted(set(at_start)), dtype=np.int64)
        self._suffix: dict[str, list[int]] = {}

    @staticmethod
    def _occurrence(text: str, form: str) -> str | None:
        """``"inside"`` when ``text`` completes ``form`` after a non-word char of its own,
        "start" when it does so from its first char, else None."""
        found = None
        at = text.find(form)
        while at >= 0:
            end = at + len(form)
            closes = end == len(text) or not is_word_char(text[end])
            if closes and at > 0 and not is_word_char(text[at - 1]):
                return "inside"
            if closes and at == 0:
                found = "start"
            at = text.find(form, at + 1)
        return found

    def _completing(self, suffix: str) -> list[int]:
        if suffix not in self._suffix:
            self._suffix[suffix] = [
                i for i in self.table.starting_with(suffix)
                if len(self.table.folded[i]) == len(suffix)
                or not is_word_char(self.table.folded[i][len(suffix)])
            ]  # fmt: skip
        return self._suffix[suffix]

    def blocked(self, text: str) -> np.ndarray:
        """Ids of tokens that would complete a form after ``text``."""
        context = text[-(self.longest + 1) :].translate(_APOSTROPHES).lower()
        parts = [self.inside]
        if not context or not is_word_char(context[-1]):
            parts.append(self.at_start)
        for form in self.forms:
            for k in range(1, len(form)):
                head = form[:k]
                if not context.endswith(head):
                    continue
                before = context[: len(context) - k]
                if (not before or not is_word_char(before[-1])) and len(before) < len(context):
                    parts.append(np.array(self._completing(form[k:]), dtype=np.int64))
        return np.unique(np.concatenate(parts)) if len(parts) > 1 else self.inside
