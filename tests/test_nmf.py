"""Torch NMF (methods/nmf.py) against scikit-learn's multiplicative-update NMF and hand-applied rules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from benchmark.methods.nmf import nmf


def make_matrix(m=120, c=30, k=4, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.random((m, k)) ** 2
    H = rng.random((k, c)) ** 2
    V = W @ H + 0.05 * rng.random((m, c))
    V[rng.random((m, c)) < 0.1] = 0.0  # exact zeros, as ReLU features have
    return V


def sklearn_mu(V, W0, H0, iterations):
    model = NMF(n_components=W0.shape[1], init="custom", solver="mu", beta_loss="frobenius", max_iter=iterations,
                tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W = model.fit_transform(V, W=W0.copy(), H=H0.copy())
    return W, model.components_


def test_same_trajectory_as_sklearn_mu():
    """Same matrix, same initial factors, float64: sklearn run for j = 1..J iterations gives the factors after
    j updates; our single run traces the objective after every update. They must agree at every step."""
    V = make_matrix()
    k = 4
    rng = np.random.default_rng(1)
    scale = math.sqrt(V.mean() / k)
    W0 = np.abs(rng.standard_normal((V.shape[0], k))) * scale
    H0 = np.abs(rng.standard_normal((k, V.shape[1]))) * scale
    J = 25
    W, H, history = nmf(torch.from_numpy(V), k, max_iter=J, tol=0.0, W0=torch.from_numpy(W0),
                        H0=torch.from_numpy(H0), trace=True, chunk_rows=7)
    assert history.n_iter == J and len(history.trace) == J
    ours = np.array(history.trace)
    theirs = []
    for j in range(1, J + 1):
        Wj, Hj = sklearn_mu(V, W0, H0, j)
        theirs.append(np.linalg.norm(V - Wj @ Hj))
    np.testing.assert_allclose(ours, np.array(theirs), rtol=1e-9)
    np.testing.assert_allclose(W.numpy(), Wj, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(H.numpy(), Hj, rtol=1e-7, atol=1e-12)
    assert history.errors[0][1] == pytest.approx(np.linalg.norm(V - W0 @ H0))
    assert np.all(np.diff(ours) <= 1e-12)  # multiplicative updates never increase the objective


def test_stopping_rule_checks_after_1_11_21_updates():
    V = torch.from_numpy(make_matrix(seed=3)).float()
    tol = 2e-3
    _, _, full = nmf(V, 3, max_iter=200, tol=0.0, seed=5, trace=True)
    W, H, history = nmf(V, 3, max_iter=200, tol=tol, seed=5)
    # Apply DFF's rule by hand to the traced objective.
    e_init = full.errors[0][1]
    previous, expected_stop = e_init, None
    for n in range(200):
        if n % 10 == 0:
            e = full.trace[n]
            if (previous - e) / e_init < tol:
                expected_stop = n + 1
                break
            previous = e
    assert expected_stop is not None and expected_stop > 1
    assert history.converged and history.n_iter == expected_stop
    assert [it for it, _ in history.errors] == [0] + list(range(1, expected_stop + 1, 10))
    np.testing.assert_allclose([e for _, e in history.errors[1:]], [full.trace[it - 1] for it, _ in history.errors[1:]],
                               rtol=1e-5)


def test_initialisation_is_seeded_and_scaled():
    V = torch.from_numpy(make_matrix()).float()
    W1, H1, _ = nmf(V, 4, max_iter=0, seed=7)
    W2, H2, _ = nmf(V, 4, max_iter=0, seed=7)
    W3, _, _ = nmf(V, 4, max_iter=0, seed=8)
    assert torch.equal(W1, W2) and torch.equal(H1, H2) and not torch.equal(W1, W3)
    # |N(0,1)| * sqrt(mean(V)/k): mean of a half-normal is sqrt(2/pi).
    scale = math.sqrt(float(V.mean()) / 4)
    assert float(torch.cat([W1.flatten(), H1.flatten()]).mean()) == pytest.approx(scale * math.sqrt(2 / math.pi), rel=0.1)
    assert (W1 >= 0).all() and (H1 >= 0).all()


def test_zeros_stay_zero_and_zero_denominators_do_not_produce_nan():
    V = torch.from_numpy(make_matrix()).float()
    V[:, 0] = 0.0  # a channel that is never active: W^T V is 0 there, so H[:, 0] -> 0 and stays 0
    W0 = torch.rand(V.shape[0], 3) + 0.1
    W0[5] = 0.0  # a row of W at exactly 0: its denominator W H H^T is 0 -> eps, and the row stays 0
    W, H, _ = nmf(V, 3, max_iter=15, tol=0.0, W0=W0, H0=torch.rand(3, V.shape[1]) + 0.1)
    assert torch.isfinite(W).all() and torch.isfinite(H).all()
    assert (W[5] == 0).all() and (H[:, 0] == 0).all()


def test_fixed_H_projects_new_rows():
    rng = np.random.default_rng(4)
    H_true = torch.from_numpy(rng.random((3, 20))).float()
    W_true = torch.from_numpy(rng.random((50, 3))).float()
    V = W_true @ H_true
    W, H, history = nmf(V, 3, max_iter=300, tol=0.0, H=H_true, seed=0, trace=True)
    assert torch.equal(H, H_true)
    assert history.trace[-1] < 0.02 * history.errors[0][1]
    torch.testing.assert_close(W, W_true, rtol=0.05, atol=0.05)


def test_chunking_does_not_change_the_result():
    V = torch.from_numpy(make_matrix(m=97)).float()
    a = nmf(V, 4, max_iter=30, tol=1e-4, seed=2)
    b = nmf(V, 4, max_iter=30, tol=1e-4, seed=2, chunk_rows=10)
    torch.testing.assert_close(a[0], b[0])
    assert a[2].n_iter == b[2].n_iter
    np.testing.assert_allclose([e for _, e in a[2].errors], [e for _, e in b[2].errors], rtol=1e-6)


def test_rejects_negative_input():
    with pytest.raises(ValueError, match="non-negative"):
        nmf(torch.tensor([[1.0, -1.0]]), 1)
