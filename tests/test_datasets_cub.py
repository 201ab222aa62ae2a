"""CUB-200-2011 loader on a miniature tree written in the official formats (synthetic images)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from click.testing import CliRunner
from PIL import Image

import benchmark.datasets as D
from benchmark.core.errors import UserError
from benchmark.core.types import collate

# image id -> (relative path, is_training, class id, (W, H), bbox x y w h)
IMAGES = {
    1: ("001.Black_footed_Albatross/Black_Footed_Albatross_0001_1.jpg", 0, 1, (80, 60), (10.7, 5.2, 47.9, 40.3)),
    2: ("001.Black_footed_Albatross/Black_Footed_Albatross_0002_2.jpg", 1, 1, (64, 48), (4.0, 6.0, 50.0, 30.0)),
    3: ("002.Laysan_Albatross/Laysan_Albatross_0003_3.jpg", 0, 2, (48, 72), (3.0, 9.0, 40.0, 50.0)),
    4: ("004.Groove_billed_Ani/Groove_Billed_Ani_0004_4.jpg", 1, 4, (72, 40), (2.0, 3.0, 60.0, 30.0)),
}
PARTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
         "right eye", "right leg", "right wing", "tail", "throat"]


def keypoints_for(image_id: int) -> list[tuple[float, float, int]]:
    """Keypoints at distinct positions (all visible in training images, so that landmark regression can be
    fitted for every keypoint); image 1 has hand-checked special cases."""
    w, h = IMAGES[image_id][3]
    train = IMAGES[image_id][1] == 1
    rows = [(float(5 + 2 * p) % w, float(5 + p) % h, 1 if (p % 3 or train) else 0) for p in range(15)]
    if image_id == 1:
        rows[0] = (30.0, 20.0, 1)  # inside the box
        rows[1] = (8.0, 20.0, 1)  # left of the box: clamped to 0, then outside after cut_borders
        rows[2] = (56.5, 20.0, 1)  # right edge of the box: outside the 16-multiple crop
        rows[6] = (20.0, 30.0, 1)  # left eye
        rows[10] = (40.0, 32.0, 1)  # right eye
    return [(x, y, v) if v else (0.0, 0.0, 0) for x, y, v in rows]


def write_tree(root, *, crlf_file="images.txt", segment_ids=(1, 2, 3, 4), images=None, keypoints=None):
    """A CUB tree of ``images`` (default :data:`IMAGES`) with ``keypoints(image_id)`` rows (default
    :func:`keypoints_for`), in the official file formats."""
    images = images or IMAGES
    keypoints = keypoints or keypoints_for
    root.mkdir(parents=True, exist_ok=True)
    (root / "parts").mkdir(exist_ok=True)

    def write(name, lines):
        end = "\r\n" if name == crlf_file else "\n"
        (root / name).write_text(end.join(lines) + end, encoding="utf-8")

    write("images.txt", [f"{i} {v[0]}" for i, v in images.items()])
    write("train_test_split.txt", [f"{i} {v[1]}" for i, v in images.items()])
    write("bounding_boxes.txt", [f"{i} " + " ".join(f"{c:.1f}" for c in v[4]) for i, v in images.items()])
    write("image_class_labels.txt", [f"{i} {v[2]}" for i, v in images.items()])
    write("classes.txt", ["1 001.Black_footed_Albatross", "2 002.Laysan_Albatross", "3 003.Sooty_Albatross",
                          "4 004.Groove_billed_Ani"])
    write("parts/parts.txt", [f"{k + 1} {n}" for k, n in enumerate(PARTS)])
    write("parts/part_locs.txt", [f"{i} {p + 1} {x:.1f} {y:.1f} {v}" for i in images
                                  for p, (x, y, v) in enumerate(keypoints(i))])
    for i, (rel, _, _, (w, h), _) in images.items():
        path = root / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = np.zeros((h, w, 3), np.uint8)
        img[:, :40] = (250, 10, 10)  # red left of column 40, blue right of it: a geometry oracle
        img[:, 40:] = (10, 10, 250)
        Image.fromarray(img).save(path, quality=95)
        if i in segment_ids:
            seg = np.zeros((h, w), np.uint8)
            seg[h // 4:3 * h // 4, w // 4:3 * w // 4] = 255
            seg[h // 4:3 * h // 4, w // 4] = 51  # annotator-vote grey levels, as segmentations.tgz
            seg[h // 4, w // 4:3 * w // 4] = 153
            spath = root / "segmentations" / rel.replace(".jpg", ".png")
            spath.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(seg).save(spath)
    return root


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("cub") / "CUB_200_2011")


def test_splits_classes_and_crlf(cub_root):
    test = D.load("cub", root=cub_root, split="test")
    train = D.load("cub", root=cub_root, split="train")
    assert len(test) == 2 and len(train) == 2
    assert [test[i].meta["class_id"] for i in range(2)] == [1, 2] and test.class_ids() == (1, 2)
    assert len(D.load("cub", root=cub_root, split="test", classes=(1,))) == 1
    assert test.keypoint_names == tuple(PARTS) and test.ground_truth == "keypoints"
    assert test.landmark_protocol == "cub-bbox" and test.landmark_view == "full"
    with pytest.raises(UserError, match="classes"):
        D.load("cub", root=cub_root, split="test", classes=(150,))


def test_fg_view_geometry_by_hand(cub_root):
    ds = D.load("cub", root=cub_root, split="test", view="fg", masks="none")
    s = ds[0]
    # box (10.7, 5.2, 47.9, 40.3) -> int (10, 5, 47, 40); short side 40 -> 256: scale 6.4,
    # width int(256 * 47 / 40) = 300 -> cut to 288 (left offset 6), height 256.
    assert s.size == (256, 288) == ds.image_size(0)
    kp, vis = s.keypoints, s.visible
    assert torch.allclose(kp[0], torch.tensor([(30 - 10) * 6.4 - 6, (20 - 5) * 6.4]))
    assert vis[0] and not vis[1] and not vis[2]  # clamped to x=0 -> -6 (outside); 297.6 - 6 >= 288
    assert float(kp[1, 0]) == -6.0
    # the red/blue boundary at original column 40 lands at (40 - 10) * 6.4 - 6 = 186
    red = s.image[0] > s.image[2]
    assert red[:, :183].all() and (~red[:, 190:]).all()
    assert torch.allclose(s.bbox, torch.tensor([-6.0, 0.0, 47 * 6.4, 40 * 6.4]))


def test_full_view_geometry_and_bbox(cub_root):
    ds = D.load("cub", root=cub_root, split="test", view="full", masks="none")
    s = ds[0]
    # 80x60: short side 60 -> scale 256/60, width int(256 * 80 / 60) = 341 -> 336 (left offset 2)
    scale = 256 / 60
    assert s.size == (256, 336) == ds.image_size(0)
    assert torch.allclose(s.keypoints[0], torch.tensor([30 * scale - 2, 20 * scale]), atol=1e-4)
    assert torch.allclose(s.bbox, torch.tensor([10.7 * scale - 2, 5.2 * scale, 47.9 * scale, 40.3 * scale]), atol=1e-3)
    # second test image is portrait 48x72: 256 x int(256 * 72 / 48) = 384 (already multiples of 16)
    assert ds[1].size == (384, 256) == ds.image_size(1)
    for i in range(len(ds)):
        x = ds[i]
        x.validate()
        kp = x.keypoints[x.visible]
        assert ((kp[:, 0] >= 0) & (kp[:, 0] < x.size[1]) & (kp[:, 1] >= 0) & (kp[:, 1] < x.size[0])).all()


def test_sizes_are_multiples_of_16_and_batches(cub_root):
    for view in ("fg", "full"):
        ds = D.load("cub", root=cub_root, split="train", view=view)
        for i in range(len(ds)):
            h, w = ds.image_size(i)
            assert h % 16 == 0 and w % 16 == 0 and min(h, w) <= 256
        batches = list(ds.batches(batch_size=4))
        assert sum(len(b) for b in batches) == len(ds)


def test_masks_corrected_vs_legacy(cub_root):
    corrected = D.load("cub", root=cub_root, split="test", view="full")[0].mask
    legacy = D.load("cub", root=cub_root, split="test", view="full", protocol="legacy")[0].mask
    assert set(corrected.unique().tolist()) == {0.0, 1.0}
    # legacy gt = the reference's mask_type='gt' (vote == 255), resized bilinearly (PIL rounds 0/1 codes)
    assert set(legacy.unique().tolist()) == {0.0, 1.0}
    # corrected = (vote >= 128) resized nearest: the 51/153 rims of the fixture drop / stay
    assert (legacy[corrected == 1] > 0).float().mean() > 0.9


def test_predicted_masks_and_wrong_size(cub_root, tmp_path):
    pred = tmp_path / "supervisedlabels"
    for rel, *_ in IMAGES.values():
        path = pred / rel.replace(".jpg", ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
    w, h = IMAGES[1][3]
    Image.fromarray(np.full((h, w), 1, np.uint8)).save(pred / IMAGES[1][0].replace(".jpg", ".png"))  # 0/1 file
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(pred / IMAGES[3][0].replace(".jpg", ".png"))
    ds = D.load("cub", root=cub_root, split="test", view="full", masks=f"predicted:{pred}")
    assert ds[0].mask.min() == 1.0  # value 1 in a 0/1 file is foreground
    with pytest.raises(UserError, match=r"Laysan_Albatross_0003_3.png is 10x10"):
        ds[1]
    with pytest.raises(UserError, match="does not exist"):
        D.load("cub", root=cub_root, split="test", masks=f"predicted:{tmp_path / 'nope'}")


def test_train_view_flip_permutation(cub_root):
    crop = D.load("cub", root=cub_root, split="test", view="crop", masks="gt")
    train = D.load("cub", root=cub_root, split="test", view="train", jitter=0.0)
    reference = crop[0]
    assert reference.size == (256, 256) and crop.image_size(0) == (256, 256)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        s = train[0]
        seen.add(s.meta["flipped"])
        if s.meta["flipped"]:
            perm = list(train.flip_permutation)
            assert perm[6] == 10 and perm[10] == 6 and perm[7] == 11 and perm[8] == 12
            assert torch.allclose(s.keypoints[6], torch.tensor([256.0, 0.0]) + torch.tensor([-1.0, 1.0]) * reference.keypoints[10])
            # a keypoint on the left edge (x = 0) flips to x = 256, just outside the view
            assert torch.equal(s.visible, reference.visible[perm] & (s.keypoints[:, 0] < 256))
            assert torch.allclose(s.image, reference.image.flip(-1))
            assert torch.equal(s.mask, reference.mask.flip(-1))
        else:
            assert torch.allclose(s.keypoints[reference.visible], reference.keypoints[reference.visible])
    assert seen == {True, False}


def test_square_crop_geometry_by_hand(cub_root):
    ds = D.load("cub", root=cub_root, split="test", view="crop", masks="none")
    s = ds[0]
    # inclusive box x 10.7..57.6, y 5.2..44.5 (w 47.9, h 40.3); 5% pad -> 8.305..59.995, 3.185..46.515;
    # rounded 8..60, 3..47 (53 x 45); square side 53, top -= round(4.0) -> left 8, top -1
    assert s.meta["crop"] == (8, -1, 53)
    scale = 256 / 53
    assert torch.allclose(s.keypoints[0], torch.tensor([(30 - 8) * scale, (20 + 1) * scale]), atol=1e-4)
    # row -1 is outside the image: filled with the reference's value 1 (of 255)
    assert torch.allclose(s.image[:, :2], torch.full_like(s.image[:, :2], 1 / 255), atol=1e-6)


def test_collate_and_validate(cub_root):
    ds = D.load("cub", root=cub_root, split="test", view="train")
    batch = collate([ds[0], ds[1]])
    assert batch.images.shape == (2, 3, 256, 256) and batch.keypoints.shape == (2, 15, 2)


def test_malformed_line_names_file_and_line(tmp_path):
    root = write_tree(tmp_path / "CUB_200_2011")
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines[2] = "3 14.0 abc 10.0 20.0"
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"bounding_boxes.txt, line 3: 'abc' is not a number"):
        D.load("cub", root=root, split="test")


def test_missing_file_and_missing_keypoints(tmp_path):
    root = write_tree(tmp_path / "a" / "CUB_200_2011")
    (root / "train_test_split.txt").unlink()
    with pytest.raises(UserError, match=r"train_test_split.txt is missing"):
        D.load("cub", root=root, split="test")
    root = write_tree(tmp_path / "b" / "CUB_200_2011")
    locs = [l for l in (root / "parts/part_locs.txt").read_text().splitlines() if not l.startswith("3 ")]
    (root / "parts/part_locs.txt").write_text("\n".join(locs) + "\n")
    with pytest.raises(UserError, match=r"image id 3 \(002.Laysan_Albatross/Laysan_Albatross_0003_3.jpg\) has no keypoint lines"):
        D.load("cub", root=root, split="test")


def test_truncated_jpeg_is_an_error(tmp_path):
    root = write_tree(tmp_path / "CUB_200_2011")
    path = root / "images" / IMAGES[1][0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ds = D.load("cub", root=root, split="test", masks="none")
    with pytest.raises(UserError, match=r"Black_Footed_Albatross_0001_1.jpg is unreadable"):
        ds[0]


def _kanazawa_record(image_id, rel):
    w, h = IMAGES[image_id][3]
    x, y, bw, bh = IMAGES[image_id][4]
    parts = np.zeros((3, 15))
    parts[:, 0] = (31.0, 21.0, 1)  # 1-based pixel (31, 21) -> continuous centre (30.5, 20.5)
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 10:40] = 1
    bbox = {"x1": 11.0, "y1": 6.0, "x2": 58.0, "y2": 45.0}
    return {"id": image_id, "rel_path": rel, "train": 0, "test": 1, "bbox": bbox, "width": w, "height": h,
            "parts": parts, "mask": mask, "class_id": IMAGES[image_id][2]}


def test_kanazawa_split(tmp_path):
    root = write_tree(tmp_path / "CUB_200_2011")
    with pytest.raises(UserError, match="test_cub_cleaned.mat is missing"):
        D.load("cub", root=root, split="test", split_source="kanazawa")
    folder = root / "cachedir" / "cub" / "data"
    folder.mkdir(parents=True)
    fields = ["id", "rel_path", "train", "test", "bbox", "width", "height", "parts", "mask", "class_id"]
    for split, ids in (("train", (2, 4)), ("test", (1, 3)), ("val", (3,))):
        records = np.zeros((1, len(ids)), dtype=[(f, "O") for f in fields])
        for k, i in enumerate(ids):
            for f, v in _kanazawa_record(i, IMAGES[i][0]).items():
                records[0, k][f] = v
        scipy.io.savemat(str(folder / f"{split}_cub_cleaned.mat"), {"images": records})
    ds = D.load("cub", root=root, split="test", split_source="kanazawa", view="full", masks="none")
    assert len(ds) == 2 and ds.landmark_protocol == "kanazawa-crop" and ds.landmark_view == "crop"
    s = ds[0]
    assert torch.allclose(s.keypoints[0], torch.tensor([30.5 * 256 / 60 - 2, 20.5 * 256 / 60]), atol=1e-4)
    assert s.visible.sum() == 1
    crop = ds.with_view(view="crop", masks="gt")[0]
    assert crop.mask is not None and set(crop.mask.unique().tolist()) == {0.0, 1.0}
    assert len(D.load("cub", root=root, split="test", split_source="kanazawa", classes=(2,))) == 1
    assert len(D.load("cub", root=root, split="val", split_source="kanazawa", masks="none")) == 1
    with pytest.raises(UserError, match="testval_cub_cleaned.mat is missing"):
        D.load("cub", root=root, split="testval", split_source="kanazawa")
    with pytest.raises(UserError, match="has no split 'val'"):
        D.load("cub", root=root, split="val")  # the official split has no val


def test_data_check_cli(tmp_path):
    from benchmark.cli import cli

    root = write_tree(tmp_path / "ok" / "CUB_200_2011")
    result = CliRunner().invoke(cli, ["data", "check", "--dataset", "cub", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    assert "train: 2 samples" in result.output and "test: 2 samples" in result.output and "OK" in result.output
    assert "5994" in result.output  # warns that this is not the complete tree

    bad = write_tree(tmp_path / "bad" / "CUB_200_2011", segment_ids=(1, 2, 3))
    lines = (bad / "parts/part_locs.txt").read_text().splitlines()
    lines[4] = "1 5 1.0 2.0"
    lines[7] = "1 8 x 2.0 1"
    (bad / "parts/part_locs.txt").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["data", "check", "--dataset", "cub", "--data-root", str(bad)])
    assert result.exit_code == 2
    assert "part_locs.txt, line 5: expected 5 fields" in result.output
    assert "part_locs.txt, line 8: 'x' is not a number" in result.output

    (bad / "parts/part_locs.txt").write_text("\n".join(write_tree_lines(bad)) + "\n")
    jpeg = bad / "images" / IMAGES[2][0]
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    result = CliRunner().invoke(cli, ["data", "check", "--dataset", "cub", "--data-root", str(bad)])
    assert result.exit_code == 2
    assert "Black_Footed_Albatross_0002_2.jpg" in result.output  # truncated
    assert "Groove_Billed_Ani_0004_4.png" in result.output  # missing segmentation
    assert "2 problem(s)" in result.output


def write_tree_lines(root):
    return [f"{i} {p + 1} {x:.1f} {y:.1f} {v}" for i in IMAGES for p, (x, y, v) in enumerate(keypoints_for(i))]


def test_perfect_predictor_scores_one(cub_root):
    """End to end with the metrics: maps that put channel k exactly at keypoint k (read back by the
    metrics at pixel round(x - 0.5)) score NMI = ARI = 1 on both evaluation views."""
    from benchmark.core.types import PartMaps
    from benchmark.metrics.clustering import ari, nmi
    from benchmark.metrics.scoring import label_pairs

    for view, role in (("fg", "fg"), ("full", "full")):
        ds = D.load("cub", root=cub_root, split="test", view=view)
        trues, preds = [], []
        for batch in ds.batches(batch_size=4):
            n, (h, w) = len(batch), batch.size
            scores = torch.zeros(n, 15, h, w)
            b, k = torch.nonzero(batch.visible, as_tuple=True)
            cols = torch.round(batch.keypoints[b, k, 0] - 0.5).long()
            rows = torch.round(batch.keypoints[b, k, 1] - 0.5).long()
            scores[b, k, rows, cols] = 10.0
            maps = PartMaps(scores=scores, image_size=(h, w))
            pairs = label_pairs(maps, batch, role=role, ground_truth="keypoints", protocol="corrected",
                                background="none")
            true, pred = pairs[role]
            trues.append(true)
            preds.append(pred)
        true, pred = torch.cat(trues), torch.cat(preds)
        assert len(true) >= 10
        assert nmi(true, pred) == pytest.approx(1.0) and ari(true, pred) == pytest.approx(1.0)


def test_large_crlf_tree_index_and_bench(tmp_path):
    from benchmark.core.registry import BENCHES
    from benchmark.datasets.bench import write_annotation_tree

    root = write_annotation_tree(tmp_path / "CUB_200_2011", 600, crlf=True)
    ds = D.load("cub", root=root, split="test", classes=(1, 2))
    assert len(ds) == 3  # ids 2, 202, 402 have class 2 and test flag 0; class 1 ids (1, 201, 401) are train
    i = int(ds._select[0])
    assert np.allclose(ds._kp[i, 4], (15.0, 10.0)) and ds._vis[i].tolist() == [p % 2 == 1 for p in range(1, 16)]
    report = BENCHES.get("cub-index")(images=300, repeats=1)
    assert "speed-up" in report


def build_fixture(tmp_path):
    """Miniature tree for the shared contract tests (tests/dataset_fixtures.py): ``(root, options)``."""
    return write_tree(tmp_path / "CUB_200_2011"), {}


def test_invalid_box_names_its_line(tmp_path):
    root = write_tree(tmp_path / "CUB_200_2011")
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines[1] = "2 4.0 6.0 0.5 30.0"  # int(w) = 0: an empty FG crop
    (root / "bounding_boxes.txt").write_text("\n".join(reversed(lines)) + "\n")  # file order != id order
    with pytest.raises(UserError, match=r"bounding_boxes.txt, line 3: image id 2 has an invalid box"):
        D.load("cub", root=root, split="test")


def test_data_check_takes_the_readme_short_options_and_rejects_bad_options(tmp_path):
    # The README and `run`'s hint say `benchmark data check -d cub ...`; a typo in -o is one line, no traceback.
    from benchmark.cli import cli

    root = write_tree(tmp_path / "CUB_200_2011")
    result = CliRunner().invoke(cli, ["data", "check", "-d", "cub", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    assert "data check -d cub" in CliRunner().invoke(cli, ["data", "check", "--help"]).output
    for option, message in (("foo=1", "dataset 'cub' has no option 'foo'; its options are: split_source"),
                            ("jitter=abc", "option 'jitter' must be a number")):
        result = CliRunner().invoke(cli, ["data", "check", "-d", "cub", "--data-root", str(root), "-o", option])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output


def test_run_with_a_misspelt_option_on_a_real_tree_is_one_line(tmp_path):
    from benchmark.cli import cli

    root = write_tree(tmp_path / "CUB_200_2011")
    result = CliRunner().invoke(cli, ["run", "-m", "random", "-d", "cub", "--data-root", str(root),
                                      "-o", "split_sorce=kanazawa", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "dataset 'cub' has no option 'split_sorce'" in result.output and "Traceback" not in result.output
