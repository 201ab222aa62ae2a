"""PartImageNet on a miniature tree in the official COCO layout, against an independent implementation of
the reference steps (pycocotools' COCO.annToMask, the category-channel sum, torchvision Resize/CenterCrop,
argmax over the channels plus a 0.1 background placed last; predictions: bilinear upsampling and argmax over
[parts, background])."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import benchmark.datasets as D
from benchmark.core.errors import UserError
from benchmark.core.types import PartMaps
from benchmark.metrics.clustering import ContingencyTable
from benchmark.metrics.scoring import label_pairs

CATEGORIES = [{"id": i, "name": n, "supercategory": s} for i, (n, s) in
              enumerate([("Quadruped Head", "Quadruped"), ("Quadruped Body", "Quadruped"), ("Fish Fin", "Fish")])]
# image id -> (file name, W, H)
IMAGES = {0: ("n01440764_10.JPEG", 40, 30), 1: ("n02085620_7.JPEG", 30, 44), 2: ("n02085620_9.JPEG", 36, 36),
          3: ("n01440764_99.JPEG", 20, 20)}


def annotations():
    anns = [
        # image 0: a polygon of category 1 and an overlapping one of category 0 (equal counts: tie -> id 0)
        {"image_id": 0, "category_id": 1, "segmentation": [[2, 2, 30, 2, 30, 25, 2, 25]], "bbox": [2, 2, 28, 23], "area": 600, "iscrowd": 0},
        {"image_id": 0, "category_id": 0, "segmentation": [[20, 10, 38, 10, 38, 28, 20, 28]], "bbox": [20, 10, 18, 18], "area": 300, "iscrowd": 0},
        # two annotations of category 2 over part of the same area: count 2 beats category 0's 1
        {"image_id": 0, "category_id": 2, "segmentation": [[25, 15, 36, 15, 36, 27, 25, 27]], "bbox": [25, 15, 11, 12], "area": 120, "iscrowd": 0},
        {"image_id": 0, "category_id": 2, "segmentation": [[24, 14, 37, 14, 37, 26, 24, 26]], "bbox": [24, 14, 13, 12], "area": 150, "iscrowd": 0},
        # image 1: a 4-number "polygon" (the reference uses the box), an area-0 and a crowd annotation (skipped)
        {"image_id": 1, "category_id": 1, "segmentation": [[3, 4, 20, 30]], "bbox": [3.0, 4.0, 17.0, 26.0], "area": 400, "iscrowd": 0},
        {"image_id": 1, "category_id": 0, "segmentation": [[0, 0, 29, 0, 29, 43, 0, 43]], "bbox": [0, 0, 29, 43], "area": 0, "iscrowd": 0},
        {"image_id": 1, "category_id": 2, "segmentation": [[0, 30, 29, 30, 29, 43, 0, 43]], "bbox": [0, 30, 29, 13], "area": 300, "iscrowd": 1},
        # image 2: two polygons in one annotation
        {"image_id": 2, "category_id": 0, "segmentation": [[1, 1, 10, 1, 10, 10, 1, 10], [20, 20, 34, 20, 34, 34, 20, 34]],
         "bbox": [1, 1, 33, 33], "area": 250, "iscrowd": 0},
        # image 3: only an area-0 annotation: dropped
        {"image_id": 3, "category_id": 0, "segmentation": [[1, 1, 5, 1, 5, 5]], "bbox": [1, 1, 4, 4], "area": 0, "iscrowd": 0},
    ]
    return [{**a, "id": k} for k, a in enumerate(anns)]


def coco_file(root, split="test", release="ood"):
    """Where the release keeps a split's COCO file: OOD ``<split>.json``, Seg ``annotations/<split>/<split>.json``."""
    return root / (f"{split}.json" if release == "ood" else f"annotations/{split}/{split}.json")


def image_folder(root, split="test", release="ood"):
    return root / (split if release == "ood" else f"images/{split}")


def write_tree(root, *, split="test", flat=False, release="ood"):
    """The miniature tree in the release's layout (``flat``: images directly in the split folder)."""
    data = {"images": [{"id": i, "file_name": f, "width": w, "height": h} for i, (f, w, h) in IMAGES.items()],
            "annotations": annotations(), "categories": CATEGORIES}
    for name in ("train", "val", "test"):
        coco_file(root, name, release).parent.mkdir(parents=True, exist_ok=True)
        coco_file(root, name, release).write_text(json.dumps(data))
        for i, (f, w, h) in IMAGES.items():
            folder = image_folder(root, name, release) / ("" if flat else f.split("_")[0])
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(i)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f, quality=95)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("pin") / "PartImageNet")


# -- the reference steps, written independently ------------------------------------------------------------
def reference_gt(root, image_id: int, size: int, crop: bool) -> torch.Tensor:
    import torchvision.transforms as T
    from pycocotools.coco import COCO

    coco = COCO(str(coco_file(root)))
    data = copy.deepcopy(coco.dataset)
    for ann in data["annotations"]:
        if ann["area"] == 0 or ann["iscrowd"] == 1:
            continue
        for k, seg in enumerate(ann["segmentation"]):
            if len(seg) == 4:
                x1, y1, w, h = ann["bbox"]
                ann["segmentation"][k] = [x1, y1, x1, y1 + h, x1 + w, y1 + h, x1 + w, y1]
    coco.dataset = data
    coco.createIndex()
    info = coco.imgs[image_id]
    masks = torch.zeros(len(coco.cats), info["height"], info["width"])
    for ann in coco.imgToAnns[image_id]:
        if ann["area"] == 0 or ann["iscrowd"] == 1:
            continue
        masks[ann["category_id"]] += torch.as_tensor(coco.annToMask(ann), dtype=torch.float32)
    transform = [T.Resize(size, interpolation=T.InterpolationMode.NEAREST)] + ([T.CenterCrop(size)] if crop else [])
    masks = T.Compose(transform)(masks)
    masks = torch.cat([masks, torch.full((1, *masks.shape[-2:]), 0.1)])
    return masks.argmax(0)  # background = len(categories)


def coarse(image_id: int, k: int) -> torch.Tensor:
    maps = torch.rand(k + 1, 4, 5, generator=torch.Generator().manual_seed(image_id))
    maps[k] = maps[0]  # background ties with the first part everywhere
    return maps


@pytest.mark.parametrize("protocol, size, crop", [("whole-image:24-crop", 24, True), ("whole-image:20", 20, False)])
def test_labels_and_nmi_ari_equal_the_reference(root, protocol, size, crop):
    ds = D.load("partimagenet", root=root, split="test", view="whole", protocol=protocol, masks="method")
    assert len(ds) == 3 and ds.summary()["without_annotations"] == 1
    assert set(ds.class_ids()) <= {"n01440764", "n02085620"} and list(ds.class_ids()) == sorted(ds.class_ids())
    k = 3
    gts, preds, table = [], [], ContingencyTable()
    for index in range(len(ds)):
        sample = ds[index]
        image_id = sample.meta["image_id"]
        assert sample.meta["class_id"] == IMAGES[image_id][0].split("_")[0]  # the synset: the image-level class
        expected = reference_gt(root, image_id, size, crop)
        ours = torch.where(sample.part_labels == 0, torch.tensor(len(CATEGORIES)), sample.part_labels - 1)
        assert torch.equal(ours, expected), image_id
        assert ds.image_size(index) == sample.size
        up = F.interpolate(coarse(image_id, k)[None], size=sample.size, mode="bilinear", align_corners=False)
        gts.append(expected.flatten().numpy())
        preds.append(up.argmax(1).flatten().numpy())
    for batch in ds.batches(2):
        ids = [int(ds._images[[str(i["file_name"]) for i in ds._images].index(b)]["id"]) for b in batch.ids]
        maps = torch.stack([coarse(i, k) for i in ids])
        maps = PartMaps(torch.cat([maps[:, k:], maps[:, :k]], 1), image_size=batch.size, has_background=True,
                        kind="probs")
        table.update(*label_pairs(maps, batch, role="full", ground_truth="pixels", protocol=ds.protocol,
                                  background="method")["full"])
    gt, pred = np.concatenate(gts), np.concatenate(preds)
    assert table.total == len(gt)
    assert table.nmi() == pytest.approx(normalized_mutual_info_score(gt, pred), abs=1e-12)
    assert table.ari() == pytest.approx(adjusted_rand_score(gt, pred), abs=1e-12)


def test_ties_overlaps_and_skipped_annotations(root):
    ds = D.load("partimagenet", root=root, split="test", view="whole", protocol="whole-image:30", masks="gt")
    first = ds[0]  # 40x30 -> short side 30: unchanged
    labels = first.part_labels
    assert int(labels[20, 22]) == 1  # categories 0 and 1 once each: the lowest id (0) -> label 1
    assert int(labels[20, 30]) == 3  # category 2 twice beats category 0 once
    assert int(labels[5, 5]) == 2 and int(labels[29, 39]) == 0
    assert torch.equal(first.mask, (labels != 0).float())
    second = ds[1]  # 30x44: the 4-number polygon is its box; area-0 and crowd annotations are ignored
    assert set(second.part_labels.unique().tolist()) == {0, 2}


def write_pdisco_split(path):
    """PDiscoFormer's split file format: image 0 (and the unannotated 3) for training, 1 and 2 for testing."""
    path.write_text("0\t0\t1\tn01440764\tn01440764_10.JPEG\n1\t1\t2\tn02085620\tn02085620_7.JPEG\n"
                    "2\t1\t2\tn02085620\tn02085620_9.JPEG\n3\t0\t1\tn01440764\tn01440764_99.JPEG\n")
    return path


def test_official_and_pdisco_splits_and_flat_layout(tmp_path):
    root = write_tree(tmp_path / "PIN", flat=True)
    assert len(D.load("partimagenet", root=root, split="val", protocol="whole-image")) == 3
    split = write_pdisco_split(tmp_path / "split.txt")
    test = D.load("partimagenet", root=root, split="test", protocol="whole-image:16-crop", split_source="pdisco",
                  split_file=str(split))
    train = D.load("partimagenet", root=root, split="train", protocol="whole-image", split_source="pdisco",
                   split_file=str(split))
    assert [s["id"] for s in test._images] == [1, 2] and [s["id"] for s in train._images] == [0]
    assert test[0].size == (16, 16)  # images read from train/ (the re-split of the training split)
    with pytest.raises(UserError, match="train_test_split_pimagenet_ood.txt: split file is missing"):
        D.load("partimagenet", root=root, split_source="pdisco", protocol="whole-image")
    (root / "train_test_split_pimagenet_ood.txt").write_text(split.read_text())  # the default place
    assert len(D.load("partimagenet", root=root, split_source="pdisco", protocol="whole-image")) == 2
    with pytest.raises(UserError, match="whole-image"):
        D.load("partimagenet", root=root, protocol="corrected")
    bad = tmp_path / "bad.txt"
    bad.write_text("0 0 1 n01440764 x.JPEG\n")
    with pytest.raises(UserError, match="bad.txt, line 1"):
        D.load("partimagenet", root=root, protocol="whole-image", split_source="pdisco", split_file=str(bad))


def test_data_check_and_download_steps(tmp_path):
    from benchmark.cli import cli

    root = write_tree(tmp_path / "PIN")
    ok = CliRunner().invoke(cli, ["data", "check", "-d", "partimagenet", "--data-root", str(root), "-q"])
    assert ok.exit_code == 0, ok.output
    assert "test: 3 samples" in ok.output
    (image_folder(root) / "n02085620" / "n02085620_7.JPEG").unlink()
    data = json.loads(coco_file(root, "val").read_text())
    data["annotations"][0]["category_id"] = 9
    coco_file(root, "val").write_text(json.dumps(data))
    bad = CliRunner().invoke(cli, ["data", "check", "-d", "partimagenet", "--data-root", str(root), "-q"])
    assert bad.exit_code == 2
    assert "n02085620_7.JPEG" in bad.output and "category id 9" in bad.output
    steps = CliRunner().invoke(cli, ["data", "download", "partimagenet"])
    assert steps.exit_code == 0 and "train_test_split_pimagenet_ood.txt" in steps.output


def test_release_layouts(tmp_path):
    """OOD: ``<split>.json`` beside ``<split>/<wnid>/`` (PDiscoNet's prep.py, PDiscoFormer's re-split); Seg:
    ``annotations/<split>/<split>.json`` and ``images/<split>/`` (MPAE's loader); the earlier
    ``annotations/<split>.json`` + ``images/<split>/`` still reads; a missing file is named with the fix."""
    seg = write_tree(tmp_path / "Seg", release="seg", flat=True)
    ds = D.load("partimagenet", root=seg, split="test", protocol="whole-image:16-crop", release="seg")
    assert len(ds) == 3 and ds[0].size == (16, 16)
    with pytest.raises(UserError, match=r"test\.json: file is missing.*<root>/<split>\.json"):
        D.load("partimagenet", root=seg, split="test", protocol="whole-image")  # an OOD run on the Seg tree
    old = tmp_path / "Old"
    (old / "annotations").mkdir(parents=True)
    ood = write_tree(tmp_path / "OOD")
    (old / "annotations" / "test.json").write_text(coco_file(ood).read_text())
    (old / "images").mkdir()
    image_folder(ood).rename(old / "images" / "test")
    assert len(D.load("partimagenet", root=old, split="test", protocol="whole-image")) == 3


def build_fixture(tmp_path):
    """Miniature tree for the shared contract tests (tests/dataset_fixtures.py): ``(root, options)``."""
    return write_tree(tmp_path / "PartImageNet"), {"protocol": "whole-image:32"}
