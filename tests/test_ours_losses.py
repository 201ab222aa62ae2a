"""The loss terms of ``ours`` against literal float64 implementations of the
reference formulas (docs/training.md, step 7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.methods.ours.losses import (
    color_loss,
    contrastive_loss,
    equivariance_loss,
    feature_loss,
    feature_terms,
    masked_assignment,
    part_prototypes,
    region_variance,
    sample_positive_images,
)


def make_inputs(b=3, k=4, c=5, h=12, w=10, seed=0, offset=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g) * 2
    mask = (torch.rand(b, 1, h, w, generator=g) > 0.3).float()
    assign = torch.softmax(logits, 1) * mask
    signal = torch.randn(b, c, h, w, generator=g) * scale + offset
    return assign, signal, mask


# -- literal oracles (float64, loops over images/parts, the reference formulas as written) --------------------
def naive_V(a, g, m):
    """One image: a (K,H,W), g (D,H,W), m (H,W)."""
    total = 0.0
    for k in range(a.shape[0]):
        mu = (a[k][None] * g).sum(dim=(1, 2)) / (a[k].sum() + 1e-5)                       # (D,)
        diff_sq = (g - mu[:, None, None]) ** 2                                              # (D,H,W)
        total = total + (a[k][None] * m[None] * diff_sq).sum()
    return total / (m.sum() + 1e-5)


def naive_prototypes(a, f):
    return torch.einsum("bkhw,bchw->bkc", a, f) / (a.sum(dim=(2, 3))[..., None] + 1e-7)


def naive_contrastive(protos, tau, pos_image):
    """Per anchor, the cross-entropy with the positive in column 0 (reference layout), looping in Python."""
    b, k, _ = protos.shape
    z = protos / protos.norm(dim=2, keepdim=True).clamp_min(1e-12)
    losses = []
    for bi in range(b):
        for ki in range(k):
            anchor = z[bi, ki]
            pos = anchor @ z[int(pos_image[bi * k + ki]), ki]
            negs = [anchor @ z[bj, kj] for bj in range(b) for kj in range(k) if kj != ki]
            logits = torch.stack([pos] + negs) / tau
            losses.append(-torch.log_softmax(logits, 0)[0])
    return torch.stack(losses).mean()


def naive_equivariance(lw, wl, m):
    b = lw.shape[0]
    out = 0.0
    for i in range(b):
        p = torch.softmax(lw[i], 0)
        q = torch.softmax(wl[i], 0)
        kl = (q * (torch.log(q) - torch.log(p))).sum(0)
        out = out + (kl * m[i, 0]).sum() / (m[i, 0].sum() + 1e-7)
    return out / b


# -- values ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("offset,scale", [(0.0, 1.0), (50.0, 20.0), (0.0, 1e-3)])
def test_region_variance_matches_literal_formula(offset, scale):
    a, g, m = make_inputs(offset=offset, scale=scale)
    ref = torch.stack([naive_V(a[i].double(), g[i].double(), m[i, 0].double()) for i in range(a.shape[0])])
    for center in (True, False):
        got = region_variance(a, g, m, center=center)
        assert got.dtype == torch.float32 and got.shape == (3,)
        if center or offset == 0:  # uncentred float32 expansion is only promised for near-zero signals
            torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(region_variance(a.double(), g.double(), m.double()), ref, rtol=1e-10, atol=0)


def test_region_variance_handles_empty_parts_and_empty_masks():
    a, g, m = make_inputs(b=2)
    a = a.clone()
    a[:, 1] = 0  # a part with no mass: mu = 0 / 1e-5
    m = m.clone()
    m[1] = 0
    a[1] = 0
    ref = torch.stack([naive_V(a[i].double(), g[i].double(), m[i, 0].double()) for i in range(2)])
    got = region_variance(a, g, m)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-12)
    assert got[1] == 0


def test_region_variance_accepts_bhw_mask():
    a, g, m = make_inputs()
    torch.testing.assert_close(region_variance(a, g, m[:, 0]), region_variance(a, g, m))


def test_feature_and_color_reductions():
    a, g, m = make_inputs(b=4, offset=40, scale=30)
    f = g * m
    per_image = torch.stack([naive_V(a[i].double(), f[i].double(), m[i, 0].double()) for i in range(4)])
    torch.testing.assert_close(feature_loss(a, f, m).double(), per_image.sum(), rtol=1e-5, atol=0)
    torch.testing.assert_close(feature_loss(a, f, m, reduction="mean").double(), per_image.mean(), rtol=1e-5, atol=0)
    lab_ref = torch.stack([naive_V(a[i].double(), g[i].double(), m[i, 0].double()) for i in range(4)]).mean()
    torch.testing.assert_close(color_loss(a, g, m).double(), lab_ref, rtol=1e-5, atol=0)
    with pytest.raises(ValueError):
        feature_loss(a, f, m, reduction="none")


def test_part_prototypes_match_einsum_oracle():
    a, g, m = make_inputs(c=7)
    f = g * m
    ref = naive_prototypes(a.double(), f.double())
    got = part_prototypes(a, f)
    assert got.shape == (3, 4, 7)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-7)
    mu = part_prototypes(a.double(), f.double(), eps=1e-5)
    torch.testing.assert_close(mu, torch.einsum("bkhw,bchw->bkc", a.double(), f.double())
                               / (a.double().sum(dim=(2, 3))[..., None] + 1e-5))


def test_masked_assignment():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 5, 5, generator=g)
    mask = (torch.rand(2, 1, 17, 17, generator=g) > 0.5).float()
    a = masked_assignment(logits, mask)
    up = torch.nn.functional.interpolate(logits, size=(17, 17), mode="bilinear", align_corners=True)
    torch.testing.assert_close(a, torch.softmax(up, 1) * mask)
    torch.testing.assert_close(a.sum(1, keepdim=True), mask)


@pytest.mark.parametrize("legacy", [True, False])
def test_contrastive_matches_per_anchor_cross_entropy(legacy):
    g = torch.Generator().manual_seed(3)
    protos = torch.randn(5, 4, 16, generator=g).abs()
    got = contrastive_loss(protos, 0.19, legacy_positive=legacy, generator=torch.Generator().manual_seed(7))
    pos = sample_positive_images(5, 4, legacy_positive=legacy, generator=torch.Generator().manual_seed(7))
    ref = naive_contrastive(protos.double(), 0.19, pos)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=0)
    torch.testing.assert_close(contrastive_loss(protos, 0.19, positives=pos), got)


def test_positive_sampling_distribution_legacy_vs_fixed():
    b, k, draws = 5, 3, 4000
    gen = torch.Generator().manual_seed(0)
    legacy = torch.stack([sample_positive_images(b, k, generator=gen) for _ in range(draws // 10)])
    fixed = torch.stack([sample_positive_images(b, k, legacy_positive=False, generator=gen) for _ in range(draws // 10)])
    anchors_image = np.repeat(np.arange(b), k)
    for counts_of, allowed_low in ((legacy, 1), (fixed, 0)):
        chosen = counts_of.numpy()
        assert (chosen != anchors_image[None]).all()  # never the anchor's own image
        for i in range(b):
            others = [j for j in range(b) if j != i]
            picked = chosen[:, anchors_image == i].ravel()
            counts = np.array([(picked == j).sum() for j in others])
            # legacy: the lowest-indexed other image (candidate position 0) is never drawn
            assert (counts[0] == 0) == (allowed_low == 1)
            expected = picked.size / (len(others) - allowed_low)
            assert np.all(np.abs(counts[allowed_low:] - expected) < 5 * math.sqrt(expected))


def test_contrastive_small_batches():
    protos = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="at least 3.*randint"):
        contrastive_loss(protos, 0.19)
    assert torch.isfinite(contrastive_loss(protos, 0.19, legacy_positive=False))
    with pytest.raises(ValueError, match="at least 2"):
        contrastive_loss(torch.randn(1, 4, 8), 0.19, legacy_positive=False)


def test_equivariance_matches_kl_oracle():
    g = torch.Generator().manual_seed(5)
    lw = torch.randn(3, 4, 9, 8, generator=g) * 3
    wl = torch.randn(3, 4, 9, 8, generator=g) * 3
    m = torch.rand(3, 1, 9, 8, generator=g)  # soft warped mask
    ref = naive_equivariance(lw.double(), wl.double(), m.double())
    torch.testing.assert_close(equivariance_loss(lw, wl, m).double(), ref, rtol=1e-5, atol=0)
    # The same through torch's KLDivLoss, which the reference used.
    kl = torch.nn.KLDivLoss(reduction="none")(torch.log_softmax(lw, 1), torch.softmax(wl, 1))
    torch_ref = ((kl * m).flatten(1).sum(1) / (m.flatten(1).sum(1) + 1e-7)).mean()
    torch.testing.assert_close(equivariance_loss(lw, wl, m), torch_ref, rtol=1e-5, atol=0)


# -- gradients ---------------------------------------------------------------------------------------------
def test_region_variance_gradients_match_oracle_autograd():
    a, g, m = make_inputs(b=2, c=3, h=6, w=5, offset=30, scale=10)
    for center in (True, False):
        a1 = a.double().requires_grad_()
        g1 = g.double().requires_grad_()
        region_variance(a1, g1, m.double(), center=center).sum().backward()
        a2 = a.double().requires_grad_()
        g2 = g.double().requires_grad_()
        sum(naive_V(a2[i], g2[i], m[i, 0].double()) for i in range(2)).backward()
        torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(g1.grad, g2.grad, rtol=1e-8, atol=1e-10)


def test_gradients_flow_through_logits_into_all_losses():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, 4, 4, generator=g, requires_grad=True)
    mask = (torch.rand(3, 1, 16, 16, generator=g) > 0.3).float()
    feats = torch.rand(3, 6, 16, 16, generator=g) * mask
    a = masked_assignment(logits, mask)
    for loss in (feature_loss(a, feats, mask), color_loss(a, feats, mask),
                 contrastive_loss(part_prototypes(a, feats), 0.19, generator=torch.Generator().manual_seed(0))):
        (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_equivariance_gradient_only_through_warped_branch():
    g = torch.Generator().manual_seed(4)
    lw = torch.randn(2, 4, 6, 6, generator=g, requires_grad=True)
    wl = torch.randn(2, 4, 6, 6, generator=g, requires_grad=True)
    m = torch.rand(2, 1, 6, 6, generator=g)
    loss = equivariance_loss(lw, wl, m)
    loss.backward()
    assert lw.grad is not None and lw.grad.abs().sum() > 0
    assert wl.grad is None  # the target is detached
    # d/dlogits of KL(q||softmax(l)) = m (p - q) / (sum m + eps) / B
    p, q = torch.softmax(lw.detach(), 1), torch.softmax(wl.detach(), 1)
    expected = m * (p - q) / (m.flatten(1).sum(1) + 1e-7).view(2, 1, 1, 1) / 2
    torch.testing.assert_close(lw.grad, expected, rtol=1e-5, atol=1e-7)


# -- bf16 autocast ---------------------------------------------------------------------------------------------
def test_bf16_autocast_within_1e_2():
    g = torch.Generator().manual_seed(9)
    logits = torch.randn(3, 4, 8, 8, generator=g)
    logits_w = torch.randn(3, 4, 32, 32, generator=g)
    mask = (torch.rand(3, 1, 32, 32, generator=g) > 0.3).float()
    feats = torch.rand(3, 16, 32, 32, generator=g) * mask * 5
    lab = torch.rand(3, 3, 32, 32, generator=g) * 100

    def all_losses(lg, f, lw):
        a = masked_assignment(lg, mask)
        up = torch.nn.functional.interpolate(lg, size=(32, 32), mode="bilinear", align_corners=True)
        return torch.stack([feature_loss(a, f, mask), color_loss(a, lab, mask),
                            contrastive_loss(part_prototypes(a, f), 0.19, generator=torch.Generator().manual_seed(1)),
                            equivariance_loss(lw, up, mask)])

    ref = all_losses(logits, feats, logits_w)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # what a bf16 network and a bf16 VGG would hand over
        got = all_losses(logits.bfloat16(), feats.bfloat16(), logits_w.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-2, atol=0)


def test_presampled_randomness_gives_a_graph_break_free_step():
    """Draw outside, compute inside: the whole augment/warp/loss pipeline traces as one dynamo graph."""
    from benchmark.methods.ours import augment, warp
    from benchmark.methods.segmenter import caffe_input

    g = torch.Generator().manual_seed(0)
    b, size = 4, 16
    img = torch.rand(b, 3, size, size, generator=g)
    mask = (torch.rand(b, 1, size, size, generator=g) > 0.3).float()
    feats = torch.rand(b, 8, size, size, generator=g) * mask
    logits = torch.randn(b, 4, 3, 3, generator=g, requires_grad=True)
    logits_w = torch.randn(b, 4, 3, 3, generator=g)
    jit = augment.sample_jitter(b, generator=g)
    targets, sources = warp.sample_source_points(b, generator=g, dtype=torch.float64)
    pos = sample_positive_images(b, 4, generator=g)

    def step(logits, logits_w):
        grid = warp.tps_grid(targets, sources, size, size)
        x_in = warp.apply(caffe_input(augment.apply_jitter(img, jit)), grid)
        a = masked_assignment(logits, mask)
        up = torch.nn.functional.interpolate(logits, size=(size, size), mode="bilinear", align_corners=True)
        up_w = torch.nn.functional.interpolate(logits_w, size=(size, size), mode="bilinear", align_corners=True)
        return (feature_loss(a, feats, mask) + color_loss(a, augment.rgb_to_lab(img), mask)
                + contrastive_loss(part_prototypes(a, feats), 0.19, positives=pos)
                + equivariance_loss(up_w, warp.apply(up, grid), warp.apply(mask, grid)) + 1e-3 * x_in.mean())

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(logits, logits_w), step(logits, logits_w))


@pytest.mark.parametrize("center", [False, True])
def test_feature_terms_equal_the_separate_functions(center):
    a, g, m = make_inputs(b=4, c=6, offset=3.0)
    f = g * m
    lf, protos = feature_terms(a, f, m, center=center)
    torch.testing.assert_close(lf, feature_loss(a, f, m), rtol=1e-6, atol=0)
    torch.testing.assert_close(protos, part_prototypes(a, f), rtol=1e-5, atol=1e-6)
    lf_mean, _ = feature_terms(a, f, m, reduction="mean")
    torch.testing.assert_close(lf_mean, feature_loss(a, f, m, reduction="mean"))
