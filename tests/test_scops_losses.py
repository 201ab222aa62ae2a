"""SCOPS losses (docs/training.md, "SCOPS") against literal float64 loop implementations written here."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from benchmark.methods.scops import losses


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _naive_centers_and_variances(probs: np.ndarray):
    """Loops over b, k, pixels with x = col/W*2-1, y = row/H*2-1 and the +1e-3 pdf."""
    b_, k_, h_, w_ = probs.shape
    centers = np.zeros((b_, k_, 2))
    variances = np.zeros((b_, k_))
    for b in range(b_):
        for k in range(k_):
            p = probs[b, k] + 1e-3
            total = sum(p[i, j] for i in range(h_) for j in range(w_))
            cx = sum(p[i, j] / total * (j / w_ * 2 - 1) for i in range(h_) for j in range(w_))
            cy = sum(p[i, j] / total * (i / h_ * 2 - 1) for i in range(h_) for j in range(w_))
            v = sum(p[i, j] / total * ((j / w_ * 2 - 1 - cx) ** 2 + (i / h_ * 2 - 1 - cy) ** 2)
                    for i in range(h_) for j in range(w_))
            centers[b, k] = (cx, cy)
            variances[b, k] = v
    return centers, variances


@pytest.fixture
def logits():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(3, 4, 7, 9, generator=gen, dtype=torch.float64) * 2  # B=3, K=3 parts + background


def test_coordinates_are_scops_convention():
    x, y = losses.coordinate_maps(2, 4, dtype=torch.float64)
    assert x[0].tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert y[:, 0].tolist() == [-1.0, 0.0]


def test_concentration_matches_loops_and_quirk_divides_by_b_twice(logits):
    probs = _softmax(logits.numpy(), 1)[:, 1:]
    _, variances = _naive_centers_and_variances(probs)
    b = logits.shape[0]
    quirk = losses.concentration_loss(logits)  # paper default: / B / B
    fixed = losses.concentration_loss(logits, divide_by_batch_twice=False)
    assert quirk.item() == pytest.approx(variances.sum() / b / b, rel=1e-10)
    assert fixed.item() == pytest.approx(variances.sum() / b, rel=1e-10)
    assert fixed.item() == pytest.approx(quirk.item() * b, rel=1e-12)


def test_part_centers_match_loops(logits):
    probs = _softmax(logits.numpy(), 1)[:, 1:]
    centers, _ = _naive_centers_and_variances(probs)
    got = losses.part_centers(torch.from_numpy(probs))
    np.testing.assert_allclose(got.numpy(), centers, rtol=1e-10, atol=1e-12)


def test_equivariance_kl_is_mean_over_all_channels_and_pixels(logits):
    gen = torch.Generator().manual_seed(1)
    target_logits = torch.randn(logits.shape, generator=gen, dtype=torch.float64)
    p = _softmax(logits.numpy(), 1)
    q = _softmax(target_logits.numpy(), 1)
    total, count = 0.0, 0
    for idx in np.ndindex(*p.shape):  # every b, channel (background included), pixel
        total += q[idx] * (math.log(q[idx]) - math.log(p[idx]))
        count += 1
    got = losses.equivariance_kl_loss(logits, target_logits)
    assert got.item() == pytest.approx(total / count, rel=1e-10)
    # the same as torch's nn.KLDivLoss() default reduction
    with warnings.catch_warnings():  # torch warns about the meaning of its default "mean"
        warnings.simplefilter("ignore")
        ref = torch.nn.KLDivLoss()(torch.log_softmax(logits, 1), torch.softmax(target_logits, 1))
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)


def test_landmark_equivariance_matches_loops_and_flows_into_both(logits):
    gen = torch.Generator().manual_seed(2)
    other = torch.randn(logits.shape, generator=gen, dtype=torch.float64)
    c1, _ = _naive_centers_and_variances(_softmax(logits.numpy(), 1)[:, 1:])
    c2, _ = _naive_centers_and_variances(_softmax(other.numpy(), 1)[:, 1:])
    expected = ((c1 - c2) ** 2).mean()
    a = logits.clone().requires_grad_(True)
    b = other.clone().requires_grad_(True)
    got = losses.landmark_equivariance_loss(a, b)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    got.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0  # centres are not detached


def test_semantic_consistency_matches_loops(logits):
    gen = torch.Generator().manual_seed(3)
    b_, c1, h_, w_ = logits.shape
    k_, c_ = c1 - 1, 5
    feats = torch.rand(b_, c_, h_, w_, generator=gen, dtype=torch.float64)
    weight = torch.randn(k_, c_, generator=gen, dtype=torch.float64)
    probs = _softmax(logits.numpy(), 1)
    w = np.maximum(weight.numpy(), 0)  # ReLU basis
    total = 0.0
    for b in range(b_):
        for i in range(h_):
            for j in range(w_):
                for c in range(c_):
                    recon = sum(probs[b, 1 + k, i, j] * w[k, c] for k in range(k_))  # channels 1..K only
                    total += (recon - feats[b, c, i, j].item()) ** 2
    got = losses.semantic_consistency_loss(logits, feats, losses.part_basis(weight))
    assert got.item() == pytest.approx(total / (b_ * h_ * w_ * c_), rel=1e-10)


def test_orthonormality_matches_loops():
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    w = np.maximum(weight.numpy(), 0)
    unit = [w[k] / math.sqrt(sum(v * v for v in w[k]) + 1e-6) for k in range(4)]
    total = 0.0
    for a in range(4):
        for b in range(4):
            total += (float(np.dot(unit[a], unit[b])) - (1.0 if a == b else 0.0)) ** 2
    got = losses.orthonormality_loss(losses.part_basis(weight))
    assert got.item() == pytest.approx(total, rel=1e-10)
    # an orthonormal basis has (almost) zero loss
    assert losses.orthonormality_loss(torch.eye(3, dtype=torch.float64) * 7).item() < 1e-12


def test_semantic_consistency_rejects_mismatched_features(logits):
    with pytest.raises(ValueError):
        losses.semantic_consistency_loss(logits, torch.zeros(3, 5, 4, 4, dtype=torch.float64),
                                         torch.zeros(3, 5, dtype=torch.float64))
