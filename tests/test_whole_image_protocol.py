"""``--protocol whole-image`` (PDiscoNet / PDiscoFormer / MPAE) against an independent implementation of
the reference evaluator's steps, written here from its description (docs/protocol.md): torchvision
``Resize(S)`` (+ ``center_crop``), keypoints scaled by ``S / short side`` and shifted by the crop, invisible
beyond the crop, maps upsampled bilinearly (``align_corners=False``) and read with ``grid_sample(nearest)``,
argmax over ``[parts, background]``, scikit-learn NMI/ARI over every visible keypoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import benchmark.datasets as D
from benchmark.core.errors import UserError
from benchmark.core.protocol import EvaluationProtocol, canonical_protocol
from benchmark.core.types import PartMaps
from benchmark.metrics.clustering import ContingencyTable
from benchmark.metrics.scoring import label_pairs
from test_datasets_cub import write_tree

K = 4
COARSE = (5, 7)
# id -> (path, is_training, class, (W, H), box); keypoints chosen for the edge cases below
IMAGES = {
    1: ("001.Black_footed_Albatross/a_1.jpg", 0, 1, (64, 32), (4.0, 2.0, 50.0, 25.0)),
    2: ("002.Laysan_Albatross/b_2.jpg", 0, 2, (45, 70), (3.0, 9.0, 30.0, 50.0)),
    3: ("002.Laysan_Albatross/c_3.jpg", 0, 2, (50, 50), (3.0, 3.0, 40.0, 40.0)),
    4: ("004.Groove_billed_Ani/d_4.jpg", 1, 4, (40, 30), (2.0, 3.0, 30.0, 20.0)),
}


def keypoints(image_id):
    w, h = IMAGES[image_id][3]
    rows = [((3.0 + 4.7 * p) % w, (2.0 + 2.3 * p) % h, 1 if p % 4 else 0) for p in range(15)]
    if image_id == 1:  # 64x32 at S = 32: scale 1, crop left 16
        rows[1] = (48.0, 10.0, 1)  # x = 32 after the crop: on the far edge, visible, reads zero padding
        rows[2] = (10.0, 10.0, 1)  # left of the crop: invisible
        rows[3] = (16.0, 31.0, 1)  # x = 0 after the crop: on the near edge, visible
        rows[5] = (56.0, 12.0, 1)  # right of the crop: invisible
    return [(x, y, v) if v else (0.0, 0.0, 0) for x, y, v in rows]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("cubw") / "CUB_200_2011", images=IMAGES, keypoints=keypoints,
                      segment_ids=tuple(IMAGES))


def coarse_maps(image_id: int) -> torch.Tensor:
    """``(K + 1, h, w)`` maps in the reference layout ``[parts, background]``, with exact ties: image 1's
    background equals part 1 everywhere, image 2's part 2 equals part 3 (upsampling keeps them equal)."""
    g = torch.Generator().manual_seed(image_id)
    maps = torch.rand(K + 1, *COARSE, generator=g)
    if image_id == 1:
        maps[K] = maps[1]
    if image_id == 2:
        maps[3] = maps[2]
    return maps


# -- the independent implementation of the reference steps ------------------------------------------------
def reference_labels(root, size: int, crop: bool):
    """(gt, pred) over the test split, computed as the PDiscoFormer evaluator does, image by image."""
    import torchvision.transforms as T
    import torchvision.transforms.functional as TF

    gts, preds = [], []
    for image_id, (rel, train, *_rest) in IMAGES.items():
        if train:
            continue
        image = Image.open(root / "images" / rel).convert("RGB")
        w, h = image.size
        factor = size / w if h >= w else size / h
        parts = torch.tensor([[p + 1, x, y, v] for p, (x, y, v) in enumerate(keypoints(image_id))],
                             dtype=torch.float32)
        for j in range(15):
            if abs(parts[j][-1]) > 1e-5:
                parts[j][-3] = parts[j][-3] * factor
                parts[j][-2] = parts[j][-2] * factor
        tensor = T.ToTensor()(T.Resize(size)(image))
        if crop:
            ih, iw = tensor.shape[-2:]
            tensor = TF.center_crop(tensor, [size, size])
            top, left = int(round((ih - size) / 2.0)), int(round((iw - size) / 2.0))
            for j in range(15):
                if parts[j][-1] == 0:
                    continue
                parts[j][1] -= left
                parts[j][2] -= top
                if parts[j][1] > size or parts[j][2] > size or parts[j][1] < 0 or parts[j][2] < 0:
                    parts[j][-1] = 0
                parts[j][1] = min(max(0, parts[j][1]), size)
                parts[j][2] = min(max(0, parts[j][2]), size)
        inputs = tensor[None]
        maps = F.interpolate(coarse_maps(image_id)[None], size=inputs.shape[-2:], mode="bilinear",
                             align_corners=False)
        landmarks = parts[None]
        visible = landmarks[:, :, 3] > 0.5
        points = landmarks[:, :, 1:3].unsqueeze(2).clone()
        points[:, :, :, 0] /= inputs.shape[-1]
        points[:, :, :, 1] /= inputs.shape[-2]
        assert points.min() > -1e-7 and points.max() < 1 + 1e-7
        points = points * 2 - 1
        sampled = F.grid_sample(maps.float(), points, mode="nearest", align_corners=False)
        pred = torch.argmax(sampled, dim=1).squeeze(2)[visible]
        gt = torch.arange(15)[None][visible]
        gts.append(gt.numpy())
        preds.append(pred.numpy())
    return np.concatenate(gts), np.concatenate(preds)


# -- partbench's path ------------------------------------------------------------------------------------
def partbench_pairs(root, protocol: str, batch_size: int, role: str = "full"):
    ds = D.load("cub", root=root, split="test", view="whole", protocol=protocol, masks="method")
    assert ds.protocol.align_corners("whole") is False  # the reference's upsampling, whatever the method's
    table, seen = ContingencyTable(), []
    for batch in ds.batches(batch_size):
        ids = [int(ds._paths.tolist().index(path)) + 1 for path in batch.ids]
        seen += ids
        coarse = torch.stack([coarse_maps(i) for i in ids])
        ours = torch.cat([coarse[:, K:], coarse[:, :K]], dim=1)  # partbench's layout: background first
        maps = PartMaps(ours, image_size=batch.size, has_background=True, kind="probs", align_corners=False)
        true, pred = label_pairs(maps, batch, role=role, ground_truth="keypoints", protocol=ds.protocol,
                                 background="method")[role]
        table.update(true, pred)
    return table, sorted(seen)


@pytest.mark.parametrize("protocol, size, crop", [("whole-image:32-crop", 32, True), ("whole-image:40", 40, False)])
def test_nmi_ari_equal_the_reference_steps(root, protocol, size, crop):
    gt, pred = reference_labels(root, size, crop)
    for batch_size in (1, 2, 3):  # the result does not depend on the batch size
        table, seen = partbench_pairs(root, protocol, batch_size)
        assert seen == [1, 2, 3]
        assert table.total == len(gt)
        assert table.nmi() == pytest.approx(normalized_mutual_info_score(gt, pred), abs=1e-12)
        assert table.ari() == pytest.approx(adjusted_rand_score(gt, pred), abs=1e-12)


def test_edge_keypoints_and_ties_read_like_the_reference(root):
    ds = D.load("cub", root=root, split="test", view="whole", protocol="whole-image:32-crop", masks="method")
    sample = ds[0]  # image 1: 64x32, scale 1, crop left 16
    assert sample.size == (32, 32) == ds.image_size(0)
    assert sample.visible[1] and float(sample.keypoints[1, 0]) == 32.0  # far edge: visible
    assert not sample.visible[2] and not sample.visible[5]  # beyond the crop: invisible
    assert sample.visible[3] and float(sample.keypoints[3, 0]) == 0.0
    gt, pred = reference_labels(root, 32, True)
    table, _ = partbench_pairs(root, "whole-image:32-crop", 1)
    # image 1: background == part 1 everywhere; the reference's [parts, background] argmax never says background
    first = ds[0].visible.sum().item()
    assert K not in pred[:first].tolist()
    # the far-edge keypoint reads all-zero scores -> the reference's channel 0 (the first part)
    b = ds.batches(1)
    batch = next(iter(b))
    coarse = coarse_maps(1)[None]
    maps = PartMaps(torch.cat([coarse[:, K:], coarse[:, :K]], 1), image_size=batch.size, has_background=True,
                    kind="probs")
    true, ours = label_pairs(maps, batch, role="full", ground_truth="keypoints", protocol=ds.protocol,
                             background="method")["full"]
    assert int(ours[(true == 1).nonzero()[0, 0]]) == 1  # label 1 = the first part, as the reference's index 0
    assert (ours != 0).all()  # ties between the background and part 1 go to the part
    # the reference's prediction, mapped to partbench's labels (background K -> 0, part j -> j + 1)
    mapped = np.where(pred[:first] == K, 0, pred[:first] + 1)
    assert ours.tolist() == mapped.tolist()


def test_fg_metrics_read_the_k_foreground_channels(root):
    """MPAE's FG-NMI: the argmax over the K part channels at the visible keypoints of the same view."""
    ds = D.load("cub", root=root, split="test", view="whole", protocol="whole-image:32-crop", masks="method")
    batch = next(iter(ds.batches(1)))
    coarse = coarse_maps(1)[None]
    maps = PartMaps(torch.cat([coarse[:, K:], coarse[:, :K]], 1), image_size=batch.size, has_background=True,
                    kind="probs")
    true, pred = label_pairs(maps, batch, role="fg", ground_truth="keypoints", protocol=ds.protocol,
                             background="method")["fg"]
    up = F.interpolate(coarse[:, :K], size=batch.size, mode="bilinear", align_corners=False)
    points = batch.keypoints[0][batch.visible[0]].clone()
    grid = (points / torch.tensor([32.0, 32.0]) * 2 - 1).view(1, 1, -1, 2)
    expected = F.grid_sample(up, grid, mode="nearest", align_corners=False).argmax(1).view(-1)
    assert pred.tolist() == expected.tolist() and true.tolist() == batch.visible[0].nonzero().view(-1).tolist()


def test_method_without_background_uses_the_mask_source(root):
    """A method without a background channel: background where the run's masks say 0, else the part argmax."""
    ds = D.load("cub", root=root, split="test", view="whole", protocol="whole-image:32-crop", masks="gt")
    batch = next(iter(ds.batches(1)))
    parts = coarse_maps(1)[None, :K]
    maps = PartMaps(parts, image_size=batch.size, kind="probs")
    true, pred = label_pairs(maps, batch, role="full", ground_truth="keypoints", protocol=ds.protocol,
                             background="mask")["full"]
    assert set(batch.masks.unique().tolist()) <= {0.0, 1.0}
    up = F.interpolate(parts, size=batch.size, mode="bilinear", align_corners=False)[0]
    for t, p in zip(true.tolist(), pred.tolist()):
        x, y = batch.keypoints[0, t].tolist()
        col, row = min(int(np.floor(x)), 31), min(int(np.floor(y)), 31)
        if x >= 32 or y >= 32:
            continue  # read outside: the first channel
        expected = 0 if batch.masks[0, row, col] == 0 else int(up[:, row, col].argmax()) + 1
        assert p == expected


def test_protocol_spelling_and_rows(tmp_path):
    assert canonical_protocol("whole-image:448") == "whole-image"
    assert canonical_protocol("whole-image:518-crop") == "whole-image:518-crop"
    for bad in ("whole-image:0", "whole-image:518-crp", "legacy:448", "wholeimage"):
        with pytest.raises(UserError, match="whole-image:518-crop"):
            canonical_protocol(bad)
    with pytest.raises(UserError, match="no whole-image view"):
        D.load("deepfashion", root=tmp_path, protocol="whole-image")
    assert EvaluationProtocol.resolve("whole-image:224-crop").identity()["protocol"] == "whole-image:224-crop"


def test_cli_run_records_the_protocol(tmp_path):
    from click.testing import CliRunner

    from benchmark.cli import cli

    result = CliRunner().invoke(cli, ["run", "-m", "random", "-d", "synthetic", "--protocol", "whole-image:64-crop",
                                      "-o", "num_train=4", "-o", "num_test=4", "-o", "image_size=32",
                                      "--out", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    from benchmark.results import read_rows

    rows = read_rows(next(tmp_path.rglob("*.csv")))
    assert {r["protocol"] for r in rows} == {"whole-image:64-crop"}
    assert {r["supervision"] for r in rows} == {"none"}  # the method's track, in every row
    assert {r["metric"] for r in rows} == {"fg_nmi", "fg_ari", "nmi", "ari"}  # no landmark regression
    assert {r["view"] for r in rows} == {"full"}
    bad = CliRunner().invoke(cli, ["run", "-m", "random", "-d", "synthetic", "--protocol", "whole-image:x"])
    assert bad.exit_code == 2 and "whole-image:518-crop" in bad.output
