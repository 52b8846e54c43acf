"""The fake embedder the unit tests run on: the :class:`Embedder` interface, deterministic,
unit-norm, and similar where texts share words, so retrieval tests keep their meaning."""

from __future__ import annotations

import numpy as np

from persona_sdk.decoding.embedder import Embedder
from tests.helpers import FakeEmbedder


def test_it_is_an_embedder_with_unit_rows_and_a_stable_identity():
    fake = FakeEmbedder()
    assert isinstance(fake, Embedder) and fake.identity == f"{fake.name}:{fake.dim}"
    texts = ["Use a bulleted list.", "", "   ", "🎉🎉", "ünï\x00 \ud800", "x" * 5000]
    vectors = fake.encode(texts)
    assert vectors.shape == (len(texts), fake.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert fake.encode([]).shape == (0, fake.dim)
    np.testing.assert_array_equal(FakeEmbedder().encode(texts), vectors)  # deterministic
    np.testing.assert_array_equal(fake.encode_one(texts[0]), vectors[0])


def test_shared_words_are_close_and_unrelated_texts_are_not():
    fake = FakeEmbedder()
    a, b, c, d = fake.encode(
        ["tips and advice", "Give me tips and advice to sleep better.",
         "emails to my manager", "speak like a pirate"]
    )  # fmt: skip
    assert a @ b > 0.5 and c @ fake.encode_one("Write an email to my manager") > 0.5
    assert max(abs(a @ c), abs(a @ d), abs(c @ d)) < 0.25  # below retrieval's floor
