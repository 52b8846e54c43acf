"""The fast suite's promise, checked: while the model-file guard is armed (``make
test-fast``), opening a file of a real model raises and is recorded, so the test that did
it fails even where the library catches the error; the real loaders trip it too."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.helpers import ModelFileOpened, embedded_model_roots, fast_suite


def _first_file(root: Path) -> Path | None:
    return next((p for p in sorted(root.rglob("*")) if p.is_file()), None)


@pytest.fixture
def armed(model_file_guard):
    was, model_file_guard.armed = model_file_guard.armed, True
    yield model_file_guard
    model_file_guard.armed = was
    model_file_guard.take()  # what this test opened on purpose fails nothing


def test_the_fast_suite_runs_armed(request, model_file_guard):
    assert model_file_guard.armed == fast_suite(request.config)


def test_opening_any_real_model_file_raises_and_is_recorded(armed):
    files = [f for f in map(_first_file, embedded_model_roots()) if f is not None]
    assert files, "no embedded model is installed: nothing to guard"
    for path in files:
        with pytest.raises(ModelFileOpened):
            open(path, "rb")  # noqa: SIM115 - it must not open
        with contextlib.suppress(ModelFileOpened):  # swallowed, as a library might: recorded
            path.read_bytes()
        assert armed.take() == [str(path)] * 2


def test_the_real_loaders_trip_it(armed):
    from persona_sdk.decoding.embedder import Embedder, embedded_embedder_path
    from persona_sdk.decoding.models import load_model

    with pytest.raises(Exception):  # noqa: B017 - the library wraps it in ModelLoadError
        Embedder()
    assert armed.take()[0].startswith(str(embedded_embedder_path().parent))
    with pytest.raises(Exception):  # noqa: B017
        load_model(device="cpu", shared=False, progress=False)
    assert armed.take()


def test_other_files_are_not_guarded(armed, tmp_path, tiny_model_dir):
    (tmp_path / "notes.txt").write_text("fine")
    assert (tiny_model_dir / "config.json").read_text()  # the tiny model is fair game
    assert armed.take() == []


INNER_CONFTEST = """
import sys
import pytest
from tests.helpers import ModelFileGuard, embedded_model_roots

GUARD = ModelFileGuard(embedded_model_roots())

def pytest_configure(config):
    sys.addaudithook(GUARD)
    GUARD.armed = True

def pytest_unconfigure(config):
    GUARD.armed = False  # the hook outlives this inner session: leave it inert

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    GUARD.fail_report(outcome.get_result())
"""
INNER_TESTS = """
from pathlib import Path
from tests.helpers import embedded_model_roots

def model_file():
    return next(p for r in embedded_model_roots() for p in sorted(Path(r).rglob("*"))
                if p.is_file())

def test_swallows_the_error():
    try:
        model_file().read_bytes()
    except Exception:
        pass  # as a library's `except Exception` would

def test_reads_its_own_files(tmp_path):
    (tmp_path / "x").write_text("fine")
    assert (tmp_path / "x").read_text() == "fine"
"""


def test_a_test_that_opens_a_model_file_fails_even_if_the_error_is_swallowed(
    pytester, model_file_guard
):
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)
    was, model_file_guard.armed = model_file_guard.armed, False  # the inner one is on duty
    try:
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    finally:
        model_file_guard.armed = was
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_swallows_the_error*opened real model files*"])
