"""Landmark regression under ``--protocol whole-image`` (the ``whole-image-bbox`` landmark protocol, the
"Kp" column of PDiscoNet / PDiscoFormer) against an independent implementation of the reference steps,
written here from their description (docs/protocol.md): torchvision ``Resize(S)`` (+ ``center_crop``),
keypoints and box scaled by ``S / short side`` and shifted by the crop (box corner clamped into the crop,
keypoints beyond it invisible), part centres on the maps as emitted with ``meshgrid(indexing="ij")``
centroids scaled to input pixels, parts active where their probability exceeds 0.5, everything mapped into
the box, then per keypoint scikit-learn ``StandardScaler`` + ``LinearRegression(fit_intercept=False)`` with
inactive standardised centres set to 0, mean L2 over visible (image, keypoint) pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import StandardScaler

import benchmark.datasets as D
from benchmark.core.registry import METRICS
from benchmark.core.types import PartMaps
from benchmark.metrics.landmarks import active_parts, part_centres, regression_error
from test_datasets_cub import write_tree

K = 3
COARSE = (5, 6)
SIZES = [(64, 32), (45, 70), (50, 50), (40, 30), (36, 52), (60, 44), (33, 33), (48, 64)]


def _images():
    """16 train and 6 test images of varied sizes and boxes (some boxes reach past the crop)."""
    images = {}
    for i in range(1, 23):
        w, h = SIZES[i % len(SIZES)]
        box = (float(i % 5), float(i % 3), w - 4.0 - i % 7, h - 3.0 - i % 4)
        images[i] = (f"00{1 + i % 2}.Bird/img_{i}.jpg", 0 if i > 16 else 1, 1 + i % 2, (w, h), box)
    return images


IMAGES = _images()


def keypoints(image_id):
    """5 keypoints per image; keypoint 2 is invisible in some images, and long images put some keypoints
    beyond the centred crop (they turn invisible there)."""
    w, h = IMAGES[image_id][3]
    rng = np.random.default_rng(image_id)
    rows = []
    for p in range(15):
        x, y = float(rng.uniform(1, w - 1)), float(rng.uniform(1, h - 1))
        visible = p < 5 and not (p == 2 and image_id % 3 == 0)
        rows.append((round(x, 1), round(y, 1), 1) if visible else (0.0, 0.0, 0))
    return rows


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("cubkp") / "CUB_200_2011", images=IMAGES, keypoints=keypoints,
                      segment_ids=())


def coarse_probs(image_id: int) -> torch.Tensor:
    """``(K + 1, h, w)`` probabilities in the reference layout ``[parts, background]``. Part 2 peaks above
    0.5 only in even images (inactive in the odd ones); the others are peaked everywhere."""
    g = torch.Generator().manual_seed(100 + image_id)
    logits = torch.randn(K + 1, *COARSE, generator=g)
    logits[0, image_id % COARSE[0], (2 * image_id) % COARSE[1]] += 6.0
    logits[1, (image_id + 2) % COARSE[0], image_id % COARSE[1]] += 6.0
    if image_id % 2 == 0:
        logits[2, (3 * image_id) % COARSE[0], (image_id + 1) % COARSE[1]] += 6.0
    else:
        logits[2] -= 3.0
    return logits.softmax(dim=0)


# -- the independent implementation of the reference steps ------------------------------------------------
def reference_split(root, train: bool, size: int, crop: bool):
    """(centres (N, 2K), landmarks (N, P*2), visible (N, P*2), active (N, 2K)) of one split, image by image."""
    import torchvision.transforms as T
    import torchvision.transforms.functional as TF

    out = {"centres": [], "annos": [], "masks": [], "active": []}
    for image_id, (rel, is_train, _cls, _wh, box) in IMAGES.items():
        if bool(is_train) != train:
            continue
        image = Image.open(root / "images" / rel).convert("RGB")
        w, h = image.size
        factor = size / w if h >= w else size / h
        parts = torch.tensor([[p + 1, x, y, v] for p, (x, y, v) in enumerate(keypoints(image_id))][:5],
                             dtype=torch.float32)
        boxes = torch.tensor([image_id, *box], dtype=torch.float32)
        for j in range(5):
            if abs(parts[j][-1]) > 1e-5:
                parts[j][-3] = parts[j][-3] * factor
                parts[j][-2] = parts[j][-2] * factor
        boxes[1:] *= factor
        tensor = T.ToTensor()(T.Resize(size)(image))
        if crop:
            ih, iw = tensor.shape[-2:]
            tensor = TF.center_crop(tensor, [size, size])
            top, left = int(round((ih - size) / 2.0)), int(round((iw - size) / 2.0))
            for j in range(5):
                if parts[j][-1] == 0:
                    continue
                parts[j][1] -= left
                parts[j][2] -= top
                if parts[j][1] > size or parts[j][2] > size or parts[j][1] < 0 or parts[j][2] < 0:
                    parts[j][-1] = 0
                parts[j][1] = min(max(0, parts[j][1]), size)
                parts[j][2] = min(max(0, parts[j][2]), size)
            boxes[1] = min(max(0, boxes[1] - left), size)
            boxes[2] = min(max(0, boxes[2] - top), size)
        inputs = tensor[None]
        assignment = coarse_probs(image_id)[None][:, :-1]
        maxes = assignment.max(-1)[0].max(-1)[0]
        active = torch.where(maxes > 0.5, 1, 0).unsqueeze(-1).expand(-1, -1, 2)
        grid_x, grid_y = torch.meshgrid(torch.arange(assignment.shape[2]), torch.arange(assignment.shape[3]),
                                        indexing="ij")
        sums = assignment.sum(3).sum(2)
        loc_x = (grid_x * assignment).sum(3).sum(2) / sums
        loc_y = (grid_y * assignment).sum(3).sum(2) / sums
        x_centroid = loc_x * inputs.shape[-2] / assignment.shape[-2]
        y_centroid = loc_y * inputs.shape[-1] / assignment.shape[-1]
        centres = torch.stack((y_centroid, x_centroid), dim=-1)
        landmarks = parts[None][:, :, -3:-1].clone()
        masks = parts[None][:, :, -1].unsqueeze(2).expand_as(landmarks)
        bbox = boxes[None].unsqueeze(2)
        centres[:, :, 0] = (centres[:, :, 0] - bbox[:, 1]) / bbox[:, 3]
        centres[:, :, 1] = (centres[:, :, 1] - bbox[:, 2]) / bbox[:, 4]
        landmarks[:, :, 0] = (landmarks[:, :, 0] - bbox[:, 1]) / bbox[:, 3]
        landmarks[:, :, 1] = (landmarks[:, :, 1] - bbox[:, 2]) / bbox[:, 4]
        out["centres"].append(centres.reshape(1, -1))
        out["annos"].append(landmarks.reshape(1, -1))
        out["masks"].append(masks.reshape(1, -1))
        out["active"].append(active.reshape(1, -1))
    return {k: torch.cat(v).numpy().astype(np.float64) for k, v in out.items()}


def reference_error(root, size: int, crop: bool) -> float:
    fit, ev = reference_split(root, True, size, crop), reference_split(root, False, size, crop)
    error, n_valid = 0.0, 0
    for i in range(5):
        fit_sel, eval_sel = np.abs(fit["masks"][:, 2 * i]) > 1e-5, np.abs(ev["masks"][:, 2 * i]) > 1e-5
        fit_x, fit_y = fit["centres"][fit_sel], fit["annos"][fit_sel, 2 * i:2 * i + 2]
        eval_x, eval_y = ev["centres"][eval_sel], ev["annos"][eval_sel, 2 * i:2 * i + 2]
        scaler_x, scaler_y = StandardScaler().fit(fit_x), StandardScaler().fit(fit_y)
        fit_std = np.where(fit["active"][fit_sel], scaler_x.transform(fit_x), 0)
        regressor = LinearRegression(fit_intercept=False).fit(fit_std, scaler_y.transform(fit_y))
        eval_std = np.where(ev["active"][eval_sel], scaler_x.transform(eval_x), 0)
        pred = scaler_y.inverse_transform(regressor.predict(eval_std))
        error += np.mean(np.sqrt(((pred - eval_y) ** 2).sum(axis=1))) * len(eval_y)
        n_valid += len(eval_y)
    return error * 100 / n_valid


# -- partbench's path ------------------------------------------------------------------------------------
def partbench_error(root, protocol: str, batch_size: int) -> float:
    test = D.load("cub", root=root, split="test", view="whole", protocol=protocol, masks="method")
    assert test.landmark_protocol == "whole-image-bbox" and test.landmark_view == "whole"
    metric = METRICS.get("landmark_error")(protocol=test.protocol, landmark_protocol=test.landmark_protocol)
    for split, data in (("eval", test), ("fit", test.with_view(split=test.landmark_fit_split))):
        for batch in data.batches(batch_size):
            ids = [int(data._paths.tolist().index(path)) + 1 for path in batch.ids]
            coarse = torch.stack([coarse_probs(i) for i in ids])
            ours = torch.cat([coarse[:, K:], coarse[:, :K]], dim=1)  # partbench's layout: background first
            maps = PartMaps(ours, image_size=batch.size, has_background=True, kind="probs")
            metric.update(batch, maps, split=split)
    return metric.compute() * 100


@pytest.mark.parametrize("protocol, size, crop, batch_size",
                         [("whole-image:32-crop", 32, True, 4), ("whole-image:40", 40, False, 1)])
def test_landmark_error_matches_reference_steps(root, protocol, size, crop, batch_size):
    expected = reference_error(root, size, crop)
    assert partbench_error(root, protocol, batch_size) == pytest.approx(expected, rel=1e-5)


def test_inactive_parts_change_the_regression(root):
    """Zeroing inactive centres is part of the reference: all-active gives another number."""
    fit, ev = reference_split(root, True, 32, True), reference_split(root, False, 32, True)
    assert 0 < fit["active"].mean() < 1 and 0 < ev["active"].mean() < 1
    shape = lambda a: a.reshape(len(a), -1, 2)  # noqa: E731
    vis = lambda a: a[:, ::2] > 0.5  # noqa: E731
    args = (shape(fit["centres"]), shape(fit["annos"]), shape(ev["centres"]), shape(ev["annos"]))
    with_active = regression_error(*args, protocol="whole-image-bbox", fit_visible=vis(fit["masks"]),
                                   eval_visible=vis(ev["masks"]), fit_active=fit["active"][:, ::2] > 0,
                                   eval_active=ev["active"][:, ::2] > 0)
    assert with_active * 100 == pytest.approx(reference_error(root, 32, True), rel=1e-5)
    all_active = regression_error(*args, protocol="whole-image-bbox", fit_visible=vis(fit["masks"]),
                                  eval_visible=vis(ev["masks"]))
    assert abs(all_active - with_active) > 1e-4


def test_centres_on_the_emitted_maps_by_hand():
    """One part on a 2x4 map, mass on (row 1, col 3) and (row 0, col 1): the centroid of 0-based indices
    scaled by 8 / 2 and 16 / 4; active where a probability exceeds 0.5."""
    probs = torch.zeros(1, 3, 2, 4)
    probs[0, 0] = 1.0  # background channel
    probs[0, 0, 1, 3], probs[0, 1, 1, 3] = 0.25, 0.75
    probs[0, 0, 0, 1], probs[0, 1, 0, 1] = 0.75, 0.25
    probs[0, 2, 0, 0], probs[0, 0, 0, 0] = 0.5, 0.5  # part 2 never exceeds 0.5: inactive
    maps = PartMaps(probs, image_size=(8, 16), has_background=True, kind="probs")
    centres = part_centres(maps, protocol="whole-image-bbox", size=(8, 16))
    x = (0.75 * 3 + 0.25 * 1) / 1.0 * 4
    y = (0.75 * 1 + 0.25 * 0) / 1.0 * 4
    assert centres[0, 0].tolist() == pytest.approx([x, y])
    assert centres[0, 1].tolist() == pytest.approx([0.0, 0.0])
    assert active_parts(maps, size=(8, 16)).tolist() == [[True, False]]
