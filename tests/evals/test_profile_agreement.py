"""The minimal-pair ceiling of ``benchmarks/profile_agreement.py`` (issue 23): the exact
majority probability matches the simulator's own Bradley–Terry draws."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from persona_sdk.reward.posterior import sigmoid
from persona_sdk.simulation.world import bt_labels

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "profile_agreement.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("profile_agreement", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_majority_agreement_edge_cases(bench):
    p = np.array([0.0, 0.3, 0.5, 0.8, 1.0])
    assert np.allclose(bench.majority_agreement(p, 1), p)
    assert np.allclose(bench.majority_agreement(p, 2), p)  # a tie is a coin: p² + p(1 − p)
    assert np.allclose(bench.majority_agreement(0.8, 3), 0.8**3 + 3 * 0.8**2 * 0.2)
    assert np.allclose(bench.majority_agreement(p, None), [0, 0, 0.5, 1, 1])
    assert np.allclose(bench.majority_agreement(0.5, np.array([3, 4, 16])), 0.5)
    mixed = bench.majority_agreement(np.array([0.8, 0.8]), np.array([1, 3]))
    assert np.allclose(mixed, [0.8, 0.896])


def test_majority_agreement_matches_bt_draws(bench):
    rng = np.random.default_rng(0)
    beta, gap, k, draws = 40.0, 0.02, 5, 40_000
    labels = bt_labels(np.full((draws, k), gap), beta, rng)
    sampled = np.mean(labels.sum(1) > k / 2)
    exact = bench.majority_agreement(sigmoid(beta * gap), k)[0]
    assert sampled == pytest.approx(exact, abs=0.01)


def test_ceiling_follows_the_true_sign(bench):
    beta = np.log(1.5) / 0.03  # a full-contrast answer is right with P = 0.6
    up = bench.ceiling(0.7, 0.03, 3, 16, beta)
    down = bench.ceiling(0.7, -0.03, 3, 16, beta)
    assert set(up) == set(bench.CEILINGS)
    assert up["ceiling_k"] == pytest.approx(0.784)
    assert down["ceiling_k"] == pytest.approx(1 - 0.784)
    assert up["ceiling_full_k"] == down["ceiling_full_k"] == pytest.approx(0.648)
    assert up["ceiling_pairs"] > up["ceiling_k"] and up["ceiling_infinite"] == 1.0
    assert up["ceiling_full_pairs"] > up["ceiling_full_k"]
    assert bench.ceiling(0.7, 0.0, 3, 16, beta) == dict.fromkeys(bench.CEILINGS, 0.0)
