"""Small configuration dataclasses, one per concern (after peft's config style)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


def default_data_dir() -> Path:
    """``$PERSONA_HOME`` if set, else ``~/.persona``."""
    return Path(os.environ.get("PERSONA_HOME") or Path.home() / ".persona").expanduser()


def default_cache_dir() -> Path:
    """``$PERSONA_CACHE`` if set, else ``~/.cache/persona-sdk`` (converted models live here)."""
    return Path(
        os.environ.get("PERSONA_CACHE") or Path.home() / ".cache" / "persona-sdk"
    ).expanduser()


def package_data(*parts: str) -> Path:
    """A file shipped in the package's ``data`` folder (the one place that knows where)."""
    return Path(str(resources.files("persona_sdk").joinpath("data", *parts)))


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class RetrievalConfig:
    """How rules are picked for a request.

    A rule stated without a context applies everywhere, so it skips the similarity floor;
    a rule with a context (or inferred from an edit) must be at least ``min_similarity``
    close to the request. ``lexical`` fuses FTS5 word and concept matches with the dense
    ranking (reciprocal-rank fusion); it is off because on the same-topic benchmark it
    lowers recall (benchmarks/RESULTS.md, bench_retrieval).
    """

    top_k: int = 5
    min_similarity: float = 0.25
    stated_bonus: float = 0.1
    lexical: bool = False


@dataclass
class GuardConfig:
    """The guard inside guided decoding (per guided row, per token).

    ``kl_budget``: the most KL(guided ‖ base), in nats, one token's distribution may move;
    α is shrunk on that token until it fits (0 or ``None``: no cap). ``trip_wire``: once
    the reply so far shows a degenerate sign, the row follows the base model for the rest
    of the reply, and with ``restart`` (unless the text was streamed) decodes it again
    from the prompt, so the reply is the base model's. ``enabled=False`` turns all off.
    """

    enabled: bool = True
    kl_budget: float | None = 0.5
    trip_wire: bool = True
    restart: bool = True
    bisection_steps: int = 12


@dataclass
class GenerationConfig:
    """Defaults for :meth:`persona_sdk.Persona.generate`; each call may override them.

    ``population_default``: serve users the population-default adapter at strength 1
    whatever their evidence (the operator trusts the population prior); off by default,
    so a user's default strength is the evidence share of their own pairs (0 with none).
    ``rerank_fluency`` and ``rerank_relevance`` weigh a best-of candidate's fluency and
    relevance against the user's reward (see :func:`persona_sdk.quality.rank_candidates`).
    """

    max_new_tokens: int = 200
    temperature: float = 0.0
    top_p: float = 1.0
    max_strength: float = 4.0
    max_best_of: int = 16
    best_of_temperature: float = 0.8  # when best_of > 1 and no temperature is given
    best_of_top_p: float = 0.9  # when best_of > 1 and no top_p is given (more fluent, RESULTS)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    stop: tuple[str, ...] = field(default_factory=tuple)
    population_default: bool = False
    guard: GuardConfig = field(default_factory=GuardConfig)
    rerank_fluency: float = 1.0  # best-of: reward per nat of base log-prob per token
    rerank_relevance: float = 1.0  # best-of: reward per unit of cosine to the request


@dataclass
class MemoryConfig:
    """How feedback becomes rules.

    ``infer_with_llm`` adds one short LLM-written phrase per edit to the deterministic
    analysis; ``inference_model`` picks the model (``None``: the Persona's base model).
    """

    duplicate_similarity: float = 0.88
    generalize_below: float = 0.5
    infer_with_llm: bool = False
    inference_model: str | None = None
