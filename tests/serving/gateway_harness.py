"""A gateway in front of a real engine for tests: ``persona serve`` (the tiny model, the
basis adapters) spawned as the engine, and ``persona serve --engine openai://…`` spawned
as the gateway over the same data dir. Both child processes use the session's fakes
(hashed embedder, fake basis), installed by :data:`ENTRY` before the CLI runs."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

# `persona …` in a child process, with the test fakes as the SDK's defaults
ENTRY = ("import tests.serving.gateway_harness as harness\nharness.install_fakes()\n"
         "from persona_sdk.cli.main import run\nrun()\n")  # fmt: skip
BASIS_ENV = "PERSONA_TEST_FAKE_BASIS"


def install_fakes() -> None:
    """In a child process: the fake embedder and the fake basis (``$PERSONA_TEST_FAKE_BASIS``)
    are the SDK's defaults, as ``conftest._fake_default_models`` makes them in tests."""
    import persona_sdk.persona as persona_module
    import persona_sdk.reward.rewards as rewards_module
    from tests.helpers import FakeEmbedder

    fake, real = FakeEmbedder(), persona_module.load_embedder
    basis = Path(os.environ[BASIS_ENV])
    persona_module.load_embedder = lambda model=None, device=None: (
        fake if model is None else real(model, device)
    )
    rewards_module.default_basis_path = lambda: basis


@dataclass
class Gateway:
    """What the server tests use of a server (``url``, ``keys``, ``client``), for a
    gateway; ``engine_url`` is the engine behind it."""

    url: str
    keys: dict[str, str]
    engine_url: str
    data: Path
    procs: list = field(default_factory=list)
    gateway: bool = True

    def client(self, key: str | None = "app", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)


def make_keys(data: Path) -> dict[str, str]:
    """One key of every scope, as the server tests' ``served`` fixture has."""
    from persona_sdk.serving.keys import KeyStore

    store = KeyStore(data)
    keys = {scope: store.create(scope)[0] for scope in ("admin", "app", "user:ann", "user:bob")}
    keys["ann"], keys["bob"] = keys.pop("user:ann"), keys.pop("user:bob")
    return keys


@contextlib.contextmanager
def spawned_gateway(root: Path, model: Path, adapters: Path, basis: Path):
    """Spawn the engine and the gateway over ``root/data``; yield a :class:`Gateway`."""
    from persona_sdk.serving import launch

    data = root / "data"
    shutil.copytree(adapters, data / "basis_adapters")
    keys = make_keys(data)
    procs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(launch, "ENTRY", ENTRY)
        patch.setenv(BASIS_ENV, str(basis))
        try:
            proc, engine = launch.spawn(data, ["--model", str(model)],
                                        ["--no-auth", "--threads", "1"], timeout=180)  # fmt: skip
            procs.append(proc)
            upstream = "openai://" + engine.removeprefix("http://") + "/v1"
            proc, url = launch.spawn(data, ["--model", str(model)], ["--engine", upstream],
                                     timeout=180)  # fmt: skip
            procs.append(proc)
            yield Gateway(url, keys, engine, data, procs)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(30)
                except Exception:
                    proc.kill()
