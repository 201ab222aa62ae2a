"""Flowers-102 on a miniature tree in torchvision's layout plus the VGG ``segmim/`` images, and ``fg_iou``
against an independent implementation of PDiscoFormer's steps (``Flowers102Seg``: B / (G + R) > 100 with
uint8 channel sums, then a 5 x 5 median; ``eval_fg_bg``: bilinear upsampling with align_corners=True,
argmax over [parts, background], foreground = not the background channel, pooled Jaccard counts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from scipy.io import savemat

import benchmark.datasets as D
from benchmark.core.errors import EmptyEvaluationError, UserError
from benchmark.core.method import Method
from benchmark.core.registry import METHODS, METRICS
from benchmark.core.types import PartMaps
from benchmark.metrics.scoring import label_pairs

SIZES = {1: (30, 24), 2: (26, 34), 3: (28, 28), 4: (20, 22)}  # image number -> (W, H)


def segmentation(number: int, w: int, h: int) -> np.ndarray:
    """Blue background (0, 0, 254) with a yellow flower rectangle and a speck the median filter removes."""
    seg = np.zeros((h, w, 3), np.uint8)
    seg[..., 2] = 254
    seg[3 + number:h - 4, 4:w - 5 - number] = (250, 220, 10)
    seg[1, w - 2] = (250, 220, 10)
    return seg


def write_tree(root):
    (root / "jpg").mkdir(parents=True)
    (root / "segmim").mkdir()
    rng = np.random.default_rng(0)
    for number, (w, h) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "jpg" / f"image_{number:05d}.jpg")
        Image.fromarray(segmentation(number, w, h)).save(root / "segmim" / f"segmim_{number:05d}.png", format="PNG")
        (root / "segmim" / f"segmim_{number:05d}.png").rename(root / "segmim" / f"segmim_{number:05d}.jpg")
    savemat(root / "imagelabels.mat", {"labels": np.array([[5, 7, 5, 9]])})
    savemat(root / "setid.mat", {"trnid": np.array([[2]]), "valid": np.array([[4]]), "tstid": np.array([[1, 3]])})
    return root


@pytest.fixture
def root(tmp_path):
    return write_tree(tmp_path / "flowers-102")


def reference_mask(seg_rgb: np.ndarray) -> np.ndarray:
    """The reference's steps, written out: BGR, uint8 sums, ratio test, cv2-style 5x5 median (replicated edge)."""
    bgr = seg_rgb[:, :, ::-1]
    ratio = bgr[:, :, 0] / (bgr[:, :, 1] + bgr[:, :, 2] + 1e-6)
    mask = 1 - (ratio > 100).astype(np.uint8)
    if len(np.unique(mask)) > 1:
        padded = np.pad(mask, 2, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
        mask = np.median(windows.reshape(*mask.shape, 25), axis=-1).astype(np.uint8)
    return mask


def test_foreground_mask_follows_the_reference_formula():
    from benchmark.datasets.flowers102 import foreground_mask

    seg = np.zeros((9, 9, 3), np.uint8)
    seg[..., 2] = 254
    seg[0, 0] = (200, 56, 254)  # G + R wraps to 0 in uint8: the reference calls this blue pixel background
    seg[4, 4] = (10, 10, 254)  # ratio 12.7: foreground before the median, removed by it
    ours = foreground_mask(seg)
    assert np.array_equal(ours, reference_mask(seg)) and ours.sum() == 0
    seg[2:8, 1:7] = (255, 0, 0)  # red flower: G + R = 255, ratio 0 -> foreground
    assert np.array_equal(foreground_mask(seg), reference_mask(seg))
    assert foreground_mask(seg).sum() > 0
    grey = np.full((4, 4, 3), 100, np.uint8)  # one value, no median filter; ratio 0.5 -> foreground
    assert np.array_equal(foreground_mask(grey), np.ones((4, 4), np.uint8))
    grey[:] = 128  # G + R = 256 wraps to 0: the reference calls mid-grey background
    assert np.array_equal(foreground_mask(grey), reference_mask(grey)) and foreground_mask(grey).sum() == 0


def coarse(number: int, k: int) -> torch.Tensor:
    maps = torch.rand(k + 1, 4, 5, generator=torch.Generator().manual_seed(number))
    maps[k, :, :2] = maps[0, :, :2]  # background (last) ties with part 0 on two columns: the part wins
    return maps


def reference_counts(up: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[int, int]:
    fg = (up.argmax(0) != k)
    truth = mask.bool()
    return int((fg & truth).sum()), int((fg | truth).sum())


@pytest.mark.parametrize("protocol, crop", [("whole-image:16-crop", True), ("whole-image:18", False)])
def test_fg_iou_equals_the_reference(root, protocol, crop):
    ds = D.load("flowers102", root=root.parent, split="test", view="whole", protocol=protocol, masks="method")
    assert len(ds) == 2 and ds.protocol.align_corners("whole") is True
    k, inter, union = 3, 0, 0
    size = ds.protocol.image_size
    for index in range(len(ds)):
        sample = ds[index]
        number = int(sample.id.split("_")[1])
        seg = np.asarray(Image.open(root / "segmim" / f"segmim_{number:05d}.jpg").convert("RGB"))
        mask = torch.from_numpy(reference_mask(seg))[None, None].float()
        h, w = seg.shape[:2]
        sh, sw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
        mask = F.interpolate(mask, size=(sh, sw), mode="nearest")[0, 0]
        if crop:
            top, left = int(round((sh - size) / 2.0)), int(round((sw - size) / 2.0))
            mask = mask[top:top + size, left:left + size]
        assert torch.equal(sample.part_labels, mask.long()), number
        up = F.interpolate(coarse(number, k)[None], size=sample.size, mode="bilinear", align_corners=True)[0]
        i, u = reference_counts(up, mask, k)
        inter, union = inter + i, union + u
    metric = METRICS.get("fg_iou")(protocol=ds.protocol)
    for batch in ds.batches(1):
        numbers = [int(i.split("_")[1]) for i in batch.ids]
        maps = torch.stack([coarse(n, k) for n in numbers])
        maps = PartMaps(torch.cat([maps[:, k:], maps[:, :k]], 1), image_size=batch.size, has_background=True,
                        kind="probs", align_corners=True)
        metric.update(*label_pairs(maps, batch, role="full", ground_truth="pixels", protocol=ds.protocol,
                                   background="method")["full"])
    assert 0 < inter < union
    assert metric.compute() == inter / union
    assert metric.value_range == (0.0, 1.0) and metric.kind == "foreground"


def test_fg_iou_counts_merge_and_refuse_degenerate_input():
    metric = METRICS.get("fg_iou")()
    with pytest.raises(EmptyEvaluationError):
        metric.compute()
    metric.update(torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long))
    with pytest.raises(EmptyEvaluationError, match="undefined"):
        metric.compute()
    other = METRICS.get("fg_iou")()
    other.update(torch.tensor([0, 1, 1, 2, 0]), torch.tensor([3, 0, 1, 4, 0]))  # any label != 0 is foreground
    metric.merge(other)
    assert metric.compute() == 2 / 4 and metric.count == 10
    with pytest.raises(ValueError, match="split"):
        metric.update(torch.zeros(1), torch.zeros(1), split="fit")


def test_splits_and_bad_trees(tmp_path, root):
    assert [len(D.load("flowers102", root=root, split=s, view="whole", protocol="whole-image:16", masks="method"))
            for s in ("train", "val", "test")] == [1, 1, 2]
    train = D.load("flowers102", root=root, split="train", view="train", protocol="corrected", masks="gt")
    sample = train[0]
    assert train.class_ids() == (7,) and sample.meta["class_id"] == 7  # image 2's label in imagelabels.mat
    assert sample.size == (256, 256) and set(sample.part_labels.unique().tolist()) == {0, 1}
    assert torch.equal(sample.mask, sample.part_labels.float())
    with pytest.raises(UserError, match="whole-image"):
        D.load("flowers102", root=root, split="test", view="whole", protocol="corrected", masks="method")
    savemat(root / "setid.mat", {"trnid": np.array([[2]]), "valid": np.array([[4]]), "tstid": np.array([[1, 9]])})
    with pytest.raises(UserError, match="setid.mat"):
        D.load("flowers102", root=root, split="test", view="whole", protocol="whole-image:16", masks="method")


def test_data_check_download_steps_and_run_refusals(root):
    from benchmark.cli import cli

    ok = CliRunner().invoke(cli, ["data", "check", "-d", "flowers102", "--data-root", str(root), "-q"])
    assert ok.exit_code == 0, ok.output
    assert "test: 2 samples" in ok.output
    (root / "segmim" / "segmim_00003.jpg").unlink()
    bad = CliRunner().invoke(cli, ["data", "check", "-d", "flowers102", "--data-root", str(root), "-q"])
    assert bad.exit_code == 2 and "segmim_00003.jpg" in bad.output
    steps = CliRunner().invoke(cli, ["data", "download", "flowers102"])
    assert steps.exit_code == 0 and "102segmentations.tgz" in steps.output


def build_fixture(tmp_path):
    """Miniature tree for the shared contract tests (tests/dataset_fixtures.py): ``(root, options)``."""
    return write_tree(tmp_path / "flowers-102"), {"protocol": "whole-image:16", "masks": "method"}


class _CoarseWithBackground(Method):
    """The coarse maps of :func:`coarse` for each image, background channel first (K = 3)."""

    provides_background = True

    def __init__(self, num_parts: int = 3):
        self.num_parts = num_parts

    def predict(self, batch):
        maps = torch.stack([coarse(int(i.split("_")[1]), self.num_parts) for i in batch.ids])
        k = self.num_parts
        return PartMaps(torch.cat([maps[:, k:], maps[:, :k]], 1), image_size=batch.size, kind="probs",
                        has_background=True, align_corners=False)  # the protocol's align_corners=True wins


def test_a_run_scores_fg_iou_only_and_refuses_what_does_not_apply(root):
    from benchmark.runner import RunConfig, run

    METHODS.register("test-flowers-bg")(_CoarseWithBackground)
    try:
        base = dict(method="test-flowers-bg", dataset="flowers102", data_root=str(root), num_parts=3,
                    protocol="whole-image:16-crop")
        rows = run(RunConfig(**base, masks="method"), out_dir=None).rows
        with pytest.raises(UserError, match="use --masks method"):
            run(RunConfig(**base, masks="gt", metrics=("fg_iou",)), out_dir=None)
        with pytest.raises(UserError, match="does not apply to dataset 'flowers102'"):
            run(RunConfig(**base, masks="method", metrics=("nmi",)), out_dir=None)
    finally:
        METHODS.unregister("test-flowers-bg")
    assert [r["metric"] for r in rows] == ["fg_iou"]
    ds = D.load("flowers102", root=root, split="test", view="whole", protocol="whole-image:16-crop", masks="method")
    inter = union = 0
    for index in range(len(ds)):
        sample = ds[index]
        up = F.interpolate(coarse(int(sample.id.split("_")[1]), 3)[None], size=sample.size, mode="bilinear",
                           align_corners=True)[0]
        i, u = reference_counts(up, sample.part_labels, 3)
        inter, union = inter + i, union + u
    assert rows[0]["value"] == pytest.approx(inter / union, abs=1e-12)
