"""Token masks: a banned character can never be written, whole or in byte pieces, and a
forbidden word is blocked at the token that would complete it."""

from __future__ import annotations

import numpy as np
import pytest

from persona_sdk.constraints.masks import TokenTable, WordBlocker, inflections, token_table


def table_of(pieces: list[bytes]) -> TokenTable:
    return TokenTable(pieces, stop_ids=[0], encode=lambda text: [])


@pytest.fixture(scope="module")
def synthetic() -> TokenTable:
    return table_of([
        b"", b"the", b"The", b" THE", b",", b"a,b", b"\xf0\x9f", b"\x98\x80", b"\xf0\x9f\x98\x80",
        b"\xe2\x80\x94", b"!", b"\xe2", b" del", b"ve", b"ved", b"vet", b" delve", b"del",
        b" delves!", b"x", b"\xc3", b"\x89", b"\xc3\x89t\xc3\xa9",
    ])  # fmt: skip


def banned_texts(table: TokenTable, category: str) -> set[bytes]:
    return {table.raw[i] for i in np.flatnonzero(table.banned(category))}


def test_case_masks_ban_every_token_with_a_wrong_case_letter(synthetic):
    upper = banned_texts(synthetic, "upper")
    assert {b"The", b" THE", b"\xc3\x89t\xc3\xa9"} <= upper
    assert b"\xc3" in upper  # could open "É"; "\x89" alone completes whatever was opened
    assert b"the" not in upper and b"x" not in upper
    assert b"the" in banned_texts(synthetic, "lower")


def test_emoji_are_banned_whole_and_as_opening_bytes(synthetic):
    emoji = banned_texts(synthetic, "emoji")
    assert {b"\xf0\x9f", b"\xf0\x9f\x98\x80"} <= emoji
    assert b"\xe2" in emoji  # the first byte of ☀..➿ as well as of an em dash
    assert b"\xe2\x80\x94" not in emoji and b"the" not in emoji


def test_character_classes(synthetic):
    assert banned_texts(synthetic, "comma") == {b",", b"a,b"}
    assert banned_texts(synthetic, "exclamation") == {b"!", b" delves!", b"\xe2"}  # ‼ opens so
    assert banned_texts(synthetic, "em_dash") == {b"\xe2\x80\x94", b"\xe2"}
    assert not synthetic.banned("comma")[0]  # end of turn is never banned


def test_word_blocker_blocks_the_completing_token_only(synthetic):
    blocker = WordBlocker(synthetic, inflections("delve"))
    texts = lambda ids: {synthetic.raw[i] for i in ids}  # noqa: E731
    assert texts(blocker.blocked("We will")) == {b" delve", b" delves!"}
    assert {b"ve", b"ved"} <= texts(blocker.blocked("We will del"))
    assert b"vet" not in texts(blocker.blocked("We will del"))  # "delvet" is another word
    assert b"ve" not in texts(blocker.blocked("We will model"))  # not at a word start
    assert b"del" not in texts(blocker.blocked("We will"))  # a word may begin...
    assert texts(blocker.blocked("")) >= {b" delve"}


def test_inflections_follow_the_verifier():
    assert inflections("Delve") == ["delve", "delves", "delvees", "delved", "delveed",
                                    "delveing", "delving"]  # fmt: skip
    assert inflections("at all") == ["at all"]


def test_the_real_tokenizer_table_is_cached(tiny_host):
    vocab = tiny_host.model.get_output_embeddings().weight.shape[0]
    a = token_table(tiny_host.tokenizer, vocab, tiny_host.stop_token_ids)
    b = token_table(tiny_host.tokenizer, vocab, tiny_host.stop_token_ids)
    assert a is b and a.size == vocab
    assert a.banned("upper") is b.banned("upper")
    for i in np.flatnonzero(~a.banned("upper")):
        assert not any(ch.isupper() for ch in a.texts[i])
