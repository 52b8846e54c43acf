"""Shared fixtures: a tiny random-weight Llama (built from a config, with a tokenizer
trained on the spot) for fast unit tests, and the real embedded embedder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny embedding batches: one thread is as fast, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny chat model: pass it as ``--model`` / ``model=`` like any local path."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_host(tiny_model_dir):
    from persona_sdk.decoding.models import load_model

    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def embedder():
    from persona_sdk.decoding.embedder import load_embedder

    return load_embedder(None, "cpu")


@pytest.fixture
def persona(tmp_path, tiny_host, embedder):
    from persona_sdk import Persona

    p = Persona.open(tmp_path / "data", model=tiny_host, embedder=embedder)
    yield p
    p.close()


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


# -- basis adapters for the tiny model (adapter and guidance tests) ----------------------

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


@pytest.fixture(scope="session")
def world(embedder):
    from persona_sdk.reward.features import EmbeddingStyleFeaturizer
    from persona_sdk.reward.pool import load_pool
    from persona_sdk.simulation.world import RewardWorld

    entries = load_pool()
    prompts = list(dict.fromkeys(e.prompt for e in entries))[:12]
    return RewardWorld.build(
        EmbeddingStyleFeaturizer(embedder), [e for e in entries if e.prompt in prompts]
    )


@pytest.fixture(scope="session")
def built(tmp_path_factory, tiny_model_dir, world, embedder):
    """Basis adapters for the tiny model and the shipped basis: 2 DPO steps per direction."""
    from persona_sdk.adapters.build import build_basis_adapters
    from persona_sdk.adapters.config import BuildConfig, DPOConfig, LoraSpec
    from persona_sdk.decoding.models import load_model
    from persona_sdk.reward.basis import RewardBasis, default_basis_path

    out = tmp_path_factory.mktemp("basis-adapters")
    host = load_model(str(tiny_model_dir), device="cpu", shared=False)
    config = BuildConfig(
        lora=LoraSpec(rank=2, alpha=4.0), dpo=DPOConfig(steps=2, batch_pairs=2, learning_rate=0.05)
    )
    manifest = build_basis_adapters(
        host, RewardBasis.load(default_basis_path()), world, out, config, progress=False
    )
    return out, manifest


@pytest.fixture
def tp(tmp_path, tiny_host, embedder, built):
    """A Persona on the tiny model with its basis adapters."""
    from persona_sdk import Persona

    p = Persona.open(tmp_path / "data", model=tiny_host, embedder=embedder, adapters=built[0])
    yield p
    p.close()


@pytest.fixture
def adapter_cli(tmp_path, tiny_model_dir, built):
    """The CLI on a data dir that holds the tiny model's basis adapters."""
    import shutil

    from test_cli import Cli

    shutil.copytree(built[0], tmp_path / "data" / "basis_adapters")
    return Cli(tmp_path / "data", tiny_model_dir)


def add_pairs(user, pairs=PAIRS):
    for prompt, chosen, rejected in pairs:
        user.add_pair(prompt, chosen=chosen, rejected=rejected)
