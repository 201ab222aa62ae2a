"""PartImageNet (He et al., ECCV 2022): part masks of 158 ImageNet classes in COCO format, scored per pixel
under ``--protocol whole-image`` as PDiscoNet, PDiscoFormer and MPAE do (``docs/protocol.md``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from benchmark.core.errors import UserError
from benchmark.core.protocol import WHOLE_IMAGE, WHOLE_IMAGE_DEFAULT_SIZE
from benchmark.core.registry import register_dataset
from benchmark.core.types import Sample

from ._base import RealDataset, Reporter
from ._io import Problem, read_rgb
from ._views import short_side_size, whole_image_view

RELEASES = ("ood", "seg")
SPLIT_SOURCES = ("official", "pdisco")
#: PDiscoFormer's re-split of the OOD training split, looked for in the data root unless ``split_file=`` says
SPLIT_FILE = "train_test_split_pimagenet_ood.txt"
#: the training view's square side (PDiscoNet trains PartImageNet at 256)
TRAIN_SIZE = 256
#: where a release keeps a split's COCO file and its images, first the layout the papers' code reads (named in
#: messages), then the one earlier partbench versions documented (still accepted):
#: * OOD (the original release): ``<split>.json`` beside ``<split>/<wnid>/<wnid>_<n>.JPEG``, as PDiscoNet's
#:   ``datasets/partimagenet/prep.py`` reads ``./train.json`` and ``./train/<wnid>/<file_name>`` (its README
#:   shows ``partimagenet/{train,val,test}``) and PDiscoFormer's ``prepare_partimagenet_ood.py`` prefixes
#:   ``<wnid>/`` to each ``file_name`` read under ``train/``;
#: * Seg: ``annotations/<split>/<split>.json`` and ``images/<split>/<file_name>``, as MPAE's
#:   ``Dataloader/PartImageSeg.py`` reads them.
LAYOUTS = {
    "ood": (("{split}.json", "{split}"), ("annotations/{split}.json", "images/{split}")),
    "seg": (("annotations/{split}/{split}.json", "images/{split}"), ("annotations/{split}.json", "images/{split}")),
}
FIX = ("Re-extract the PartImageNet archive: PartImageNet_OOD as <root>/<split>.json beside <root>/<split>/<wnid>/, "
       "PartImageNet_Seg as <root>/annotations/<split>/<split>.json and <root>/images/<split>/ "
       "(benchmark data download partimagenet prints the steps)")


def split_layout(root: Path, release: str, split: str) -> tuple[Path, Path]:
    """``(COCO file, image folder)`` of ``split`` in the tree at ``root``: the first layout of
    :data:`LAYOUTS` whose COCO file exists, else the release's own (for the message naming what is missing)."""
    if release not in LAYOUTS:
        raise UserError(f"partimagenet: release must be one of {', '.join(RELEASES)}, got {release!r}")
    candidates = [(root / ann.format(split=split), root / images.format(split=split))
                  for ann, images in LAYOUTS[release]]
    return next((pair for pair in candidates if pair[0].is_file()), candidates[0])


DOWNLOAD_STEPS = """PartImageNet is distributed through the authors' links, not a stable direct URL:
  1. Open https://github.com/TACJu/PartImageNet and follow its download link for PartImageNet_OOD.zip
     (the release the part-discovery papers use) and/or PartImageNet_Seg.zip.
  2. Unzip it (and any split archive inside it, e.g. test.zip) so that the tree reads, for PartImageNet_OOD,
       <root>/{train,val,test}.json
       <root>/{train,val,test}/<wnid>/<wnid>_<n>.JPEG
     and for PartImageNet_Seg (-o release=seg)
       <root>/annotations/{train,val,test}/{train,val,test}.json
       <root>/images/{train,val,test}/<wnid>_<n>.JPEG
     (images in per-class <wnid>/ folders or directly in the split folder both work).
  3. For the split of PDiscoNet / PDiscoFormer (their test set is a held-out part of the OOD *training*
     split), get data_sets/train_test_split_pimagenet_ood.txt from
     https://github.com/ananthu-aniraj/pdiscoformer into <root> (or pass -o split_file=PATH) and use
     -o split_source=pdisco.
  4. Check the tree: benchmark data check -d partimagenet --data-root <root>"""


@register_dataset("partimagenet")
class PartImageNet(RealDataset):
    """PartImageNet OOD and Seg: COCO polygon part masks of 158 ImageNet classes, pixel NMI/ARI under --protocol whole-image.

    Releases: ``release="ood"`` (classes disjoint across train/val/test) or ``"seg"``; the polygons are
    rasterised with pycocotools.

    Tree (:data:`LAYOUTS`): OOD ``<root>/<split>.json`` beside ``<root>/<split>/<wnid>/<file_name>``; Seg
    ``<root>/annotations/<split>/<split>.json`` and ``<root>/images/<split>/<file_name>``; images in per-class
    ``<wnid>/`` folders or directly in the split folder; ``annotations/<split>.json`` with ``images/<split>/``
    is accepted for both.

    Splits: ``split_source="official"``: the release's ``train``, ``val``, ``test``. ``"pdisco"``: the
    re-split of the OOD *training* split that PDiscoNet and PDiscoFormer evaluate on (``train`` / ``test``),
    read from their ``train_test_split_pimagenet_ood.txt`` (``split_file=``, default: that file in the data
    root; tab-separated ``image_id
    is_test label_id wnid file_name``, ``image_id`` = the id in ``annotations/train.json``).

    Ground truth (PDiscoFormer's ``PartImageNetDataset`` and ``eval_nmi_ari_part_imagenet``): annotations
    with ``area == 0`` or ``iscrowd`` are skipped, a 4-number polygon is replaced by its box rectangle,
    every other annotation is rasterised (``annToMask``) and added into the channel of its category id;
    the label of a pixel is the argmax over those channels plus a constant 0.1 background channel placed
    last, i.e. the category with the most covering annotations (ties: the lowest id), or background where
    none covers it. ``Sample.part_labels`` = category id + 1 (0 = background). An image is kept when
    one of its annotations has ``area > 0``.

    Views: ``whole`` (``--protocol whole-image`` only, both roles): image resized so its short side is
    ``protocol.image_size`` (PIL bilinear, long side truncated), the label map resized the same way with
    nearest neighbour (torchvision's tensor ``Resize(NEAREST)``, i.e. ``F.interpolate(mode="nearest")``),
    then with ``protocol.centre_crop`` both cut to a centred square. ``train``: the same at 256 with a
    centred crop and a horizontal flip with p = 0.5 (no left/right part names to swap). Masks: ``gt`` =
    ``part_labels != 0``; ``none``; ``method``.
    """

    ground_truth = "pixels"
    splits = ("train", "val", "test")
    views = ("whole", "train")
    fg_view = full_view = whole_image_view = "whole"
    landmark_protocol = None
    protocol_description = ("whole image, short side S (PIL bilinear; labels nearest), optional centred S x S "
                            "crop; GT = argmax over the category masks plus a 0.1 background channel")
    data_hint = ("Download: benchmark data download partimagenet (prints the steps), then --data-root <root> "
                 "(OOD: <split>.json and <split>/; Seg: annotations/ and images/).")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import importlib.util

        if importlib.util.find_spec("pycocotools") is None:
            return "pycocotools is not installed (pip install pycocotools; a dependency of partbench)"
        return None

    def __init__(self, root=None, *, split="test", view="whole", protocol=WHOLE_IMAGE, masks=None,
                 release: str = "ood", split_source: str = "official", split_file: str | None = None,
                 _collect: Reporter | None = None):
        if split_source == "pdisco":
            self.splits = ("train", "test")
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks)
        if release not in RELEASES:
            raise UserError(f"partimagenet: release must be one of {', '.join(RELEASES)}, got {release!r}")
        if split_source not in SPLIT_SOURCES:
            raise UserError(f"partimagenet: split_source must be one of {', '.join(SPLIT_SOURCES)}, got {split_source!r}")
        if view != "train" and not self.protocol.rules.whole_image:
            raise UserError(f"partimagenet is scored under --protocol whole-image (the PDiscoNet/PDiscoFormer "
                            f"evaluation); --protocol {self.protocol} has no PartImageNet views")
        if self.masks.dataset_reads == "folder":
            raise UserError(f"partimagenet reads no mask folders; use --masks gt, none or method "
                            f"(got --masks {self.masks.spec})")
        if split_source == "pdisco" and release != "ood":
            raise UserError("partimagenet: split_source='pdisco' re-splits the OOD training split: use -o release=ood")
        if split_source == "pdisco" and not split_file:
            split_file = self.root / SPLIT_FILE
        self.release, self.split_source = release, split_source
        self.split_file = str(split_file) if split_file else None
        self.folder = "train" if split_source == "pdisco" else split
        self.expected_counts = {"test": 1658} if split_source == "pdisco" else (
            {"train": 16540, "val": 2957, "test": 4598} if release == "ood" else {"test": 2405})
        report = _collect or Reporter(fix=FIX)
        self._images: list[dict[str, Any]] = []
        self._anns: dict[int, list[dict[str, Any]]] = {}
        self.num_categories = 0
        self._coco_file, self._image_folder = split_layout(self.root, release, self.folder)
        index = _read_annotations(self._coco_file, report)
        if index is None:
            return
        images, anns, self.num_categories = index
        if split_source == "pdisco":
            chosen = _read_split_file(Path(self.split_file), report)
            if chosen is None:
                return
            unknown = sorted(set(chosen) - set(images))
            if unknown:
                report(Path(self.split_file), 0, f"image id {unknown[0]} is not in {self._coco_file}")
                return
            wanted = 1 if split == "test" else 0
            ids = [i for i in images if chosen.get(i) == wanted]
        else:
            ids = list(images)
        kept = [i for i in ids if any(float(a.get("area", 0)) > 0 for a in anns.get(i, []))]
        self._images = [images[i] for i in kept]
        self._anns = {i: anns.get(i, []) for i in kept}
        self._counts = {"images_in_split": len(ids), "without_annotations": len(ids) - len(kept)}

    # -- contract --------------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"release": self.release, "split_source": self.split_source}
        if self.split_file:
            opts["split_file"] = self.split_file
        return opts

    def __len__(self) -> int:
        return len(self._images)

    def class_ids(self) -> tuple[str, ...]:
        """The ImageNet synsets (``n01440764`` ...: the file name up to its first ``_``) of this split's images,
        the image-level classes PDiscoNet and PDiscoFormer train with."""
        return tuple(sorted({_synset(info) for info in self._images}))

    def _size(self) -> tuple[int, bool]:
        if self.view == "train":
            return TRAIN_SIZE, True
        return int(self.protocol.image_size or WHOLE_IMAGE_DEFAULT_SIZE), bool(self.protocol.centre_crop)

    def image_size(self, index: int) -> tuple[int, int] | None:
        size, crop = self._size()
        if crop:
            return size, size
        info = self._images[index]
        return short_side_size(int(info["height"]), int(info["width"]), size)

    def files(self, index: int) -> Iterator[tuple[Path, str]]:
        yield self._image_path(index), "rgb"

    def __getitem__(self, index: int) -> Sample:
        info = self._images[index]
        image = read_rgb(self._image_path(index))
        h, w = image.shape[:2]
        if (h, w) != (int(info["height"]), int(info["width"])):
            raise UserError(f"image {self._image_path(index)} is {w}x{h} but {self._coco_file} says "
                            f"{info['width']}x{info['height']}; the images do not belong to these annotations. {FIX}")
        labels = part_label_map(self._anns[int(info["id"])], h, w, self.num_categories)
        size, crop = self._size()
        img, labels = whole_image_view(image, labels, size, crop,
                                       flip=self.view == "train" and bool(torch.rand(()) < 0.5))
        mask = (labels != 0).float() if self.masks.dataset_reads == "annotations" else None
        return Sample(image=img, id=str(info["file_name"]), part_labels=labels, mask=mask,
                      meta={"image_id": int(info["id"]), "class_id": _synset(info), "original_size": (h, w)})

    def _image_path(self, index: int) -> Path:
        name = str(self._images[index]["file_name"])
        folder = self._image_folder
        nested = folder / name.split("_")[0] / name
        return nested if nested.is_file() or not (folder / name).is_file() else folder / name

    # -- data check --------------------------------------------------------------------------------------
    @classmethod
    def check_tree(cls, root, **options) -> tuple[list["PartImageNet"], list]:
        report = Reporter(collect=True)
        options = {k: v for k, v in options.items() if k not in ("protocol", "view")}
        datasets = []
        splits = ("train", "test") if options.get("split_source") == "pdisco" else cls.splits
        for split in splits:
            folder = "train" if options.get("split_source") == "pdisco" else split
            path, _images = split_layout(Path(root), options.get("release", "ood"), folder)
            if not path.is_file():
                report(path, 0, "file is missing")
                continue
            datasets.append(cls(root, split=split, view="whole", protocol=WHOLE_IMAGE, _collect=report, **options))
        return [d for d in datasets if len(d)], list(report.problems)


def part_label_map(anns: list[dict[str, Any]], h: int, w: int, num_categories: int) -> np.ndarray:
    """``(h, w)`` int64: category id + 1 of the category whose annotations cover the pixel most often
    (ties: the lowest id), 0 where none does (see the class docstring)."""
    from pycocotools import mask as mask_utils

    counts = np.zeros((max(num_categories, 1), h, w), dtype=np.int32)
    for ann in anns:
        if float(ann.get("area", 0)) == 0 or ann.get("iscrowd", 0) == 1:
            continue
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):
            polygons = [_box_polygon(ann["bbox"]) if len(p) == 4 else p for p in segmentation]
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
        elif isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, h, w)
        else:
            rle = segmentation
        counts[int(ann["category_id"])] += mask_utils.decode(rle).astype(np.int32)
    best = counts.argmax(axis=0)  # numpy's argmax returns the first maximum, as torch's does
    return np.where(counts.max(axis=0) > 0, best + 1, 0).astype(np.int64)


def _box_polygon(box: list[float]) -> list[float]:
    """A 4-number "polygon" of PartImageNet is a box: the reference replaces it by the box's rectangle."""
    x1, y1, bw, bh = box
    x2, y2 = x1 + bw, y1 + bh
    return [x1, y1, x1, y2, x2, y2, x2, y1]


def _read_annotations(path: Path, report: Reporter):
    """``({image id: image entry}, {image id: [annotations]}, number of categories)`` of a COCO file, or
    ``None`` after reporting what is wrong with it."""
    if not path.is_file():
        report(path, 0, "file is missing")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report(path, 0, f"is not a readable COCO JSON file ({exc})")
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        report(path, 0, "is not a COCO file: it needs lists 'images', 'annotations' and 'categories'")
        return None
    cat_ids = [c.get("id") for c in data["categories"] if isinstance(c, dict)]
    if not cat_ids or any(not isinstance(c, int) or c < 0 for c in cat_ids):
        report(path, 0, "category ids must be integers >= 0")
        return None
    count = max(cat_ids) + 1
    images: dict[int, dict[str, Any]] = {}
    for k, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not all(key in entry for key in ("id", "file_name", "height", "width")):
            report(path, 0, f"images[{k}] lacks one of id, file_name, height, width")
            return None
        images[int(entry["id"])] = entry
    anns: dict[int, list[dict[str, Any]]] = {}
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not all(key in ann for key in ("image_id", "category_id", "segmentation", "bbox")):
            report(path, 0, f"annotations[{k}] lacks one of image_id, category_id, segmentation, bbox")
            return None
        if int(ann["image_id"]) not in images:
            report(path, 0, f"annotations[{k}] names image id {ann['image_id']}, which is not in 'images'")
            return None
        if not 0 <= int(ann["category_id"]) < count:
            report(path, 0, f"annotations[{k}] has category id {ann['category_id']}, not one of 'categories'")
            return None
        anns.setdefault(int(ann["image_id"]), []).append(ann)
    return images, anns, count


def _read_split_file(path: Path, report: Reporter) -> dict[int, int] | None:
    """``{image id: is_test}`` of PDiscoFormer's ``train_test_split_pimagenet_ood.txt``."""
    if not path.is_file():
        report(path, 0, "split file is missing (get data_sets/train_test_split_pimagenet_ood.txt of "
                        "github.com/ananthu-aniraj/pdiscoformer)")
        return None
    chosen: dict[int, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 5 or not fields[0].strip().isdigit() or fields[1].strip() not in ("0", "1"):
            report(path, number, "expected 'image_id<TAB>is_test<TAB>label_id<TAB>wnid<TAB>file_name' with is_test 0 or 1")
            return None
        chosen[int(fields[0])] = int(fields[1])
    return chosen


__all__ = ["PartImageNet", "part_label_map", "DOWNLOAD_STEPS", "Problem"]


def _synset(info: dict[str, Any]) -> str:
    """The ImageNet synset of an image record: its file name up to the first ``_`` (``n01440764_10029.JPEG``)."""
    return str(info["file_name"]).rsplit("/", 1)[-1].split("_")[0]
