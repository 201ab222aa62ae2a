"""Landmark regression against an independent scikit-learn pipeline; part centres by hand; the metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler

from benchmark.core.errors import UserError
from benchmark.core.registry import METRICS
from benchmark.core.types import Batch, PartMaps
from benchmark.metrics.landmarks import PROTOCOLS, normalise_points, part_centres, regression_error


def _sk_predict(x_fit, y_fit, x_eval):
    sx, sy = StandardScaler().fit(x_fit), StandardScaler().fit(y_fit)
    reg = LinearRegression(fit_intercept=False).fit(sx.transform(x_fit), sy.transform(y_fit))
    return sy.inverse_transform(reg.predict(sx.transform(x_eval)))


def _data(rng, n_fit, n_eval, k, p):
    fit_gt, eval_gt = rng.normal(size=(n_fit, p, 2)), rng.normal(size=(n_eval, p, 2))
    mix = rng.normal(size=(2 * p, 2 * k))
    fit_pred = (fit_gt.reshape(n_fit, -1) @ mix).reshape(n_fit, k, 2) + rng.normal(scale=0.5, size=(n_fit, k, 2))
    eval_pred = (eval_gt.reshape(n_eval, -1) @ mix).reshape(n_eval, k, 2) + rng.normal(scale=0.5, size=(n_eval, k, 2))
    return fit_pred, fit_gt, eval_pred, eval_gt


def test_mafl_iod_matches_sklearn():
    rng = np.random.default_rng(0)
    fp, fg, ep, eg = _data(rng, 80, 30, k=4, p=5)
    pred = _sk_predict(fp.reshape(80, -1), fg.reshape(80, -1), ep.reshape(30, -1)).reshape(30, 5, 2)
    iod = np.linalg.norm(eg[:, 0] - eg[:, 1], axis=-1)
    expected = np.mean([np.mean([np.linalg.norm(pred[i, j] - eg[i, j]) for j in range(5)]) / iod[i] for i in range(30)])
    assert regression_error(fp, fg, ep, eg, protocol="mafl-iod") == pytest.approx(expected, abs=1e-9)
    norm = rng.uniform(0.5, 2, size=30)
    expected = np.mean(np.linalg.norm(pred - eg, axis=-1).mean(axis=1) / norm)
    got = regression_error(torch.from_numpy(fp), fg, ep, torch.from_numpy(eg), protocol="mafl-iod", normalizer=norm)
    assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("protocol", ["kanazawa-crop", "cub-bbox"])
def test_per_keypoint_matches_sklearn(protocol):
    rng = np.random.default_rng(1)
    n_fit, n_eval, k, p = 60, 25, 4, 6
    fp, fg, ep, eg = _data(rng, n_fit, n_eval, k, p)
    fv, ev = rng.random((n_fit, p)) < 0.7, rng.random((n_eval, p)) < 0.7
    fp[:, 1] = 3.0  # a constant centre coordinate (scaler must leave it at scale 1, as sklearn)
    ep[:, 1] = 3.0
    for norm in (None, 0.37, rng.uniform(0.5, 2, size=n_eval)):
        total, pairs = 0.0, 0
        for j in range(p):
            pred = _sk_predict(fp[fv[:, j]].reshape(-1, 2 * k), fg[fv[:, j], j], ep[ev[:, j]].reshape(-1, 2 * k))
            d = np.linalg.norm(pred - eg[ev[:, j], j], axis=-1)
            if norm is not None:
                d = d / (norm[ev[:, j]] if np.ndim(norm) else norm)
            total, pairs = total + d.sum(), pairs + ev[:, j].sum()
        got = regression_error(fp, fg, ep, eg, protocol=protocol, fit_visible=fv, eval_visible=ev, normalizer=norm)
        assert got == pytest.approx(total / pairs, abs=1e-9)


def test_standardised_no_intercept_equals_ols_with_intercept():
    rng = np.random.default_rng(2)
    fp, fg, ep, eg = _data(rng, 50, 20, k=3, p=4)
    x_fit, y_fit, x_eval = fp.reshape(50, -1), fg.reshape(50, -1), ep.reshape(20, -1)
    design = np.hstack([x_fit, np.ones((50, 1))])
    coef, *_ = np.linalg.lstsq(design, y_fit, rcond=None)
    ols = (np.hstack([x_eval, np.ones((20, 1))]) @ coef).reshape(20, 4, 2)
    expected = (np.linalg.norm(ols - eg, axis=-1) / np.linalg.norm(eg[:, 0] - eg[:, 1], axis=-1)[:, None]).mean()
    assert regression_error(fp, fg, ep, eg, protocol="mafl-iod") == pytest.approx(expected, abs=1e-9)


def test_affine_centres_give_zero_error():
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 1, size=(40, 5, 2))
    a = rng.normal(size=(10, 5 * 2 + 0))  # centres = affine function of the landmarks
    centres = (gt.reshape(40, -1) @ a.T + rng.normal(size=10)).reshape(40, 5, 2)
    for protocol in PROTOCOLS:
        err = regression_error(centres[:30], gt[:30], centres[30:], gt[30:], protocol=protocol)
        assert err < 1e-9


def test_regression_errors():
    rng = np.random.default_rng(4)
    fp, fg, ep, eg = _data(rng, 20, 5, k=3, p=5)
    eg[3, 1] = eg[3, 0]
    with pytest.raises(ValueError, match="eval image 3"):
        regression_error(fp, fg, ep, eg, protocol="mafl-iod")
    fv = np.ones((20, 5), dtype=bool)
    fv[:, 2] = False
    with pytest.raises(ValueError, match="keypoint 2"):
        regression_error(fp, fg, ep, eg, protocol="cub-bbox", fit_visible=fv)
    ev = np.ones((5, 5), dtype=bool)
    ev[:, 2] = False  # never visible anywhere: simply not evaluated
    regression_error(fp, fg, ep, eg, protocol="cub-bbox", fit_visible=fv, eval_visible=ev)
    with pytest.raises(UserError, match="landmark protocol"):
        regression_error(fp, fg, ep, eg, protocol="iod")


def _loop_centres(probs, one_based, clamp, eps):
    n, k, h, w = probs.shape
    out = np.zeros((n, k, 2))
    for i in range(n):
        for j in range(k):
            mass = probs[i, j].sum()
            denom = max(mass, 1.0) if clamp else mass + eps
            rows, cols = np.mgrid[0:h, 0:w] + (1 if one_based else 0)
            out[i, j] = (probs[i, j] * cols).sum() / denom, (probs[i, j] * rows).sum() / denom
    return out


def test_part_centres_by_hand():
    torch.manual_seed(0)
    n, k, h, w = 2, 3, 9, 12
    logits = torch.randn(n, k, h, w, dtype=torch.float64) * 3
    masks = (torch.rand(n, h, w) < 0.2).float()
    maps = PartMaps(logits, image_size=(h, w))
    probs = (logits.softmax(dim=1) * masks[:, None]).numpy()
    got = part_centres(maps, masks, protocol="kanazawa-crop").numpy()
    np.testing.assert_allclose(got, _loop_centres(probs, False, True, 0), atol=1e-12)
    got = part_centres(maps, masks, protocol="cub-bbox").numpy()
    np.testing.assert_allclose(got, _loop_centres(probs, True, False, 1e-8), atol=1e-12)
    got = part_centres(maps, masks, protocol="mafl-iod").numpy()
    np.testing.assert_allclose(got, _loop_centres(probs, False, False, 0), atol=1e-9)
    # SCOPS-style maps: channels 1..K of the (K+1)-way softmax, no mask
    bg = PartMaps(torch.randn(n, k + 1, h, w, dtype=torch.float64), image_size=(h, w), has_background=True)
    got = part_centres(bg, protocol="cub-bbox").numpy()
    np.testing.assert_allclose(got, _loop_centres(bg.scores.softmax(dim=1)[:, 1:].numpy(), True, False, 1e-8), atol=1e-12)
    # a single pixel with mass 0.5 (< 1 pixel) is shrunk towards the origin by the kanazawa clamp
    probs = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    probs[0, 0, 2, 3] = 0.5
    one = PartMaps(probs, image_size=(4, 4), kind="probs")
    assert part_centres(one, protocol="kanazawa-crop")[0, 0].tolist() == [1.5, 1.0]
    assert part_centres(one, protocol="mafl-iod")[0, 0].tolist() == pytest.approx([3.0, 2.0])


def test_normalise_points():
    pts = torch.tensor([[[10.0, 20.0], [30.0, 40.0]]])
    assert torch.equal(normalise_points(pts, "mafl-iod", image_size=(64, 64)), pts)
    assert torch.allclose(normalise_points(pts, "kanazawa-crop", image_size=(64, 64)), pts / 64)
    bbox = torch.tensor([[5.0, 10.0, 20.0, 40.0]])
    assert torch.allclose(normalise_points(pts, "cub-bbox", image_size=(64, 80), bboxes=bbox),
                          torch.tensor([[[0.25, 0.25], [1.25, 0.75]]]))
    np.testing.assert_allclose(normalise_points(pts.numpy(), "cub-bbox", image_size=(64, 80), bboxes=bbox.numpy()),
                               [[[0.25, 0.25], [1.25, 0.75]]])
    with pytest.raises(ValueError, match="square"):
        normalise_points(pts, "kanazawa-crop", image_size=(64, 80))


def _landmark_batch(seed, n, p, h, w):
    """Keypoints at pixel centres; part k of the maps sits exactly on keypoint k (K = P)."""
    g = torch.Generator().manual_seed(seed)
    cols = torch.randint(2, w - 2, (n, p), generator=g)
    rows = torch.randint(2, h - 2, (n, p), generator=g)
    kp = torch.stack([cols, rows], dim=-1).float() + 0.5
    probs = torch.zeros(n, p, h, w)
    probs[torch.arange(n)[:, None], torch.arange(p)[None], rows, cols] = 1.0
    visible = torch.rand(n, p, generator=g) < 0.85
    visible[:, :2] = True
    bboxes = torch.tensor([1.0, 2.0, w - 3.0, h - 5.0]).repeat(n, 1)
    batch = Batch(images=torch.zeros(n, 3, h, w), ids=[str(i) for i in range(n)], keypoints=kp,
                  visible=visible, masks=torch.ones(n, h, w), bboxes=bboxes)
    return PartMaps(probs, image_size=(h, w), kind="probs"), batch


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_landmark_metric_end_to_end(protocol):
    metric = METRICS.get("landmark_error")(protocol="corrected", ground_truth="keypoints", landmark_protocol=protocol)
    assert (metric.kind, metric.role, metric.higher_is_better) == ("landmarks", "landmarks", False)
    other = METRICS.get("landmark_error")(landmark_protocol=protocol)
    for seed in range(3):
        maps, batch = _landmark_batch(seed, 6, 4, 24, 24)
        if protocol == "mafl-iod":
            batch.visible[:] = True
        metric.update(batch, maps, split="fit")
    maps, batch = _landmark_batch(10, 5, 4, 24, 24)
    if protocol == "mafl-iod":
        batch.visible[:] = True
    other.update(batch, maps, split="eval")
    metric.merge(other)
    assert metric.compute() < 1e-9  # centres are an exact affine function of the landmarks
    assert metric.count == (20 if protocol == "mafl-iod" else int(batch.visible.sum()))
    with pytest.raises(UserError):
        METRICS.get("landmark_error")()
