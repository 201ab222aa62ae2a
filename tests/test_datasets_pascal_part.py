"""PASCAL-Part loader on a miniature VOC2010 + Annotations_Part tree (.mat files in the real struct layout)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from click.testing import CliRunner
from PIL import Image

import benchmark.datasets as D
from benchmark.core.errors import UserError

W, H = 100, 80


def struct(shape, fields):
    return np.zeros(shape, dtype=[(f, "O") for f in fields])


def box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1 + 1, x0:x1 + 1] = 1
    return m


def write_mat(path, objects):
    """objects: list of (class, mask, [(part_name, mask), ...]) -> the PASCAL-Part .mat layout."""
    objs = struct((1, len(objects)), ["class", "class_ind", "mask", "parts"])
    for k, (cls, mask, parts) in enumerate(objects):
        p = struct((1, len(parts)) if parts else (0, 0), ["part_name", "mask"])
        for j, (name, pm) in enumerate(parts):
            p[0, j]["part_name"] = np.array([name])
            p[0, j]["mask"] = pm
        objs[0, k]["class"] = np.array([cls])
        objs[0, k]["class_ind"] = np.array([[7]])
        objs[0, k]["mask"] = mask
        objs[0, k]["parts"] = p
    anno = struct((1, 1), ["imname", "objects"])
    anno[0, 0]["imname"] = np.array([path.stem])
    anno[0, 0]["objects"] = objs
    scipy.io.savemat(str(path), {"anno": anno})


def car_objects():
    body = box_mask(20, 30, 59, 49)  # 40 x 20 box: area (59-20)*(49-30)/(100*80) = 0.0926
    big = box_mask(5, 5, 94, 74)
    return [
        ("person", box_mask(0, 0, 10, 10), [("head", box_mask(0, 0, 3, 3))]),
        ("car", big, [("door_1", box_mask(10, 10, 50, 50)),       # listed first: wins the overlap
                      ("window_2", box_mask(30, 30, 70, 60)),
                      ("wheel_1", box_mask(60, 60, 80, 70)),
                      ("wheel3", box_mask(20, 60, 30, 70))]),      # digit suffix without '_'
        ("car", body, [("frontside", body)]),                      # small: filtered at 20 %, kept at 5 %
        ("car", big, []),                                          # no parts: skipped and counted
    ]


def write_tree(root, *, unknown_part=False):
    voc = root / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations_Part").mkdir()
    rng = np.random.default_rng(0)
    ids = {"2008_000001": car_objects(), "2008_000002": [("cat", box_mask(0, 0, 99, 79), [("head", box_mask(0, 0, 9, 9))])],
           "2008_000003": [("car", box_mask(0, 20, 99, 79), [("leftside", box_mask(0, 20, 99, 79))] +
                            ([("spoiler", box_mask(0, 0, 5, 5))] if unknown_part else []))]}
    for image_id, objects in ids.items():
        img = np.zeros((H, W, 3), np.uint8)
        img[..., 0] = np.arange(W)[None, :] * 2  # red = 2 * column, green = 3 * row: position readable
        img[..., 1] = np.arange(H)[:, None] * 3
        img[..., 2] = rng.integers(0, 20, (H, W))
        Image.fromarray(img).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=100, subsampling=0)
        write_mat(root / "Annotations_Part" / f"{image_id}.mat", objects)
    for split in ("train", "val"):
        (voc / "ImageSets/Main" / f"car_{split}.txt").write_text("2008_000001  1\n2008_000002 -1\n2008_000003  0\n")
        (voc / "ImageSets/Main" / f"cat_{split}.txt").write_text("2008_000001 -1\n2008_000002  1\n2008_000003 -1\n")
    return root


@pytest.fixture(scope="module")
def pp_root(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("pascal"))


def test_filters_and_counts(pp_root):
    ds = D.load("pascal-part", root=pp_root, split="test", category="car")
    assert [ds[i].id for i in range(len(ds))] == ["2008_000001/1", "2008_000003/0"]  # unique per object
    summary = ds.summary()
    assert summary["objects_of_category"] == 4 and summary["skipped_without_parts"] == 1
    assert summary["skipped_small"] == 1 and summary["samples"] == 2
    train = D.load("pascal-part", root=pp_root, split="train", category="car", train_area_threshold=0.05)
    assert len(train) == 3 and train.summary()["skipped_small"] == 0
    assert len(D.load("pascal-part", root=pp_root, split="test", category="car", train_area_threshold=0.05)) == 2
    assert len(D.load("pascal-part", root=pp_root, split="test", category="cat")) == 1
    with pytest.raises(UserError, match="unknown PASCAL-Part category 'chair'"):
        D.load("pascal-part", root=pp_root, category="chair")


def test_label_painting_and_crop_against_numpy_oracle(pp_root):
    ds = D.load("pascal-part", root=pp_root, split="test", category="car")
    s = ds[0]
    s.validate()
    names = ds.part_names
    door, window, wheel = names.index("door"), names.index("window"), names.index("wheel")
    labels = np.zeros((H, W), np.int64)
    labels[60:71, 20:31] = wheel  # painted in reverse order: the first listed part ends on top
    labels[60:71, 60:81] = wheel
    labels[30:61, 30:71] = window
    labels[10:51, 10:51] = door
    # box 5..94 x 5..74 (90 x 70): pad 4.5 / 3.5 -> 0.5..98.5, 1.5..78.5 -> round 0..98, 2..78 (99 x 77)
    # square side 99: top -= round(11.0) -> (left 0, top -9, side 99)
    assert s.meta["crop"] == (0, -9, 99)
    rows = np.floor(np.arange(256) * 99 / 256).astype(int) - 9  # cv2/torch nearest: floor(dst * in / out)
    cols = np.floor(np.arange(256) * 99 / 256).astype(int)
    padded = np.zeros((H + 200, W + 200), np.int64)
    padded[100:100 + H, 100:100 + W] = labels
    expected = padded[rows[:, None] + 100, cols[None, :] + 100]
    assert np.array_equal(s.part_labels.numpy(), expected)
    assert torch.equal(s.mask, (s.part_labels != 0).float())
    # the image crop: red encodes the column, green the row (rows < 0 are the crop fill)
    scale = 256 / 99
    j, i = 128, 128
    src_x, src_y = (j + 0.5) / scale - 0.5, (i + 0.5) / scale - 0.5 - 9
    assert abs(float(s.image[0, i, j]) * 255 - 2 * src_x) < 4 and abs(float(s.image[1, i, j]) * 255 - 3 * src_y) < 4
    assert torch.allclose(s.image[:, 0, 0], torch.full((3,), 1 / 255))
    assert torch.allclose(s.bbox, torch.tensor([5 * scale, 14 * scale, 90 * scale, 70 * scale]))


def test_full_view_is_the_same_crop_and_train_view_flips(pp_root):
    ds = D.load("pascal-part", root=pp_root, split="test", category="car")
    assert ds.full_view == ds.fg_view == "fg"
    full = ds.with_view(view="full")[0]
    assert torch.equal(full.part_labels, ds[0].part_labels) and torch.equal(full.image, ds[0].image)
    train = D.load("pascal-part", root=pp_root, split="test", category="car", view="train", jitter=0.0)
    flips = set()
    for seed in range(8):
        torch.manual_seed(seed)
        s = train[0]
        flips.add(s.meta["flipped"])
        ref = ds[0]
        if s.meta["flipped"]:
            assert torch.equal(s.part_labels, ref.part_labels.flip(-1)) and torch.allclose(s.image, ref.image.flip(-1))
        else:
            assert torch.equal(s.part_labels, ref.part_labels)
    assert flips == {True, False}
    torch.manual_seed(0)
    jittered = D.load("pascal-part", root=pp_root, split="train", category="car", view="train")[0]
    assert jittered.size == (256, 256)


def test_predicted_masks(pp_root, tmp_path):
    pred = tmp_path / "masks"
    pred.mkdir()
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(pred / "2008_000001.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(pred / "2008_000003.png")
    ds = D.load("pascal-part", root=pp_root, split="test", category="car", masks=f"predicted:{pred}")
    m = ds[0].mask
    assert m[24:230, :].min() == 1.0 and m[0, 0] == 0.0  # the crop fill outside the image is background
    with pytest.raises(UserError, match=r"2008_000003.png is 10x10"):
        ds[1]


def test_unknown_part_and_missing_files(tmp_path):
    root = write_tree(tmp_path / "a", unknown_part=True)
    with pytest.raises(UserError, match=r"2008_000003.mat.*'spoiler'"):
        D.load("pascal-part", root=root, split="test", category="car")
    root = write_tree(tmp_path / "b")
    (root / "VOC2010/ImageSets/Main/car_val.txt").unlink()
    with pytest.raises(UserError, match=r"car_val.txt: is missing"):
        D.load("pascal-part", root=root, split="test", category="car")
    (root / "Annotations_Part/2008_000001.mat").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"2008_000001.mat: cannot be read as a PASCAL-Part file"):
        D.load("pascal-part", root=root, split="train", category="car")


def test_data_check_cli(tmp_path):
    from benchmark.cli import cli

    root = write_tree(tmp_path / "ok")
    result = CliRunner().invoke(cli, ["data", "check", "--dataset", "pascal-part", "--data-root", str(root),
                                      "--category", "car"])
    assert result.exit_code == 0, result.output
    assert "test: 2 samples" in result.output and "skipped_without_parts=1" in result.output
    (root / "VOC2010/JPEGImages/2008_000003.jpg").unlink()
    result = CliRunner().invoke(cli, ["data", "check", "--dataset", "pascal-part", "--data-root", str(root),
                                      "-o", "category='car'"])
    assert result.exit_code == 2 and "2008_000003.jpg" in result.output


def test_perfect_predictor_scores_one(pp_root):
    from benchmark.core.types import PartMaps
    from benchmark.metrics.clustering import ari, nmi
    from benchmark.metrics.scoring import label_pairs

    ds = D.load("pascal-part", root=pp_root, split="test", category="car")
    for role in ("fg", "full"):
        for batch in ds.with_view(view=getattr(ds, f"{role}_view")).batches(batch_size=4):
            scores = torch.nn.functional.one_hot(batch.part_labels, len(ds.part_names)).permute(0, 3, 1, 2).float()
            maps = PartMaps(scores=scores, image_size=batch.size)
            true, pred = label_pairs(maps, batch, role=role, ground_truth="pixels", protocol="corrected",
                                     background="mask")[role]
            assert nmi(true, pred) == pytest.approx(1.0) and ari(true, pred) == pytest.approx(1.0)


def build_fixture(tmp_path):
    """Miniature tree for the shared contract tests (tests/dataset_fixtures.py): ``(root, options)``."""
    return write_tree(tmp_path / "pascal"), {"category": "car"}


def test_run_on_a_damaged_tree_suggests_the_check_of_the_same_category(tmp_path):
    # The tree has only car lists: the suggested `data check` must check dog too, not the default car.
    from benchmark.cli import cli

    root = write_tree(tmp_path / "pascal")
    result = CliRunner().invoke(cli, ["run", "-m", "random", "-d", "pascal-part", "--data-root", str(root),
                                      "--category", "dog", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "dog_train.txt" in result.output and "-o category=dog` for the full list" in result.output
