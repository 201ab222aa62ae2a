"""Tests of the built-in ``synthetic`` dataset (small splits, 48-64 px, no files outside tmp_path)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

import benchmark.datasets
from benchmark.core.errors import UserError
from benchmark.core.registry import DATASETS
from benchmark.core.types import Batch
from benchmark.datasets.synthetic import SyntheticCreatures, resample, square_crop, tight_bbox

SMALL = {"num_train": 24, "num_test": 16, "image_size": 48}


def make(split="test", view="fg", **kw):
    return SyntheticCreatures(split=split, view=view, **{**SMALL, **kw})


def same(a, b):
    assert a.id == b.id
    for name in ("image", "keypoints", "visible", "mask", "part_labels", "bbox"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x, y), name


def digest(ds, n):
    h = hashlib.sha256()
    for i in range(n):
        s = ds[i]
        for t in (s.image, s.part_labels, s.keypoints, s.visible):
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def swap_side(name):
    return name.replace("left", "\0").replace("right", "left").replace("\0", "right")


# -- registration, options -------------------------------------------------------------------------------
def test_registered_and_loadable_without_root():
    assert DATASETS.get("synthetic") is SyntheticCreatures
    ds = benchmark.datasets.load("synthetic", split="test", view="fg")
    assert len(ds) == 200 and ds.image_size(0) == (64, 64)
    ds[0].validate()
    assert not SyntheticCreatures.needs_data_root
    assert SyntheticCreatures.landmark_protocol == "kanazawa-crop"
    assert (SyntheticCreatures.landmark_view, SyntheticCreatures.landmark_fit_split) == ("fg", "train")
    assert (SyntheticCreatures.fg_view, SyntheticCreatures.full_view) == ("fg", "full")
    assert len(SyntheticCreatures.keypoint_names) == 15 and SyntheticCreatures.protocol_description


def test_options_roundtrip_and_identity():
    ds = make(seed=3, difficulty=0.25, ground_truth="keypoints")
    assert ds.options() == {**SMALL, "seed": 3, "difficulty": 0.25, "ground_truth": "keypoints"}
    assert ds.ground_truth == "keypoints" and SyntheticCreatures.ground_truth == "pixels"
    other = ds.with_view(split="train", view="full")
    assert (other.split, other.view, len(other)) == ("train", "full", SMALL["num_train"])
    assert other.options() == ds.options()
    assert ds.identity() == make(seed=3, difficulty=0.25, ground_truth="keypoints").identity()
    assert ds.identity() != make(seed=4, difficulty=0.25, ground_truth="keypoints").identity()
    # The root is ignored, so it cannot change the identity (the cache key).
    assert SyntheticCreatures("/nonexistent", **SMALL).identity() == make().identity()
    demo = SyntheticCreatures.demo_options()
    assert 64 <= demo["num_test"] <= 96 and 128 <= demo["num_train"] <= 192 and 48 <= demo["image_size"] <= 64


def test_ground_truth_does_not_depend_on_the_protocol():
    for view in ("full", "fg"):
        same(make(view=view)[2], make(view=view, protocol="legacy")[2])


def test_options_given_as_strings_are_parsed():
    ds = make(num_test="12", difficulty="0.3", seed="2")
    assert (len(ds), ds.difficulty, ds.seed) == (12, 0.3, 2)
    assert make(seed=2**62 + 1).seed == 2**62 + 1  # derived 63-bit seeds stay exact


@pytest.mark.parametrize("bad", [{"difficulty": 1.5}, {"difficulty": "hard"}, {"num_test": -1}, {"num_test": 2.5},
                                 {"image_size": 8}, {"seed": "x"}, {"ground_truth": "boxes"},
                                 {"masks": "predicted:/nonexistent/dir"}, {"view": "crop"}])
def test_bad_options_raise_user_error(bad):
    with pytest.raises(UserError):
        make(**bad)


# -- determinism -----------------------------------------------------------------------------------------
def test_deterministic_across_instances_and_seeds():
    for view in ("full", "fg"):
        a, b = make(view=view), make(view=view)
        for i in (0, 5, 15):
            same(a[i], b[i])
    a, c = make(view="full"), make(view="full", seed=1)
    assert not torch.equal(a[0].image, c[0].image)
    # Train and test are independent streams; a sample does not depend on the split size.
    assert not torch.equal(make(split="train", view="full")[0].image, a[0].image)
    same(make(view="full", num_test=200)[7], a[7])


def test_identical_in_a_fresh_process():
    code = ("import hashlib\nfrom benchmark.datasets.synthetic import SyntheticCreatures as S\n"
            f"ds = S(split='test', view='fg', **{SMALL!r})\nh = hashlib.sha256()\n"
            "for i in range(4):\n"
            "    s = ds[i]\n"
            "    for t in (s.image, s.part_labels, s.keypoints, s.visible):\n"
            "        h.update(t.numpy().tobytes())\n"
            "print(h.hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == digest(make(), 4)


def test_train_view_randomness_follows_torch_global_rng():
    ds = make(split="train", view="train")
    torch.manual_seed(7)
    first = [ds[i] for i in range(6)]
    torch.manual_seed(7)
    again = [ds[i] for i in range(6)]
    for a, b in zip(first, again):
        same(a, b)
    flips = {ds[0].meta["flipped"] for _ in range(30)}
    assert flips == {True, False}


# -- shapes and geometry ---------------------------------------------------------------------------------
@pytest.mark.parametrize("view", ["full", "fg", "train"])
def test_samples_validate_and_follow_conventions(view):
    ds = make(view=view)
    for i in range(len(ds)):
        s = ds[i]
        s.validate()
        assert s.image.shape == (3, 48, 48) and s.image.dtype == torch.float32
        assert 0 <= float(s.image.min()) and float(s.image.max()) <= 1
        assert s.part_labels.dtype == torch.int64 and int(s.part_labels.max()) <= 7
        assert s.keypoints.shape == (15, 2) and s.visible.dtype == torch.bool
        assert s.bbox.shape == (4,) and s.bbox.dtype == torch.float32
        assert s.id == f"test/{i:06d}" and s.meta["index"] == i
        # GT mask == labels != 0, exactly {0, 1}
        assert torch.equal(s.mask, (s.part_labels != 0).float())
        # bbox == tight box of the labelled pixels (numpy oracle), up to the resampling of the crop
        rows, cols = np.nonzero(s.part_labels.numpy())
        oracle = np.array([cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()])
        tol = 0 if view == "full" else 1.5
        assert np.abs(s.bbox.numpy() - oracle).max() <= tol


@pytest.mark.parametrize("view", ["full", "fg", "train"])
def test_visible_keypoints_lie_on_their_part(view):
    ds = make(view=view)
    parts = SyntheticCreatures.keypoint_parts
    total, shown = 0, 0
    for i in range(len(ds)):
        s = ds[i]
        for k in range(15):
            total += 1
            if not s.visible[k]:
                continue
            shown += 1
            x, y = s.keypoints[k].tolist()
            assert 0 <= x < 48 and 0 <= y < 48
            # read with grid_sample(nearest, align_corners=False), the metrics' convention
            grid = torch.tensor([[[[2 * x / 48 - 1, 2 * y / 48 - 1]]]], dtype=torch.float32)
            label = torch.nn.functional.grid_sample(s.part_labels[None, None].float(), grid, mode="nearest",
                                                    align_corners=False)
            assert int(label) == parts[k], (i, SyntheticCreatures.keypoint_names[k])
    assert shown / total > 0.8  # occlusion and borders hide a few, not most


def test_fg_crop_contains_the_object_and_maps_keypoints():
    full, fg = make(view="full"), make(view="fg")
    for i in range(len(full)):
        a, b = full[i], fg[i]
        x0, y0, side = b.meta["crop"]
        ax, ay, aw, ah = a.bbox.tolist()
        # the crop is square, about the bbox centre, 5 % padded on the long side
        assert side == pytest.approx(1.1 * max(aw, ah))
        assert x0 + side / 2 == pytest.approx(ax + aw / 2) and y0 + side / 2 == pytest.approx(ay + ah / 2)
        assert 0 <= x0 and 0 <= y0 and x0 + side <= 48 and y0 + side <= 48
        # no object pixel on the crop's border; the object keeps its area (scaled)
        labels = b.part_labels
        assert not labels[0].any() and not labels[-1].any() and not labels[:, 0].any() and not labels[:, -1].any()
        scaled_area = float(a.mask.sum()) * (48 / side) ** 2
        assert float(b.mask.sum()) == pytest.approx(scaled_area, rel=0.15)
        # keypoints map back to the full image exactly
        back = b.keypoints.double() * side / 48 + torch.tensor([x0, y0], dtype=torch.float64)
        assert torch.allclose(back.float(), a.keypoints, atol=1e-3)


def test_jittered_train_crops_stay_inside_the_image():
    ds = make(view="train")
    torch.manual_seed(1)
    for _ in range(5):
        for i in range(len(ds)):
            s = ds[i]
            x0, y0, side = s.meta["crop"]
            assert 0 <= x0 and 0 <= y0 and x0 + side <= 48 and y0 + side <= 48
            bx, by, bw, bh = s.bbox.tolist()  # the object stays inside the view
            assert bx >= 0 and by >= 0 and bx + bw <= 48 and by + bh <= 48


def test_all_parts_occur_across_a_split():
    ds = make(view="full")
    seen = set()
    for i in range(len(ds)):
        seen |= set(ds[i].part_labels.unique().tolist())
    assert seen == set(range(8))


# -- flips -----------------------------------------------------------------------------------------------
def test_flip_permutations_swap_left_and_right_names():
    kp = SyntheticCreatures.keypoint_names
    perm = SyntheticCreatures.flip_permutation
    assert [kp[perm[i]] for i in range(len(kp))] == [swap_side(n) for n in kp]
    parts = SyntheticCreatures.part_names
    pperm = SyntheticCreatures.part_flip_permutation
    assert [parts[pperm[l]] for l in range(len(parts))] == [swap_side(n) for n in parts]
    # a keypoint's part follows the flip
    kparts = SyntheticCreatures.keypoint_parts
    assert all(kparts[perm[i]] == pperm[kparts[i]] for i in range(len(kp)))


def test_train_flip_mirrors_pixels_and_renames_left_right():
    full, train = make(view="full"), make(view="train")
    names = list(SyntheticCreatures.keypoint_names)
    torch.manual_seed(0)
    checked = {True: 0, False: 0}
    for _ in range(6):
        for i in range(4):
            s = train[i]
            flipped = s.meta["flipped"]
            checked[flipped] += 1
            # Oracle: crop the full view with the same box, then mirror with numpy and rename by name.
            src = full[i]
            crop = tuple(s.meta["crop"])
            img = resample(src.image, crop, 48, "bilinear")
            lab = resample(src.part_labels[None].double(), crop, 48, "nearest")[0].long().numpy()
            kps = ((src.keypoints.double() - torch.tensor(crop[:2])) * 48 / crop[2]).numpy()
            if flipped:
                img = img.flip(-1)
                names_to_label = {n: l for l, n in enumerate(SyntheticCreatures.part_names)}
                rename = np.array([names_to_label[swap_side(n)] for n in SyntheticCreatures.part_names])
                lab = rename[lab[:, ::-1]]
                kps = np.stack([48 - kps[:, 0], kps[:, 1]], 1)[[names.index(swap_side(n)) for n in names]]
            assert torch.allclose(s.image, img, atol=1e-6)
            assert np.array_equal(s.part_labels.numpy(), lab)
            assert np.allclose(s.keypoints.numpy(), kps, atol=1e-3)
            if flipped:  # the creature's left limbs are now where its right limbs were
                left = s.keypoints[names.index("left_front_paw")]
                assert left[0].item() == pytest.approx(48 - src_crop_x(src, crop, names.index("right_front_paw")), abs=1e-3)
    assert checked[True] and checked[False]


def src_crop_x(src, crop, k):
    return (src.keypoints[k, 0].item() - crop[0]) * 48 / crop[2]


def test_creature_left_is_image_left_when_upright():
    """Seen from above with the head up, left limbs lie left of the body axis (in every view)."""
    names = SyntheticCreatures.keypoint_names
    for view in ("full", "fg", "train"):
        ds = make(view=view)
        wrong = 0
        for i in range(len(ds)):
            kp = ds[i].keypoints.numpy()
            axis = kp[names.index("chest")] - kp[names.index("rump")]  # points to the head
            for side_name, expected in (("left", -1), ("right", 1)):
                for limb in ("front_paw", "back_paw"):
                    paw = kp[names.index(f"{side_name}_{limb}")] - kp[names.index("chest")]
                    cross = axis[0] * paw[1] - axis[1] * paw[0]  # < 0: image-left of the axis (y down)
                    wrong += int(np.sign(cross) != expected)
        assert wrong <= 2, view


# -- masks -----------------------------------------------------------------------------------------------
def test_mask_sources(tmp_path):
    assert make(masks="none")[0].mask is None
    full = make(view="full")
    for i in range(len(full)):
        m = full[i].mask.numpy().astype(np.uint8)
        m[0, :5] = 1  # a predicted mask that is not the GT
        (tmp_path / "test").mkdir(exist_ok=True)
        Image.fromarray(m * (255 if i % 2 else 1)).save(tmp_path / "test" / f"{i:06d}.png")
    pred = make(view="full", masks=f"predicted:{tmp_path}")
    s = pred[1]
    assert set(s.mask.unique().tolist()) == {0.0, 1.0} and s.mask[0, :5].eq(1).all()
    assert torch.equal(pred[2].mask, s.mask.new_tensor(np.asarray(Image.open(tmp_path / "test/000002.png"), np.float32)))
    legacy = make(view="full", masks=f"predicted:{tmp_path}", protocol="legacy")
    assert float(legacy[1].mask.max()) == 255.0  # raw values under the legacy protocol
    fg = make(view="fg", masks=f"predicted:{tmp_path}")[3]
    assert set(fg.mask.unique().tolist()) <= {0.0, 1.0}
    legacy_fg = make(view="fg", masks=f"predicted:{tmp_path}", protocol="legacy")[3]
    assert float(legacy_fg.mask.max()) == pytest.approx(255.0)
    # labels are GT regardless of the mask source
    assert torch.equal(fg.part_labels, make(view="fg")[3].part_labels)
    torch.manual_seed(3)
    train = make(view="train", masks=f"predicted:{tmp_path}")[5]
    train.validate()
    assert set(train.mask.unique().tolist()) <= {0.0, 1.0}
    (tmp_path / "test" / "000004.png").unlink()
    with pytest.raises(UserError, match="000004.png"):
        pred[4]


# -- batches, speed by count, usefulness ------------------------------------------------------------------
def test_batches_collate():
    ds = make(view="fg")
    batches = list(ds.batches(batch_size=5))
    assert [len(b) for b in batches] == [5, 5, 5, 1]
    b = batches[0]
    assert isinstance(b, Batch) and b.images.shape == (5, 3, 48, 48) and b.part_labels.shape == (5, 48, 48)
    assert b.keypoints.shape == (5, 15, 2) and b.visible.shape == (5, 15) and b.bboxes.shape == (5, 4)
    assert b.ids == [f"test/{i:06d}" for i in range(5)]


def test_generates_hundreds_of_samples():
    ds = SyntheticCreatures(split="train", view="full", num_train=300, image_size=48)
    ids = set()
    for batch in ds.batches(batch_size=50):
        ids.update(batch.ids)
        assert batch.masks.sum() > 0
    assert len(ids) == 300


def test_parts_are_recoverable_from_colour_and_position():
    """K-means on (colour, position) of foreground pixels beats uniform random part maps by far."""
    ds = make(view="fg", difficulty=0.5)
    feats, gt = [], []
    for i in range(12):
        s = ds[i]
        fg = s.mask.bool()
        yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
        feats.append(torch.cat([s.image[:, fg].T * 2, torch.stack([xx[fg], yy[fg]], 1) / 48], 1).numpy())
        gt.append(s.part_labels[fg].numpy())
    x, y = np.concatenate(feats), np.concatenate(gt)
    pred = KMeans(7, n_init=2, random_state=0).fit_predict(x)
    rand = np.random.default_rng(0).integers(0, 7, size=len(y))
    assert normalized_mutual_info_score(y, pred) > 0.25
    assert normalized_mutual_info_score(y, rand) < 0.02
    assert normalized_mutual_info_score(y, y) == pytest.approx(1.0)


def test_geometry_helpers_against_hand_values():
    mask = torch.zeros(10, 12, dtype=torch.bool)
    mask[2:5, 3:9] = True
    assert tight_bbox(mask).tolist() == [3.0, 2.0, 6.0, 3.0]
    # pad 5 % of (w=20, h=10) -> (9, 19.5, 31, 30.5), square side 22 about the centre (20, 25)
    assert square_crop(torch.tensor([10.0, 20.0, 20.0, 10.0])) == pytest.approx((9.0, 14.0, 22.0))
    jit = square_crop(torch.tensor([10.0, 20.0, 20.0, 10.0]), torch.tensor([0.05, 0.0, 0.05, 0.0]))
    assert jit == pytest.approx((10.0, 14.0, 22.0))
    # a crop aligned with pixels at the output size is an exact copy (pixel centres coincide)
    img = torch.rand(3, 16, 16)
    assert torch.allclose(resample(img, (4.0, 2.0, 8.0), 8, "bilinear"), img[:, 2:10, 4:12], atol=1e-6)
    lab = torch.randint(0, 8, (1, 16, 16))
    assert torch.equal(resample(lab.double(), (4.0, 2.0, 8.0), 4, "nearest").long(), lab[:, 2:10:2, 4:12:2])
