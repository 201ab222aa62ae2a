"""label_pairs: keypoint sampling against grid_sample itself, pixel views, background policies, known
answers (perfect and random predictors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from benchmark.core.errors import UserError
from benchmark.core.types import Batch, PartMaps
from benchmark.metrics import ari, nmi
from benchmark.metrics.scoring import label_pairs, value_labels


def _batch(n, h, w, *, keypoints=None, visible=None, masks=None, part_labels=None):
    return Batch(images=torch.zeros(n, 3, h, w), ids=[str(i) for i in range(n)], keypoints=keypoints,
                 visible=visible, masks=masks, part_labels=part_labels)


def _grid_sample_labels(full_map, keypoints, size):
    """The reference's sampling: normalised point 2 * (x / W) - 1, grid_sample nearest, argmax."""
    h, w = size
    grid = torch.stack([2 * keypoints[..., 0] / w - 1, 2 * keypoints[..., 1] / h - 1], dim=-1)
    sampled = F.grid_sample(full_map, grid[:, :, None, :].to(full_map.dtype), mode="nearest",
                            align_corners=False)  # (N, C, P, 1)
    return sampled[..., 0].argmax(dim=1)  # (N, P)


def _containing_pixel_labels(full_map, keypoints, size):
    """The corrected read-out: the pixel [j, j+1) x [i, i+1) holding the point; outside -> all-zero scores."""
    h, w = size
    col, row = torch.floor(keypoints[..., 0]).long(), torch.floor(keypoints[..., 1]).long()
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    n = torch.arange(full_map.shape[0])[:, None]
    values = full_map[n, :, row.clamp(0, h - 1), col.clamp(0, w - 1)]  # (N, P, C)
    return torch.where(inside, values.argmax(dim=-1), torch.zeros_like(col))


@pytest.mark.parametrize("has_background", [False, True])
@pytest.mark.parametrize("protocol", ["legacy", "corrected"])
def test_keypoint_sampling_follows_the_protocols_readout(has_background, protocol):
    """legacy: what grid_sample itself reads (the notebook); corrected: the pixel containing the point.
    The two differ exactly at integer coordinates (half-pixel ties)."""
    torch.manual_seed(0)
    n, k, p, h, w = 3, 4, 40, 32, 64  # power-of-two sizes keep grid_sample's arithmetic exact at ties
    logits = torch.randn(n, k + int(has_background), 9, 11, dtype=torch.float64)
    maps = PartMaps(logits, image_size=(h, w), has_background=has_background, align_corners=False)
    kp = torch.rand(n, p, 2, dtype=torch.float64) * torch.tensor([w + 6.0, h + 6.0]) - 3.0
    kp[:, :12] = torch.randint(-2, 70, (n, 12, 2)).double()  # integer x -> x - 0.5 is a half-pixel tie
    kp[:, 12:16] = torch.randint(-2, 70, (n, 4, 2)).double() + 0.5  # pixel centres
    kp[:, 16:18] = torch.tensor([[-0.5, 3.0], [w + 0.5, 3.0]], dtype=torch.float64)  # outside on the edges
    visible = torch.rand(n, p) < 0.8
    masks = (torch.rand(n, h, w) < 0.6).float()
    batch = _batch(n, h, w, keypoints=kp.float(), visible=visible, masks=masks)
    up = maps.resized((h, w)).scores
    off = int(has_background)

    reader = _grid_sample_labels if protocol == "legacy" else _containing_pixel_labels
    ref_fg = reader(up[:, off:], kp, (h, w))
    pairs = label_pairs(maps, batch, role="fg", ground_truth="keypoints", protocol=protocol, background="mask")
    assert set(pairs) == ({"fg", "fg_with_background"} if protocol == "legacy" else {"fg"})
    true, pred = pairs["fg"]
    idx = visible.nonzero(as_tuple=True)
    assert torch.equal(true, idx[1]) and true.dtype == torch.int64
    assert torch.equal(pred, ref_fg[idx])

    probs = up[:, off:].softmax(dim=1)
    full_map = torch.cat([1 - masks[:, None].double(), masks[:, None].double() * probs], dim=1)
    ref_full = reader(full_map, kp, (h, w))
    true, pred = label_pairs(maps, batch, role="full", ground_truth="keypoints", protocol=protocol,
                             background="mask")["full"]
    assert torch.equal(pred, ref_full[idx])
    outside = (torch.round(kp[..., 0] - 0.5) < 0) | (torch.round(kp[..., 0] - 0.5) >= w)
    assert outside[idx].any() and (pred[outside[idx]] == 0).all()

    if has_background:
        ref_method = reader(up, kp, (h, w))
        _, pred = label_pairs(maps, batch, role="full", ground_truth="keypoints", protocol=protocol,
                              background="method")["full"]
        assert torch.equal(pred, ref_method[idx])
    ties = (kp[..., 0] == kp[..., 0].round()) & (kp[..., 0] > 0) & (kp[..., 0] < w)
    assert ties[idx].any()  # the fixture exercises the tie rule


def test_keypoint_sampling_non_power_of_two_size():  # no ties: both read-outs agree with grid_sample
    torch.manual_seed(1)
    n, k, p, h, w = 2, 5, 60, 37, 53
    maps = PartMaps(torch.randn(n, k, 7, 7), image_size=(h, w), align_corners=True)
    kp = torch.rand(n, p, 2) * torch.tensor([w - 1.0, h - 1.0]) + 0.5
    batch = _batch(n, h, w, keypoints=kp, visible=torch.ones(n, p, dtype=torch.bool))
    ref = _grid_sample_labels(maps.resized((h, w)).scores, kp, (h, w))
    _, pred = label_pairs(maps, batch, role="fg", ground_truth="keypoints", protocol="corrected",
                          background="none")["fg"]
    assert torch.equal(pred, ref.reshape(-1))


def test_legacy_keypoints_fg_with_background_and_raw_masks():
    torch.manual_seed(2)
    n, k, p, h, w = 2, 4, 15, 32, 32
    maps = PartMaps(torch.randn(n, k, 8, 8), image_size=(h, w))
    kp = torch.rand(n, p, 2) * 32
    visible = torch.ones(n, p, dtype=torch.bool)
    masks = torch.randint(0, 256, (n, h, w)).float()  # un-thresholded 8-bit mask values
    batch = _batch(n, h, w, keypoints=kp, visible=visible, masks=masks)
    pairs = label_pairs(maps, batch, role="fg", ground_truth="keypoints", protocol="legacy", background="mask")
    assert set(pairs) == {"fg", "fg_with_background"}
    up = maps.resized((h, w)).scores
    full_map = torch.cat([1 - masks[:, None], masks[:, None] * up.softmax(dim=1)], dim=1)
    assert torch.equal(pairs["fg_with_background"][1], _grid_sample_labels(full_map, kp, (h, w)).reshape(-1))
    # any mask value >= 1 makes the point foreground
    m_at = masks[0, torch.round(kp[0, :, 1] - 0.5).long().clamp(0, 31), torch.round(kp[0, :, 0] - 0.5).long().clamp(0, 31)]
    assert ((pairs["fg_with_background"][1][:p] == 0) == (m_at == 0)).all()
    with pytest.raises(UserError, match="binary"):
        label_pairs(maps, batch, role="full", ground_truth="keypoints", protocol="corrected", background="mask")


def test_pixels_views():
    torch.manual_seed(3)
    n, k, h, w = 2, 3, 16, 20
    maps = PartMaps(torch.randn(n, k, h, w), image_size=(h, w))
    gt = torch.randint(0, 5, (n, h, w))
    masks = (torch.rand(n, h, w) < 0.5).float()
    batch = _batch(n, h, w, masks=masks, part_labels=gt)
    arg = maps.scores.argmax(dim=1)
    true, pred = label_pairs(maps, batch, role="fg", ground_truth="pixels", protocol="corrected", background="mask")["fg"]
    assert torch.equal(true, gt[gt != 0]) and torch.equal(pred, arg[gt != 0])
    true, pred = label_pairs(maps, batch, role="full", ground_truth="pixels", protocol="corrected", background="mask")["full"]
    assert torch.equal(true, gt.reshape(-1))
    assert torch.equal(pred, (masks.long() * (arg + 1)).reshape(-1))
    _, pred = label_pairs(maps, batch, role="full", ground_truth="pixels", protocol="corrected", background="none")["full"]
    assert torch.equal(pred, (arg + 1).reshape(-1))
    bg_maps = PartMaps(torch.randn(n, k + 1, h, w), image_size=(h, w), has_background=True)
    _, pred = label_pairs(bg_maps, batch, role="full", ground_truth="pixels", protocol="corrected", background="method")["full"]
    assert torch.equal(pred, bg_maps.scores.argmax(dim=1).reshape(-1))
    _, pred = label_pairs(bg_maps, batch, role="fg", ground_truth="pixels", protocol="corrected", background="method")["fg"]
    assert torch.equal(pred, bg_maps.scores[:, 1:].argmax(dim=1)[gt != 0])


def test_legacy_pixels_value_identity():
    torch.manual_seed(4)
    n, k, h, w = 2, 3, 12, 12
    maps = PartMaps(torch.randn(n, k, 4, 4), image_size=(h, w))
    gt = torch.randint(0, 4, (n, h, w))
    # fractional (bilinearly resized) mask values, and 0..255 values in the other image
    masks = torch.stack([torch.rand(h, w).round(decimals=1), torch.randint(0, 256, (h, w)).float()])
    batch = _batch(n, h, w, masks=masks, part_labels=gt)
    true, pred = label_pairs(maps, batch, role="full", ground_truth="pixels", protocol="legacy", background="mask")["full"]
    values = (masks * (maps.resized((h, w)).scores.argmax(dim=1) + 1)).reshape(-1).numpy()
    _, oracle = np.unique(values, return_inverse=True)  # scikit-learn's view of arbitrary label values
    assert nmi(true, pred) == pytest.approx(normalized_mutual_info_score(true.numpy(), oracle), abs=1e-12)
    assert ari(true, pred) == pytest.approx(adjusted_rand_score(true.numpy(), oracle), abs=1e-12)
    # value identity holds across batches: the same value always gets the same label
    v = torch.tensor([0.0, -0.0, 1.0, 2.0, 0.5, 255.0, 0.1, 3e9])
    lab = value_labels(v)
    assert lab[0] == lab[1] == 0 and lab[2] == 1 and lab[5] == 255
    assert len(set(lab.tolist())) == 7 and (lab >= 0).all()


def test_errors():
    maps = PartMaps(torch.randn(1, 3, 8, 8), image_size=(8, 8))
    batch = _batch(1, 8, 8, part_labels=torch.zeros(1, 8, 8, dtype=torch.int64))
    with pytest.raises(UserError, match="--masks"):
        label_pairs(maps, batch, role="full", ground_truth="pixels", protocol="corrected", background="mask")
    with pytest.raises(UserError, match="background channel"):
        label_pairs(maps, batch, role="full", ground_truth="pixels", protocol="corrected", background="method")
    with pytest.raises(UserError, match="keypoints"):
        label_pairs(maps, batch, role="fg", ground_truth="keypoints", protocol="corrected", background="mask")
    with pytest.raises(UserError, match="role"):
        label_pairs(maps, batch, role="both", ground_truth="pixels", protocol="corrected", background="mask")
    # fg without legacy keypoints never needs a mask
    assert "fg" in label_pairs(maps, batch, role="fg", ground_truth="pixels", protocol="corrected", background="mask")


def _scores(pairs):
    return {name: (nmi(t, p), ari(t, p)) for name, (t, p) in pairs.items()}


def test_perfect_and_random_predictors_keypoints():
    torch.manual_seed(5)
    n, k, h, w = 6, 4, 32, 32
    # keypoint j of every image at a distinct pixel; maps: part j peaks around keypoint j
    kp = torch.stack([torch.randperm(h * w)[:k] for _ in range(n)])
    kp = torch.stack([kp % w, kp // w], dim=-1).float() + 0.5
    visible = torch.rand(n, k) < 0.9
    logits = torch.full((n, k, h, w), -5.0)
    for j in range(k):  # k channels, test setup only
        logits[torch.arange(n), j, kp[:, j, 1].long(), kp[:, j, 0].long()] = 5.0
    masks = torch.zeros(n, h, w)
    masks[torch.arange(n)[:, None], kp[..., 1].long(), kp[..., 0].long()] = 1.0
    batch = _batch(n, h, w, keypoints=kp, visible=visible, masks=masks)
    maps = PartMaps(logits, image_size=(h, w))
    for role in ("fg", "full"):
        for name, (s_nmi, s_ari) in _scores(label_pairs(maps, batch, role=role, ground_truth="keypoints",
                                                        protocol="legacy", background="mask")).items():
            assert s_nmi == pytest.approx(1.0) and s_ari == pytest.approx(1.0), name


def test_perfect_and_random_predictors_pixels():
    torch.manual_seed(6)
    n, labels, h, w = 4, 5, 32, 32
    gt = torch.randint(0, labels + 1, (n, h, w))
    masks = (gt != 0).float()
    batch = _batch(n, h, w, masks=masks, part_labels=gt)
    perfect = PartMaps(F.one_hot(gt, labels + 1).permute(0, 3, 1, 2).float(), image_size=(h, w), kind="probs")
    for role in ("fg", "full"):
        (s_nmi, s_ari), = _scores(label_pairs(perfect, batch, role=role, ground_truth="pixels",
                                              protocol="corrected", background="mask")).values()
        assert s_nmi == pytest.approx(1.0) and s_ari == pytest.approx(1.0)
    random = PartMaps(torch.rand(n, 4, h, w), image_size=(h, w), kind="probs")
    (s_nmi, s_ari), = _scores(label_pairs(random, batch, role="fg", ground_truth="pixels",
                                          protocol="corrected", background="mask")).values()
    assert s_nmi < 0.01 and abs(s_ari) < 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(7)
    n, k, p, h, w = 3, 4, 15, 32, 32
    maps = PartMaps(torch.randn(n, k, 8, 8), image_size=(h, w))
    batch = _batch(n, h, w, keypoints=torch.rand(n, p, 2) * 34 - 1, visible=torch.rand(n, p) < 0.8,
                   masks=(torch.rand(n, h, w) < 0.5).float(), part_labels=torch.randint(0, 5, (n, h, w)))
    gpu_maps = PartMaps(maps.scores.cuda(), image_size=(h, w))
    for gt in ("keypoints", "pixels"):
        for role in ("fg", "full"):
            cpu = label_pairs(maps, batch, role=role, ground_truth=gt, protocol="legacy", background="mask")
            gpu = label_pairs(gpu_maps, batch.to("cuda"), role=role, ground_truth=gt, protocol="legacy", background="mask")
            assert cpu.keys() == gpu.keys()
            for name in cpu:
                assert gpu[name][0].is_cuda
                assert torch.equal(cpu[name][0], gpu[name][0].cpu()) and torch.equal(cpu[name][1], gpu[name][1].cpu())
                assert nmi(*gpu[name]) == nmi(*cpu[name]) and ari(*gpu[name]) == ari(*cpu[name])
