"""Shared fixtures (the helpers they build on are in ``helpers.py``).

Unit tests run on a tiny random-weight Llama (built from a config, with a tokenizer trained
on the spot), the hash-based :class:`FakeEmbedder` and a reward basis fit for it at the
start of the session. Unless a test is marked ``integration``, the SDK's *default*
embedder and basis are these fakes too, so the CLI and ``Persona.open(dir)`` use them;
``integration`` tests get the real MiniLM (``real_embedder``) and the shipped basis.

``make test-fast`` (``PERSONA_TEST_FAST=1``, or any ``-m`` that deselects ``integration``)
arms :class:`ModelFileGuard`: a test that opens a file of a real model fails.

``PERSONA_TEST_MODELS=real`` runs the unit tests on the real MiniLM and the shipped basis
instead (slower; to check that the fakes hide nothing).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests must never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import (
    Cli,
    FakeEmbedder,
    ModelFileGuard,
    build_tiny_model,
    build_tiny_tokenizer,
    embedded_model_roots,
    fast_suite,
    fit_test_basis,
    random_lora_dpo,
)

GUARD = ModelFileGuard(embedded_model_roots())
REAL_MODELS = os.environ.get("PERSONA_TEST_MODELS") == "real"
# PERSONA_TEST_DEVICE=cuda runs the tiny model's tests on a GPU (to catch tensors left on
# the CPU); CI and `make test` use the CPU.
TEST_DEVICE = os.environ.get("PERSONA_TEST_DEVICE", "cpu")


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(GUARD)  # hooks cannot be removed; disarmed, it returns at once
    GUARD.armed = fast_suite(config) and not REAL_MODELS
    # Tiny models and small fits: one thread is as fast, and on a shared machine several
    # times faster (two threads contending with other processes mostly wait).
    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that asks for ``real_embedder`` is an integration test, marked or not."""
    for item in items:
        if "real_embedder" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if GUARD.armed:
        terminalreporter.write_line(
            "fast suite: the model-file guard was armed over "
            f"{', '.join(str(r) for r in GUARD.roots)}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test whose setup, call or teardown opened a real model file while the guard was
    armed fails, even if the library caught the guard's error."""
    outcome = yield
    GUARD.fail_report(outcome.get_result())


@pytest.fixture
def model_file_guard():
    """The guard itself, for the test that proves it works."""
    return GUARD


# -- the fake embedder, its featurizer, world and basis --------------------------------------


class FakeModels:
    """The session's fake embedder and what is built on it, each built on first use (with
    ``PERSONA_TEST_MODELS=real``: MiniLM and the shipped basis)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        from persona_sdk.decoding.embedder import load_embedder

        self.embedder = load_embedder(None, "cpu") if REAL_MODELS else FakeEmbedder()
        self._tmp = tmp_path_factory

    @functools.cached_property
    def featurizer(self):
        from persona_sdk.reward.features import EmbeddingStyleFeaturizer

        return EmbeddingStyleFeaturizer(self.embedder)

    @functools.cached_property
    def world(self):
        """The replies to the shipped pool's first 12 prompts, featurized by the fake."""
        from persona_sdk.reward.pool import load_pool
        from persona_sdk.simulation.world import RewardWorld

        entries = load_pool()
        prompts = list(dict.fromkeys(e.prompt for e in entries))[:12]
        return RewardWorld.build(self.featurizer, [e for e in entries if e.prompt in prompts])

    @functools.cached_property
    def basis(self):
        from persona_sdk.reward.basis import RewardBasis, default_basis_path

        if REAL_MODELS:
            return RewardBasis.load(default_basis_path())
        return fit_test_basis(self.world, self.featurizer)

    @functools.cached_property
    def basis_file(self) -> Path:
        return self.basis.save(self._tmp.mktemp("fake-basis") / "basis.npz")


@pytest.fixture(scope="session")
def fakes(tmp_path_factory) -> FakeModels:
    return FakeModels(tmp_path_factory)


@pytest.fixture(scope="session")
def embedder(fakes):
    """The fake embedder (``real_embedder`` is MiniLM, for integration tests)."""
    return fakes.embedder


@pytest.fixture(scope="session")
def world(fakes):
    return fakes.world


@pytest.fixture(scope="session")
def basis(fakes):
    """A rank-8 basis fit for the fake embedder's featurizer."""
    return fakes.basis


@pytest.fixture(scope="session", autouse=True)
def _fake_default_models(fakes):
    """The SDK's default embedder and basis are the fakes (see ``_real_models``)."""
    if REAL_MODELS:
        yield
        return
    import persona_sdk.persona as persona_module
    import persona_sdk.reward.rewards as rewards_module

    real_load = persona_module.load_embedder

    def load_embedder(model=None, device=None):
        return fakes.embedder if model is None else real_load(model, device)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(persona_module, "load_embedder", load_embedder)
        patch.setattr(rewards_module, "default_basis_path", lambda: fakes.basis_file)
        yield


@pytest.fixture(autouse=True)
def _real_models(request, monkeypatch):
    """Integration tests get the real defaults back."""
    if request.node.get_closest_marker("integration"):
        import persona_sdk.persona as persona_module
        import persona_sdk.reward.rewards as rewards_module
        from persona_sdk.decoding.embedder import load_embedder
        from persona_sdk.reward.basis import default_basis_path

        monkeypatch.setattr(persona_module, "load_embedder", load_embedder)
        monkeypatch.setattr(rewards_module, "default_basis_path", default_basis_path)


@pytest.fixture(scope="session")
def real_embedder():
    """The embedded all-MiniLM-L6-v2 (integration tests only)."""
    from persona_sdk.decoding.embedder import load_embedder

    return load_embedder(None, "cpu")


# -- the tiny model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread (the whole session has one since pytest_configure; kept for the
    modules that ask for it explicitly)."""
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

    return load_model(str(tiny_model_dir), device=TEST_DEVICE)


@pytest.fixture
def persona(tmp_path, tiny_host, embedder, basis):
    from persona_sdk import Persona

    p = Persona.open(tmp_path / "data", model=tiny_host, embedder=embedder, basis=basis)
    yield p
    p.close()


# -- basis adapters for the tiny model (adapter and guidance tests) ----------------------


@pytest.fixture(scope="session")
def built(tmp_path_factory, tiny_model_dir, world, basis):
    """Basis adapters for the tiny model and the fake basis, built by the real build code
    with the DPO step swapped for seeded random LoRA weights (no training)."""
    from persona_sdk.adapters import build
    from persona_sdk.adapters.config import BuildConfig, DPOConfig, LoraSpec
    from persona_sdk.decoding.models import load_model

    out = tmp_path_factory.mktemp("basis-adapters")
    host = load_model(str(tiny_model_dir), device=TEST_DEVICE, shared=False)
    config = BuildConfig(
        lora=LoraSpec(rank=2, alpha=4.0), dpo=DPOConfig(steps=2, batch_pairs=2, learning_rate=0.05)
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "train_dpo", random_lora_dpo)
        manifest = build.build_basis_adapters(host, basis, world, out, config, progress=False)
    assert all("untrained" in d["stats"] for d in manifest.directions.values()), (
        "build_basis_adapters no longer calls build.train_dpo: the fixture would train"
    )
    return out, manifest


@pytest.fixture
def tp(tmp_path, tiny_host, embedder, basis, built):
    """A Persona on the tiny model with its basis adapters."""
    from persona_sdk import Persona

    p = Persona.open(
        tmp_path / "data", model=tiny_host, embedder=embedder, basis=basis, adapters=built[0]
    )
    yield p
    p.close()


@pytest.fixture
def cli(tmp_path, tiny_model_dir) -> Cli:
    """The CLI on an empty data dir and the tiny model."""
    return Cli(tmp_path / "data", tiny_model_dir)


@pytest.fixture
def adapter_cli(tmp_path, tiny_model_dir, built) -> Cli:
    """The CLI on a data dir that holds the tiny model's basis adapters."""
    shutil.copytree(built[0], tmp_path / "data" / "basis_adapters")
    return Cli(tmp_path / "data", tiny_model_dir)
