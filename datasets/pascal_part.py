"""PASCAL-Part (PASCAL VOC 2010 images + ``Annotations_Part/*.mat``), one category per run
(views and rules: ``docs/protocol.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, binarise
from benchmark.core.registry import register_dataset
from benchmark.core.types import Sample

from ._base import Reporter, RealDataset
from ._io import read_gray, read_rgb, read_table
from ._views import CROP_FILL_UINT8, crop_fill, cv2_resize, long_side_size, pad_to, square_box

_ANIMAL_Q = ["head", "lblleg", "lbuleg", "lear", "leye", "lflleg", "lfuleg", "lhorn", "muzzle", "neck", "rblleg",
             "rbuleg", "rear", "reye", "rflleg", "rfuleg", "rhorn", "tail", "torso"]
_CAT = ["head", "lbleg", "lbpa", "lear", "leye", "lfleg", "lfpa", "neck", "nose", "rbleg", "rbpa", "rear", "reye",
        "rfleg", "rfpa", "tail", "torso"]
_VEHICLE = ["backside", "bliplate", "door", "fliplate", "frontside", "headlight", "leftmirror", "leftside",
            "rightmirror", "rightside", "roofside", "wheel", "window"]

#: the ten categories of the paper and their part lists (label = index, 0 = background)
PART_NAMES: dict[str, tuple[str, ...]] = {
    "cat": ("background", *_CAT),
    "dog": ("background", *_CAT[:7], "muzzle", *_CAT[7:]),
    "horse": ("background", "head", "lbho", "lblleg", "lbuleg", "lear", "leye", "lfho", "lflleg", "lfuleg", "muzzle",
              "neck", "rbho", "rblleg", "rbuleg", "rear", "reye", "rfho", "rflleg", "rfuleg", "tail", "torso"),
    "cow": ("background", *_ANIMAL_Q),
    "sheep": ("background", *_ANIMAL_Q),
    "car": ("background", *_VEHICLE),
    "bus": ("background", *_VEHICLE),
    "motorbike": ("background", "bwheel", "fwheel", "handlebar", "headlight", "saddle"),
    "bicycle": ("background", "bwheel", "chainwheel", "fwheel", "handlebar", "headlight", "saddle"),
    "aeroplane": ("background", "body", "engine", "lwing", "rwing", "stern", "tail", "wheel"),
}
CATEGORIES = tuple(PART_NAMES)
FIX = "Re-extract the PASCAL-Part annotations (benchmark data download pascal-part --out DIR)"


def part_base_name(part_name: str) -> str:
    """The text before the first ``_`` or trailing digits (``wheel_2``, ``engine3`` -> base)."""
    return part_name.split("_", 1)[0].rstrip("0123456789")


def paint_labels(parts: list[tuple[str, np.ndarray]], names: tuple[str, ...], hw: tuple[int, int],
                 where: str) -> np.ndarray:
    """The label map: parts painted in *reverse* list order, so an earlier part wins an overlap."""
    labels = np.zeros(hw, dtype=np.int64)  # at most 22 labels
    lookup = {n: k for k, n in enumerate(names)}
    for name, mask in reversed(parts):
        label = lookup.get(part_base_name(name))
        if label is None or label == 0:
            raise UserError(f"{where}: part {name!r} is not one of the parts of this category "
                            f"({', '.join(names[1:])}); the annotation file is not PASCAL-Part's")
        labels[np.asarray(mask) > 0] = label
    return labels


@register_dataset("pascal-part")
class PascalPart(RealDataset):
    """PASCAL-Part objects of one category (--category), pixel-based NMI/ARI on object crops.

    Tree (``--data-root``): ``Annotations_Part/<id>.mat`` and ``VOC2010/{JPEGImages,ImageSets/Main}`` (also
    found under ``VOCdevkit/VOC2010``). Images of a split = first column of
    ``ImageSets/Main/<category>_{train,val}.txt`` (``test`` = ``val``); images flagged -1 there hold no object
    of the category and are not opened. Every object whose ``class`` is the category is one sample
    (id ``<image id>/<object index>``, 0-based in the .mat).

    Object filter: tight box ``(x0, y0, x1, y1)`` of the object mask (inclusive indices) with
    ``(x1 - x0) * (y1 - y0) / (H * W) > area_threshold`` (strict; 0.2 = the paper's rule for both splits;
    ``train_area_threshold=0.1`` reproduces the reference code's training filter). Objects without any part
    annotation (and with an empty mask) are skipped and counted in :meth:`summary`.

    Labels: the part list per category (:data:`PART_NAMES`) (label = index, name = ``part_name`` before the first
    ``_`` or digit suffix); parts painted in reverse order so earlier parts win overlaps; object pixels
    without a part stay 0. An unknown part name is an error naming the file.

    Views (one crop rule, the training code's): box + 5 % pad (``train``: + uniform +-5 % jitter per side), rounded and
    grown to a square, cropped with fill 1/255 (image; the reference's uint8 value 1) and 0 (labels,
    masks), resized so the long side is 256 (cv2 rules: bilinear image, nearest labels), edge-replicated
    (image and labels) to 256x256 if rounding left a side short; ``train`` adds a flip with p = 0.5.
    ``fg`` is the evaluation crop (the FG metrics ignore label 0); ``full`` (the with-background variant:
    all pixels, background from the mask) is the *same* crop, so ``full_view = "fg"`` and the harness
    predicts once; ``view="full"`` is accepted and returns identical samples.
    Masks: ``gt`` = union of the part masks (labels != 0); ``predicted:DIR`` = ``DIR/<image id>.png``
    (full-image mask, cropped like the image; binarised + nearest under ``corrected``, raw codes resized
    nearest under ``legacy``); ``none``.
    """

    ground_truth = "pixels"
    views = ("fg", "full", "train")
    fg_view = "fg"
    full_view = "fg"
    #: the reference's `Trainer.log_ari` upsamples with the trainer's `interp` (align_corners=True)
    legacy_align_corners = {"fg": True, "full": True}
    protocol_description = (
        "one category; objects with box area > 20% of the image (train: train_area_threshold, reference 10%), "
        "objects without parts skipped and counted; parts painted in reverse order; 5% padded square box "
        "(train: +-5% jitter, flip), fill 1/255, long side 256 (cv2 bilinear / nearest labels), edge-replicated "
        "to 256x256; full = same crop with all pixels")
    data_hint = ("Download: benchmark data download pascal-part --out DIR, then --data-root DIR "
                 "(Annotations_Part/ and VOC2010/ or VOCdevkit/VOC2010/).")

    def __init__(self, root=None, *, split="test", view="fg", protocol=DEFAULT_PROTOCOL, masks=None,
                 category: str = "car", area_threshold: float = 0.2, train_area_threshold: float | None = None,
                 jitter: float = 0.05, _collect: Reporter | None = None):
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks)
        if category not in PART_NAMES:
            raise UserError(f"unknown PASCAL-Part category {category!r}; choose one of {', '.join(CATEGORIES)}")
        self.category = category
        self.part_names = PART_NAMES[category]
        self.area_threshold = float(area_threshold)
        self.jitter = float(jitter)
        self.train_area_threshold = None if train_area_threshold is None else float(train_area_threshold)
        threshold = self.train_area_threshold if (split == "train" and self.train_area_threshold is not None) \
            else self.area_threshold
        self._pred_dir = self.mask_folder
        self.voc = self._find_voc()
        report = _collect or Reporter(fix=FIX)
        self._objects: list[tuple[str, int, tuple[int, int, int, int]]] = []
        # Indexing opens every .mat of the split; with_view() and the other views of a run reuse it.
        key = _memo_key(self, threshold)
        if key is not None and key in _INDEX_MEMO and _collect is None:
            objects, counts = _INDEX_MEMO[key]
            self._objects, self._counts = list(objects), dict(counts)
        else:
            self._counts = _index(self, threshold, report)
            if key is not None and not report.problems:
                _INDEX_MEMO[key] = (tuple(self._objects), dict(self._counts))

    # -- contract --------------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        return {"category": self.category, "area_threshold": self.area_threshold,
                "train_area_threshold": self.train_area_threshold, "jitter": self.jitter}

    def __len__(self) -> int:
        return len(self._objects)

    def image_size(self, index: int) -> tuple[int, int] | None:
        return 256, 256

    def files(self, index: int) -> Iterator[tuple[Path, str]]:
        image_id = self._objects[index][0]
        yield self._image_path(image_id), "rgb"
        if self._pred_dir is not None:
            yield self._pred_dir / f"{image_id}.png", "gray"

    def mask_file(self, index: int) -> str:
        return f"{self._objects[index][0]}.png"

    def source_image(self, index: int) -> torch.Tensor:
        return torch.from_numpy(read_rgb(self._image_path(self._objects[index][0]))).permute(2, 0, 1).float() / 255.0

    def __getitem__(self, index: int) -> Sample:
        image_id, k, box = self._objects[index]
        image = read_rgb(self._image_path(image_id))
        objects = _load_objects(self._mat_path(image_id))
        cls, obj_mask, parts = objects[k]
        if tuple(obj_mask.shape) != image.shape[:2]:
            raise UserError(f"{self._mat_path(image_id)}: object masks are {obj_mask.shape[1]}x{obj_mask.shape[0]} "
                            f"(WxH) but the image is {image.shape[1]}x{image.shape[0]}. {FIX}")
        labels = paint_labels(parts, self.part_names, obj_mask.shape, str(self._mat_path(image_id)))
        raw_mask = None
        if self._pred_dir is not None:
            path = self._pred_dir / f"{image_id}.png"
            from ._io import read_predicted_mask

            raw_mask = read_predicted_mask(path, image.shape[:2], protocol=self.protocol)
        train = self.view == "train"
        left, top, side = square_box(*box, pad=0.05, jitter=self.jitter if train else 0.0)
        out_hw = long_side_size(side, side)
        crop = torch.from_numpy(crop_fill(image, left, top, side, side, CROP_FILL_UINT8)).permute(2, 0, 1)
        img = cv2_resize(crop.float(), out_hw, "bilinear").div_(255.0)
        lab = cv2_resize(torch.from_numpy(crop_fill(labels.astype(np.uint8), left, top, side, side, 0)), out_hw,
                         "nearest").long()
        img, lab = pad_to(img, (256, 256), mode="edge"), pad_to(lab, (256, 256), mode="edge")
        if raw_mask is not None:
            cropped = crop_fill(raw_mask, left, top, side, side, 0)
            # nearest under both protocols, as the training code's crops; raw codes unless binarised
            values = binarise(cropped) if self.protocol.rules.binarise_masks else cropped.astype(np.float32)
            mask = cv2_resize(torch.from_numpy(values), out_hw, "nearest")
            mask = pad_to(mask, (256, 256), mode="edge")
        elif self.masks.dataset_reads == "annotations":
            mask = (lab != 0).float()
        else:
            mask = None
        scale = out_hw[1] / side
        x0, y0, x1, y1 = box
        bbox = torch.tensor([(x0 - left) * scale, (y0 - top) * scale, (x1 - x0 + 1) * scale, (y1 - y0 + 1) * scale],
                            dtype=torch.float32)
        flipped = bool(train and torch.rand(()) < 0.5)
        if flipped:
            img, lab = img.flip(-1), lab.flip(-1)
            mask = mask.flip(-1) if mask is not None else None
            bbox[0] = 256 - bbox[0] - bbox[2]
        meta = {"image_id": image_id, "object_index": k, "category": self.category, "crop": (left, top, side),
                "object_box": box, "flipped": flipped, "original_size": image.shape[:2]}
        return Sample(image=img.contiguous(), id=f"{image_id}/{k}", part_labels=lab.contiguous(),
                      mask=mask.contiguous() if mask is not None else None, bbox=bbox, meta=meta)

    # -- paths ------------------------------------------------------------------------------------------
    def _find_voc(self) -> Path:
        for candidate in (self.root / "VOC2010", self.root / "VOCdevkit" / "VOC2010", self.root):
            if (candidate / "JPEGImages").is_dir():
                return candidate
        raise UserError(f"no VOC2010/JPEGImages under {self.root}; --data-root must hold Annotations_Part/ and "
                        f"VOC2010/ (or VOCdevkit/VOC2010/). {self.data_hint}")

    def _image_path(self, image_id: str) -> Path:
        return self.voc / "JPEGImages" / f"{image_id}.jpg"

    def _mat_path(self, image_id: str) -> Path:
        return self.root / "Annotations_Part" / f"{image_id}.mat"

    @classmethod
    def check_tree(cls, root, **options):
        report = Reporter(collect=True)
        datasets = [cls(root, split=s, _collect=report, **options) for s in cls.splits]
        return (datasets, []) if not report.problems else ([], report.problems)


_INDEX_MEMO: dict[tuple, tuple[tuple, dict[str, int]]] = {}


def _memo_key(ds: "PascalPart", threshold: float) -> tuple | None:
    """Identifies an index: the tree, category, split file (and its mtime/size) and the area threshold."""
    split_file = ds.voc / "ImageSets" / "Main" / f"{ds.category}_{'train' if ds.split == 'train' else 'val'}.txt"
    try:
        stat = split_file.stat()
    except OSError:
        return None
    annotations = ds.root / "Annotations_Part"
    try:
        ann_stat = annotations.stat()
    except OSError:
        return None
    return (str(ds.root.resolve()), ds.category, ds.split, threshold, stat.st_mtime_ns, stat.st_size,
            ann_stat.st_mtime_ns)


def _load_objects(path: Path) -> list[tuple[str, np.ndarray, list[tuple[str, np.ndarray]]]]:
    """``(class, mask, [(part_name, mask), ...])`` of every object of a PASCAL-Part .mat."""
    import scipy.io

    if not path.is_file():
        raise UserError(f"part annotation {path} is missing. {FIX}")
    try:
        objects = scipy.io.loadmat(str(path))["anno"][0, 0]["objects"]
        result = []
        for k in range(objects.shape[1] if objects.size else 0):
            obj = objects[0, k]
            parts_arr = obj["parts"]
            parts = [(str(parts_arr[0, j]["part_name"][0]), parts_arr[0, j]["mask"])
                     for j in range(parts_arr.shape[1] if parts_arr.size else 0)]
            result.append((str(obj["class"][0]), obj["mask"], parts))
    except UserError:
        raise
    except Exception as exc:  # damaged or foreign .mat files fail in many ways inside scipy
        raise UserError(f"part annotation {path} cannot be read as a PASCAL-Part file ({type(exc).__name__}: "
                        f"{exc}). {FIX}") from None
    return result


def _index(ds: PascalPart, threshold: float, report: Reporter) -> dict[str, int]:
    split_file = ds.voc / "ImageSets" / "Main" / f"{ds.category}_{'train' if ds.split == 'train' else 'val'}.txt"
    if not split_file.is_file():
        report(split_file, 0, "is missing; it lists the images of the split (re-extract the VOC2010 trainval tar)")
        return {}
    ids, flags = read_table(split_file, (str, int), fix="Re-extract the VOC2010 trainval tar")
    counts = {"images_listed": len(ids), "images_opened": 0, "objects_of_category": 0,
              "skipped_small": 0, "skipped_without_parts": 0, "skipped_empty_mask": 0}
    for image_id in (str(i) for i, f in zip(ids, flags) if f != -1):
        path = ds._mat_path(image_id)
        try:
            objects = _load_objects(path)
        except UserError as exc:
            report(path, 0, str(exc).replace(f"part annotation {path} ", ""))
            continue
        counts["images_opened"] += 1
        for k, (cls, obj_mask, parts) in enumerate(objects):
            if cls != ds.category:
                continue
            counts["objects_of_category"] += 1
            if not parts:
                counts["skipped_without_parts"] += 1
                continue
            unknown = [p for p, _ in parts if part_base_name(p) not in ds.part_names[1:]]
            if unknown:
                report(path, 0, f"object {k} ({cls}) has parts {unknown} that are not in the {cls} part list")
                continue
            rows = np.flatnonzero(np.asarray(obj_mask).any(axis=1))
            cols = np.flatnonzero(np.asarray(obj_mask).any(axis=0))
            if rows.size == 0:
                counts["skipped_empty_mask"] += 1
                continue
            x0, x1, y0, y1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
            h, w = obj_mask.shape
            if (x1 - x0) * (y1 - y0) / float(h * w) <= threshold:  # the reference's rule: strict '>', no +1
                counts["skipped_small"] += 1
                continue
            ds._objects.append((image_id, k, (x0, y0, x1, y1)))
    return counts
