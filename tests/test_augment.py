"""Colour jitter against torchvision's functional ops image by image; Lab against scikit-image."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from skimage.color import rgb2lab

from benchmark.core.errors import UserError
from benchmark.methods.ours.augment import (
    JITTER_PRESETS,
    JitterParams,
    JitterSample,
    apply_jitter,
    color_jitter,
    rgb_to_grayscale,
    color_target,
    rgb_to_lab,
    sample_jitter,
)


def images(b=6, h=9, w=7, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def torchvision_one(img, sample, i, random_order=True):
    """Oracle: torchvision's functional ops with this image's scalar factors, in this image's order."""
    ops = {
        0: lambda x: TF.adjust_brightness(x, float(sample.brightness[i])),
        1: lambda x: TF.adjust_contrast(x, float(sample.contrast[i])),
        2: lambda x: TF.adjust_saturation(x, float(sample.saturation[i])),
        3: lambda x: TF.adjust_hue(x, float(sample.hue[i])),
    }
    order = sample.order[i].tolist() if random_order else [0, 1, 2, 3]
    for op in order:
        img = ops[op](img)
    if bool(sample.grayscale[i]):
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    return img


@pytest.mark.parametrize("random_order", [True, False])
def test_apply_matches_torchvision_per_image(random_order):
    x = images(b=8)
    params = JitterParams(p_jitter=1.0, p_grayscale=0.3, random_order=random_order)
    sample = sample_jitter(8, params, generator=torch.Generator().manual_seed(1))
    got = apply_jitter(x, sample, quantize=False)
    for i in range(8):
        torch.testing.assert_close(got[i], torchvision_one(x[i], sample, i, random_order), rtol=0, atol=2e-6)


def test_gate_off_and_grayscale_and_quantisation():
    x = images(b=4)
    n = 4
    sample = JitterSample(torch.ones(n), torch.ones(n), torch.ones(n), torch.zeros(n),
                          torch.rand(n, 4).argsort(1), torch.tensor([False, True, False, True]))
    out = apply_jitter(x, sample, quantize=False)
    torch.testing.assert_close(out[0], x[0], rtol=0, atol=0)  # neutral factors are exact identities
    torch.testing.assert_close(out[1], TF.rgb_to_grayscale(x[1], num_output_channels=3))
    torch.testing.assert_close(rgb_to_grayscale(x), TF.rgb_to_grayscale(x))
    q = apply_jitter(x, sample, quantize=True)
    assert torch.equal(q * 255, torch.round(q * 255)) and (q - out).abs().max() <= 0.5 / 255 + 1e-6


def test_sampling_distribution_of_the_paper_preset():
    n = 20000
    s = sample_jitter(n, JITTER_PRESETS["paper"], generator=torch.Generator().manual_seed(2))
    jittered = (s.brightness != 1) | (s.hue != 0)
    assert abs(jittered.float().mean().item() - 0.8) < 0.015
    assert abs(s.grayscale.float().mean().item() - 0.2) < 0.015
    b, c, sat, hue = s.brightness[jittered], s.contrast[jittered], s.saturation[jittered], s.hue[jittered]
    for t, lo, hi in ((b, 0.7, 1.3), (c, 0.7, 1.3), (sat, 0.8, 1.2), (hue, -0.2, 0.2)):
        assert t.min() >= lo and t.max() <= hi and t.min() < lo + 0.01 and t.max() > hi - 0.01
    assert torch.all(s.contrast[~jittered] == 1) and torch.all(s.saturation[~jittered] == 1)
    perms = {tuple(p) for p in s.order.tolist()}
    assert perms == set(itertools.permutations(range(4)))
    # the first operation is uniform over the four
    first = torch.bincount(s.order[:, 0], minlength=4).float() / n
    assert torch.all((first - 0.25).abs() < 0.015)


def test_color_jitter_presets_and_generator():
    x = images()
    a = color_jitter(x, "paper", generator=torch.Generator().manual_seed(3))
    b = color_jitter(x, "paper", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a * 255, torch.round(a * 255))
    c = color_jitter(x, "paper", generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)
    scops = sample_jitter(1000, JITTER_PRESETS["scops"], generator=torch.Generator().manual_seed(0))
    assert torch.all(scops.brightness != 1) and not scops.grayscale.any()
    with pytest.raises(UserError, match="unknown jitter preset"):
        color_jitter(x, "strong")
    with pytest.raises(UserError):
        JitterParams(hue=0.7)


def test_rgb_to_lab_matches_skimage():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(3, 17, 19, 3), dtype=np.uint8)
    u8[0, 0, :4] = [[0, 0, 0], [255, 255, 255], [10, 10, 10], [3, 200, 255]]  # extremes + linear segments
    ref = np.stack([rgb2lab(img) for img in u8]).transpose(0, 3, 1, 2)
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255.0
    got = rgb_to_lab(x)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-3)
    x64 = torch.from_numpy(u8).permute(0, 3, 1, 2).double() / 255.0
    np.testing.assert_allclose(rgb_to_lab(x64).numpy(), ref, rtol=0, atol=1e-9)
    smooth = rng.random((2, 8, 8, 3))
    np.testing.assert_allclose(rgb_to_lab(torch.from_numpy(smooth).permute(0, 3, 1, 2).float()).numpy(),
                               np.stack([rgb2lab(i) for i in smooth]).transpose(0, 3, 1, 2), rtol=0, atol=1e-3)


def test_color_target():
    u8 = torch.tensor([[[[0, 128]], [[255, 7]], [[64, 200]]]], dtype=torch.uint8)
    x = u8.float() / 255.0
    assert torch.equal(color_target(x, use_lab=False), u8.float() - 128)
    torch.testing.assert_close(color_target(x), rgb_to_lab(x))
