"""DeepFashion In-shop loader on a miniature tree (segmentation JSONs, JPEGs, colour-coded PNGs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import benchmark.datasets as D
from benchmark.core.errors import UserError

# the DeepFashion palette of docs/protocol.md, written out independently of the loader
SPEC_PALETTE = {0: (0, 0, 0), 1: (0, 100, 0), 2: (16, 78, 139), 3: (50, 205, 50), 4: (70, 130, 180),
                5: (127, 255, 212), 6: (144, 238, 144), 7: (211, 211, 211), 8: (220, 220, 220),
                9: (245, 222, 179), 10: (250, 235, 215), 11: (255, 0, 0), 12: (255, 140, 0),
                13: (255, 250, 205), 14: (255, 250, 250), 15: (255, 255, 0)}
W, H = 40, 60  # portrait, like the In-shop images
SPLITS = {"train": ["img_highres/MEN/Denim/id_00000080/01_1_front.jpg", "img_highres/MEN/Denim/id_00000080/01_2_side.jpg"],
          "query": ["img_highres/WOMEN/Dresses/id_00000002/02_1_front.jpg"],
          "gallery": ["img_highres/WOMEN/Dresses/id_00000002/02_2_side.jpg", "img_highres/WOMEN/Tees/id_00000007/01_1_front.jpg"]}


def label_map(seed: int) -> np.ndarray:
    labels = np.zeros((H, W), np.int64)
    labels[5:55, 8:32] = 8  # body of label 8 next to background 0 (bilinear creates 1..7 in between)
    labels[5:20, 12:28] = 11
    labels[40:55, 8:32] = 1 + seed % 15
    return labels


def write_tree(root, *, bad_colour=False):
    seg = root / "Anno" / "segmentation"
    seg.mkdir(parents=True)
    k = 0
    for split, names in SPLITS.items():
        (seg / f"DeepFashion_segmentation_{split}.json").write_text(json.dumps(
            {"info": {}, "images": [{"id": i, "file_name": n} for i, n in enumerate(names)], "annotations": []}))
        for name in names:
            labels = label_map(k)
            k += 1
            rgb = np.array([SPEC_PALETTE[int(v)] for v in labels.ravel()], np.uint8).reshape(H, W, 3)
            path = seg / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(path, quality=100, subsampling=0)  # the image shows its own labels' colours
            if bad_colour and split == "query":
                rgb[7, 3] = (1, 2, 3)
            Image.fromarray(rgb).save(str(path)[:-4] + "_segment.png")
    return root


@pytest.fixture(scope="module")
def df_root(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("df") / "In-shop Clothes Retrieval Benchmark")


def test_splits_and_order(df_root):
    test = D.load("deepfashion", root=df_root, split="test", view="full")
    assert len(test) == 3 and len(D.load("deepfashion", root=df_root, split="train")) == 2
    assert [test[i].id for i in range(3)] == SPLITS["query"] + SPLITS["gallery"]  # query, then gallery


def test_palette_decoding_against_spec_table():
    from benchmark.datasets.deepfashion import decode_palette

    rgb = np.array([[SPEC_PALETTE[k] for k in range(16)]], np.uint8)
    assert decode_palette(rgb, "x.png", legacy=False).tolist() == [list(range(16))]


def test_a_colour_with_a_palette_colours_sum_is_unknown_except_under_legacy():
    from benchmark.datasets.deepfashion import decode_palette

    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 1] = (0, 100, 0)  # label 1
    rgb[0, 2] = (100, 0, 0)  # the same R+G+B, not in the palette
    with pytest.raises(UserError, match=r"pixel \(x=2, y=0\) has colour \(100, 0, 0\)"):
        decode_palette(rgb, "x.png", legacy=False)
    assert decode_palette(rgb, "x.png", legacy=True).tolist() == [[0, 1, 1]]  # the reference matched sums


def test_unknown_colour_corrected_vs_legacy(tmp_path):
    root = write_tree(tmp_path / "df", bad_colour=True)
    ds = D.load("deepfashion", root=root, split="test", view="full")
    with pytest.raises(UserError, match=r"02_1_front_segment.png: pixel \(x=3, y=7\) has colour \(1, 2, 3\)"):
        ds[0]
    legacy = D.load("deepfashion", root=root, split="test", view="full", protocol="legacy")[0]
    legacy.validate()  # no error: the reference's silent 255
    from benchmark.datasets.deepfashion import decode_palette

    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (1, 2, 3)
    assert decode_palette(rgb, "x.png", legacy=True).tolist() == [[0, 255], [0, 0]]


def test_fg_view_long_side_and_padding(df_root):
    ds = D.load("deepfashion", root=df_root, split="test", view="fg")
    s = ds[0]
    s.validate()
    # 40x60 -> long side 256: width round(40 * 256 / 60) = round(170.67) = 171, then padded to 256,
    # centred as the reference's pad_if_smaller: 42 columns before, 43 after
    assert s.size == (256, 256) == ds.image_size(0)
    assert (s.part_labels[:, :42] == 0).all() and (s.part_labels[:, 213:] == 0).all()
    assert torch.equal(s.image[:, :, 213:], s.image[:, :, 212:213].expand(-1, -1, 43))  # edge replication
    # nearest (cv2 rule: src = floor(dst * 60/256)) against a numpy oracle
    labels = label_map(2)
    rows = np.floor(np.arange(256) * (60 / 256)).astype(int)
    cols = np.floor(np.arange(171) * (40 / 171)).astype(int)
    assert np.array_equal(s.part_labels[:, 42:213].numpy(), labels[rows][:, cols])
    assert torch.equal(s.mask, (s.part_labels != 0).float())


def test_full_view_corrected_vs_legacy(df_root):
    corrected = D.load("deepfashion", root=df_root, split="test", view="full")
    legacy = D.load("deepfashion", root=df_root, split="test", view="full", protocol="legacy")
    a, b = corrected[0], legacy[0]
    # short side 40 -> 256: height int(256 * 60 / 40) = 384
    assert a.size == (384, 256) == corrected.image_size(0) == b.size
    assert set(a.part_labels.unique().tolist()) == {0, 8, 11, 3}
    spurious = set(b.part_labels.unique().tolist()) - {0, 8, 11, 3}
    assert spurious, "bilinear label resizing (legacy) blends ids at boundaries"
    assert set(a.mask.unique().tolist()) == {0.0, 1.0}


def test_predicted_masks(df_root, tmp_path):
    pred = tmp_path / "supervisedlabels"
    for k, name in enumerate(SPLITS["query"] + SPLITS["gallery"]):
        path = pred / (name + ".png")  # the reference's `<file_name>.png`
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = (label_map(0) != 0).astype(np.uint8) * 255
        Image.fromarray(mask if k < 2 else mask[:30]).save(path)
    ds = D.load("deepfashion", root=df_root, split="test", view="full", masks=f"predicted:{pred}")
    assert set(ds[0].mask.unique().tolist()) == {0.0, 1.0}
    legacy = D.load("deepfashion", root=df_root, split="test", view="full", masks=f"predicted:{pred}", protocol="legacy")
    assert legacy[0].mask.max() == 255.0
    with pytest.raises(UserError, match=r"01_1_front.jpg.png is 40x30 \(WxH\) but its image is 40x60"):
        ds[2]


def test_train_view_crops_labels_with_image(df_root):
    ds = D.load("deepfashion", root=df_root, split="train", view="train")
    palette = torch.tensor([SPEC_PALETTE[k] for k in range(16)], dtype=torch.float32) / 255
    flips = set()
    for seed in range(6):
        torch.manual_seed(seed)
        s = ds[0]
        s.validate()
        assert s.size == (256, 256) == ds.image_size(0)
        # the image shows the colour of its own label: labels and image were cropped/flipped together
        expected = palette[s.part_labels].permute(2, 0, 1)
        agree = ((s.image - expected).abs().max(dim=0).values < 0.1).float().mean()
        assert agree > 0.9
        flips.add(s.meta["flipped"])
    assert flips == {True, False}
    left, top, cw, ch = s.meta["crop"]
    assert 0.5 * W * H * 0.99 <= cw * ch <= W * H and 3 / 4 - 0.1 <= cw / ch <= 4 / 3 + 0.1


def test_missing_json_and_data_check(tmp_path):
    from benchmark.cli import cli

    root = write_tree(tmp_path / "df")
    result = CliRunner().invoke(cli, ["data", "check", "--dataset", "deepfashion", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    assert "test: 3 samples" in result.output and "6922" in result.output
    (root / "Anno/segmentation/DeepFashion_segmentation_gallery.json").unlink()
    with pytest.raises(UserError, match="DeepFashion_segmentation_gallery.json: is missing"):
        D.load("deepfashion", root=root, split="test")
    (root / "Anno/segmentation/DeepFashion_segmentation_query.json").write_text("{not json")
    result = CliRunner().invoke(cli, ["data", "check", "--dataset", "deepfashion", "--data-root", str(root)])
    assert result.exit_code == 2
    assert "query.json, line 1: is not valid JSON" in result.output and "gallery.json: is missing" in result.output


def test_download_prints_steps():
    from benchmark.cli import cli

    result = CliRunner().invoke(cli, ["data", "download", "deepfashion"])
    assert result.exit_code == 0 and "agreement" in result.output


def test_perfect_predictor_scores_one(df_root):
    from benchmark.core.types import PartMaps
    from benchmark.metrics.clustering import ari, nmi
    from benchmark.metrics.scoring import label_pairs

    for view in ("fg", "full"):
        ds = D.load("deepfashion", root=df_root, split="test", view=view)
        for batch in ds.batches(batch_size=4):
            scores = torch.nn.functional.one_hot(batch.part_labels, 16).permute(0, 3, 1, 2).float()
            maps = PartMaps(scores=scores, image_size=batch.size)
            true, pred = label_pairs(maps, batch, role=view, ground_truth="pixels", protocol="corrected",
                                     background="mask")[view]
            assert nmi(true, pred) == pytest.approx(1.0) and ari(true, pred) == pytest.approx(1.0)


def test_images_under_img_folder_are_found(tmp_path):
    root = write_tree(tmp_path / "df")
    name = SPLITS["query"][0]
    target = root / "Img" / name
    target.parent.mkdir(parents=True)
    (root / "Anno/segmentation" / name).rename(target)
    s = D.load("deepfashion", root=root, split="test", view="full")[0]
    assert s.id == name and s.size == (384, 256)


def build_fixture(tmp_path):
    """Miniature tree for the shared contract tests (tests/dataset_fixtures.py): ``(root, options)``."""
    return write_tree(tmp_path / "In-shop Clothes Retrieval Benchmark"), {}
