"""Bayesian logistic regression for one user: MAP weights, a Laplace posterior, and the
expected information of a question.

Each observed pair contributes ``g = Vᵀ(φ(chosen) − φ(rejected))``: its projection on the
reward basis. The user's weights ``w`` get a Gaussian prior ``N(μ, P⁻¹)`` (the population's
mean and spread), and the MAP estimate minimises

    Σ_i softplus(−g_iᵀ w) + ½ (w − μ)ᵀ P (w − μ).

The objective is strictly convex, so a handful of Newton steps reach the optimum to machine
precision in microseconds for K = 8. At the optimum, the Hessian's inverse is the Laplace
posterior covariance; it drives the uncertainty of predictions and the choice of the next
onboarding question (BALD: the question whose answer the posterior disagrees on most).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Standard normal quantiles: a deterministic stand-in for sampling the posterior logit.
_GRID = np.sqrt(2.0) * np.polynomial.hermite.hermgauss(32)[0]
_GRID_WEIGHTS = np.polynomial.hermite.hermgauss(32)[1] / np.sqrt(np.pi)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


@dataclass(frozen=True)
class Posterior:
    """A Gaussian over one user's weights: ``mean`` (K,), ``cov`` (K, K); ``n_pairs`` seen."""

    mean: np.ndarray
    cov: np.ndarray
    n_pairs: int

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    def logit_moments(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of ``gᵀw`` under the posterior, for rows of ``g``."""
        g = np.atleast_2d(g)
        return g @ self.mean, np.einsum("ij,jk,ik->i", g, self.cov, g)

    def probability(self, g: np.ndarray) -> np.ndarray:
        """``P(first ≻ second)`` per row of ``g``, averaged over the posterior."""
        mu, var = self.logit_moments(g)
        return _expected(sigmoid, mu, var)

    def information(self, g: np.ndarray) -> np.ndarray:
        """Expected information (nats) the answer to each question ``g`` gives about ``w``:
        entropy of the averaged prediction minus the average entropy (BALD)."""
        mu, var = self.logit_moments(g)
        p = _expected(sigmoid, mu, var)
        return _entropy(p) - _expected(lambda f: _entropy(sigmoid(f)), mu, var)


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def _expected(fn, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``E[fn(f)]`` for ``f ~ N(mu, var)`` per row, by Gauss–Hermite quadrature."""
    f = mu[:, None] + np.sqrt(np.clip(var, 0.0, None))[:, None] * _GRID[None, :]
    return fn(f) @ _GRID_WEIGHTS


def fit_posterior(
    g: np.ndarray,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    max_steps: int = 50,
    tol: float = 1e-9,
    offset: np.ndarray | None = None,
) -> Posterior:
    """MAP weights and Laplace covariance from oriented pair projections ``g`` (n, K);
    the logit of pair i is ``g_i·w + offset_i``.

    Newton's method with a backtracking line search; ``prior_precision`` must be positive
    definite, which keeps the Hessian invertible even with zero pairs.
    """
    g = np.asarray(g, dtype=np.float64).reshape(-1, len(prior_mean))
    o = np.zeros(len(g)) if offset is None else np.asarray(offset, dtype=np.float64)
    mu = np.asarray(prior_mean, dtype=np.float64)
    precision = np.asarray(prior_precision, dtype=np.float64)
    w = mu.copy()

    def objective(v: np.ndarray) -> float:
        d = v - mu
        return float(_softplus(-(g @ v + o)).sum() + 0.5 * d @ precision @ d)

    value = objective(w)
    hessian = precision
    for _ in range(max_steps):
        p = sigmoid(g @ w + o)  # P(label agrees)
        grad = -(g.T @ (1.0 - p)) + precision @ (w - mu)
        hessian = (g.T * (p * (1.0 - p))) @ g + precision
        step = np.linalg.solve(hessian, grad)
        decrement = float(grad @ step)
        if decrement < 2 * tol:
            break
        t = 1.0
        while t > 1e-8:
            candidate = w - t * step
            new_value = objective(candidate)
            if new_value <= value - 0.25 * t * decrement:
                break
            t *= 0.5
        w, value = candidate, new_value
    p = sigmoid(g @ w + o)
    hessian = (g.T * (p * (1.0 - p))) @ g + precision
    cov = np.linalg.inv(hessian)
    return Posterior(w, 0.5 * (cov + cov.T), len(g))


def evidence_share(posterior: Posterior, prior_precision: np.ndarray) -> float:
    """How much of what the posterior knows about ``w`` comes from the user's own pairs.

    ``1 − tr(Σ_post P) / K``: MacKay's effective number of well-determined parameters
    (each whitened axis counts ``λ / (λ + 1)``, its data precision over its total) divided
    by K. 0 with no pairs, towards 1 as the pairs pin every axis down; invariant to any
    rotation of the basis.
    """
    if posterior.n_pairs == 0:
        return 0.0
    k = len(posterior.mean)
    share = 1.0 - float(np.trace(posterior.cov @ np.asarray(prior_precision))) / k
    return min(1.0, max(0.0, share))
