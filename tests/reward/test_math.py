"""The reward basis mathematics: MAP + Laplace, BALD, LoRe and the baselines, on synthetic
data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from persona_sdk.reward.fit import (
    BasisConfig,
    Pairs,
    ShrunkLogistic,
    feature_scale,
    fit_lore,
    fit_pca,
    fit_shared,
    population_prior,
)
from persona_sdk.reward.posterior import fit_posterior, sigmoid
from persona_sdk.simulation.users import calibrate_beta


def _objective_gradient(g, w, mean, precision):
    p = sigmoid(g @ w)
    return -(g.T @ (1 - p)) + precision @ (w - mean)


def test_map_is_the_optimum_and_laplace_is_the_inverse_hessian():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(16, 8))
    mean, precision = rng.normal(size=8) * 0.1, np.eye(8) * 2.0
    post = fit_posterior(g, mean, precision)
    assert np.abs(_objective_gradient(g, post.mean, mean, precision)).max() < 1e-8
    p = sigmoid(g @ post.mean)
    hessian = (g.T * (p * (1 - p))) @ g + precision
    np.testing.assert_allclose(post.cov, np.linalg.inv(hessian), atol=1e-10)
    assert post.n_pairs == 16


def test_zero_pairs_is_the_prior_and_separable_pairs_stay_finite():
    prior_cov = np.diag([1.0, 4.0])
    post = fit_posterior(np.zeros((0, 2)), np.array([0.5, -1.0]), np.linalg.inv(prior_cov))
    np.testing.assert_allclose(post.mean, [0.5, -1.0])
    np.testing.assert_allclose(post.cov, prior_cov)
    # Perfectly separable data would send the MLE to infinity; the prior keeps it finite.
    separable = fit_posterior(np.ones((50, 2)), np.zeros(2), np.eye(2) * 1e-3)
    assert np.all(np.isfinite(separable.mean)) and separable.mean.sum() > 1


def test_offset_shifts_the_logits():
    rng = np.random.default_rng(1)
    g, offset = rng.normal(size=(30, 3)), rng.normal(size=30)
    post = fit_posterior(g, np.zeros(3), np.eye(3), offset=offset)
    p = sigmoid(g @ post.mean + offset)
    gradient = -(g.T @ (1 - p)) + post.mean
    assert np.abs(gradient).max() < 1e-8


def test_probability_and_information_follow_the_posterior():
    post = fit_posterior(np.zeros((0, 2)), np.array([2.0, 0.0]), np.eye(2))
    sure, unsure = np.array([[3.0, 0.0]]), np.array([[0.0, 3.0]])
    assert post.probability(sure)[0] > 0.9
    assert abs(post.probability(unsure)[0] - 0.5) < 1e-9
    # The unsure question is the informative one; a zero question tells nothing.
    assert post.information(unsure)[0] > post.information(sure)[0] > 0
    assert post.information(np.zeros((1, 2)))[0] == pytest.approx(0.0, abs=1e-9)


def _planted(n_users=60, per_user=200, d=30, k=3, seed=0):
    """Users whose reward directions lie in a planted k-dim subspace of R^d."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, k)))[0]
    weights = rng.normal(size=(n_users, k)) * 3 + np.array([2.0] + [0.0] * (k - 1))
    z = rng.normal(size=(n_users * per_user, d))
    users = np.repeat(np.arange(n_users), per_user)
    margin = np.einsum("ij,ij->i", z @ basis, weights[users])
    wins = rng.random(len(z)) < sigmoid(margin)
    oriented = np.where(wins[:, None], z, -z)
    return Pairs(oriented, users, [f"u{i}" for i in range(n_users)]), basis, weights


def test_lore_recovers_a_planted_subspace_in_canonical_form():
    pairs, planted, _ = _planted()
    basis, weights = fit_lore(pairs, BasisConfig(rank=3, steps=300, seed=0))
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-5)  # orthonormal axes
    assert np.all(weights.mean(0) >= 0)  # signed so the average user likes the + end
    variances = weights.var(0)
    assert np.all(np.diff(variances) <= 1e-9)  # axes ordered by user disagreement
    # Principal angles between the learned and planted subspaces are small.
    cosines = np.linalg.svd(planted.T @ basis, compute_uv=False)
    assert cosines.min() > 0.9


def test_new_user_fit_on_the_basis_beats_the_shared_direction():
    pairs, planted, _ = _planted(seed=1)
    basis, _ = fit_lore(pairs, BasisConfig(rank=3, steps=300))
    mean, cov, _ = population_prior(pairs, basis)
    shared = fit_shared(pairs)
    rng = np.random.default_rng(5)
    truth = rng.normal(size=3) * 3
    z = rng.normal(size=(400, planted.shape[0]))
    wins = rng.random(400) < sigmoid(z @ planted @ truth)
    oriented = np.where(wins[:, None], z, -z)
    test = rng.normal(size=(2000, planted.shape[0]))
    truth_sign = np.sign(test @ planted @ truth)
    post = fit_posterior(oriented[:16] @ basis, mean, np.linalg.inv(cov))
    sdk = np.mean(np.sign(test @ basis @ post.mean) == truth_sign)
    shared_accuracy = np.mean(np.sign(test @ shared) == truth_sign)
    assert sdk > 0.85 and sdk > shared_accuracy + 0.1


def test_pca_basis_is_orthonormal_and_shrunk_fit_matches_the_full_map():
    pairs, _, _ = _planted(n_users=10, per_user=50, d=12, seed=2)
    pca = fit_pca(pairs, 4)
    np.testing.assert_allclose(pca.T @ pca, np.eye(4), atol=1e-5)
    shared = fit_shared(pairs)
    model = ShrunkLogistic(shared, variance=0.5)
    z = pairs.of_user(0)[:8]
    full = fit_posterior(z, shared, np.eye(12) / 0.5).mean
    np.testing.assert_allclose(model.fit(z), full, atol=1e-6)  # the span trick is exact
    np.testing.assert_allclose(model.fit(z[:0]), shared)
    tuned = ShrunkLogistic.tuned(shared, pairs, users=5)
    assert tuned.variance in (1e-4, 1e-3, 1e-2, 1e-1)


def test_feature_scale_is_positive_even_for_constant_features():
    z = np.zeros((10, 3), dtype=np.float32)
    z[:, 0] = np.arange(10)
    scale = feature_scale(z)
    assert np.all(scale > 0) and scale[0] > scale[1]


def test_calibrate_beta_hits_its_target():
    gaps = np.random.default_rng(0).exponential(0.05, size=5000)
    for target in (0.9, 0.925, 0.95):
        beta = calibrate_beta(gaps, target)
        assert np.mean(sigmoid(beta * gaps)) == pytest.approx(target, abs=1e-6)
    with pytest.raises(ValueError):
        calibrate_beta(np.zeros(5), 0.9)
