"""Oxford Flowers-102 (Nilsback & Zisserman, 2008) with its segmentation images: the foreground IoU of the
newer papers (PDiscoFormer's ``Flowers102Seg`` and ``eval_fg_bg``), scored under ``--protocol whole-image``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from benchmark.core.errors import UserError
from benchmark.core.protocol import WHOLE_IMAGE, WHOLE_IMAGE_DEFAULT_SIZE
from benchmark.core.registry import register_dataset
from benchmark.core.types import Sample

from ._base import RealDataset, Reporter
from ._io import read_rgb
from ._views import whole_image_view

#: the training view's square side (partbench's own training view, as PartImageNet's)
TRAIN_SIZE = 256
#: the split keys of setid.mat (image numbers from 1)
SPLIT_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}
FIX = ("Re-extract the Flowers-102 archives so that <root>/jpg/, <root>/segmim/, imagelabels.mat and setid.mat "
       "exist (benchmark data download flowers102 prints the steps)")

DOWNLOAD_STEPS = """Oxford Flowers-102 with its segmentations (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/):
  1. Download 102flowers.tgz, 102segmentations.tgz, imagelabels.mat and setid.mat from that page
     (torchvision.datasets.Flowers102(root, download=True) fetches all but the segmentations).
  2. Put them in one folder <root> (torchvision's <dir>/flowers-102 works) and extract both archives there:
       tar -xzf 102flowers.tgz; tar -xzf 102segmentations.tgz
     giving <root>/jpg/image_00001.jpg ... and <root>/segmim/segmim_00001.jpg ...
  3. Check the tree: benchmark data check -d flowers102 --data-root <root>"""


@register_dataset("flowers102")
class Flowers102(RealDataset):
    """Flowers-102: foreground masks from the VGG segmentation images, scored with ``fg_iou`` under --protocol whole-image.

    Tree (torchvision's layout plus ``segmim/``): ``<root>/jpg/image_NNNNN.jpg``,
    ``<root>/segmim/segmim_NNNNN.jpg``, ``imagelabels.mat`` (``labels``: class 1..102 of each image) and
    ``setid.mat`` (``trnid``, ``valid``, ``tstid``: the official splits, image numbers from 1). ``<root>``
    may also be the folder holding ``flowers-102/``.

    Ground truth (PDiscoFormer's ``Flowers102Seg``): the segmentation image paints the background pure
    blue; a pixel is background where ``B / ((G + R) mod 256 + 1e-6) > 100`` (the reference adds the two
    uint8 channels in uint8), the rest is foreground, and the binary mask is then median-filtered with a
    5 x 5 window (replicated borders, as ``cv2.medianBlur``) unless it is all one value.
    ``Sample.part_labels`` is that mask (1 = foreground), so the full view's label pairs carry it.

    View ``whole`` (both roles): the image resized so its short side is ``protocol.image_size`` (PIL
    bilinear), the mask with nearest neighbour, both optionally cut to a centred square
    (``protocol.centre_crop``). Part maps are upsampled with ``align_corners=True`` (``eval_fg_bg``).
    ``train``: the same at 256 with a centred crop and a horizontal flip with p = 0.5 (for methods that
    train, or load a checkpoint, within a run).
    """

    ground_truth = "pixels"
    splits = ("train", "val", "test")
    views = ("whole", "train")
    fg_view = full_view = whole_image_view = "whole"
    whole_image_align_corners = True
    metric_kinds = ("foreground",)
    landmark_protocol = None
    expected_counts = {"train": 1020, "val": 1020, "test": 6149}
    protocol_description = ("whole image, short side S (PIL bilinear; mask nearest), optional centred S x S crop; "
                            "foreground = not the blue background of the VGG segmentation")
    data_hint = ("Download: benchmark data download flowers102 (prints the steps), then --data-root <root> "
                 "(jpg/, segmim/, imagelabels.mat, setid.mat).")

    def __init__(self, root=None, *, split="test", view="whole", protocol=WHOLE_IMAGE, masks=None,
                 _collect: Reporter | None = None):
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks)
        if view != "train" and not self.protocol.rules.whole_image:
            raise UserError(f"flowers102 is scored under --protocol whole-image (PDiscoFormer's fg/bg IoU); "
                            f"--protocol {self.protocol} has no Flowers-102 views")
        if self.masks.dataset_reads == "folder":
            raise UserError(f"flowers102 reads no mask folders; use --masks method (got --masks {self.masks.spec})")
        if (self.root / "flowers-102" / "jpg").is_dir():
            self.root = self.root / "flowers-102"
        report = _collect or Reporter(fix=FIX)
        self._numbers = np.zeros(0, dtype=np.int64)
        self._labels = np.zeros(0, dtype=np.int64)
        index = _read_index(self.root, split, report)
        if index is None:
            return
        self._numbers, self._labels = index
        self._counts = {}

    def options(self) -> dict[str, Any]:
        return {}

    def class_ids(self) -> tuple[int, ...]:
        """The flower classes (``imagelabels.mat``, 1..102) of this split's images."""
        return tuple(int(c) for c in np.unique(self._labels))

    def __len__(self) -> int:
        return len(self._numbers)

    def _size(self) -> tuple[int, bool]:
        if self.view == "train":
            return TRAIN_SIZE, True
        return int(self.protocol.image_size or WHOLE_IMAGE_DEFAULT_SIZE), bool(self.protocol.centre_crop)

    def image_size(self, index: int) -> tuple[int, int] | None:
        size, crop = self._size()
        return (size, size) if crop else None

    def _paths(self, index: int) -> tuple[Path, Path]:
        number = int(self._numbers[index])
        return self.root / "jpg" / f"image_{number:05d}.jpg", self.root / "segmim" / f"segmim_{number:05d}.jpg"

    def files(self, index: int) -> Iterator[tuple[Path, str]]:
        image, seg = self._paths(index)
        yield image, "rgb"
        yield seg, "rgb"

    def __getitem__(self, index: int) -> Sample:
        image_path, seg_path = self._paths(index)
        image = read_rgb(image_path)
        segmentation = read_rgb(seg_path, "segmentation image")
        h, w = image.shape[:2]
        if segmentation.shape[:2] != (h, w):
            raise UserError(f"{seg_path} is {segmentation.shape[1]}x{segmentation.shape[0]} but its image "
                            f"{image_path.name} is {w}x{h}. {FIX}")
        mask = foreground_mask(segmentation)
        size, crop = self._size()
        img, labels = whole_image_view(image, mask, size, crop,
                                       flip=self.view == "train" and bool(torch.rand(()) < 0.5))
        fg = (labels != 0).float() if self.masks.dataset_reads == "annotations" else None
        return Sample(image=img, id=image_path.stem, part_labels=labels, mask=fg,
                      meta={"class_id": int(self._labels[index]), "original_size": (h, w)})

    @classmethod
    def check_tree(cls, root, **options) -> tuple[list["Flowers102"], list]:
        report = Reporter(collect=True)
        options = {k: v for k, v in options.items() if k not in ("protocol", "view")}
        datasets = [cls(root, split=split, view="whole", protocol=WHOLE_IMAGE, _collect=report, **options)
                    for split in cls.splits]
        return [d for d in datasets if len(d)], list(report.problems)


def foreground_mask(segmentation: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8, 1 = foreground, of an ``(H, W, 3)`` uint8 RGB segmentation image (class docstring)."""
    from scipy.ndimage import median_filter

    r, g, b = (segmentation[..., c] for c in range(3))
    green_red = (g + r).astype(np.float64)  # uint8 + uint8 wraps modulo 256, as in the reference
    background = (b / (green_red + 1e-6)) > 100
    mask = (~background).astype(np.uint8)
    if mask.min() != mask.max():
        mask = median_filter(mask, size=5, mode="nearest")
    return mask


def _read_index(root: Path, split: str, report: Reporter) -> tuple[np.ndarray, np.ndarray] | None:
    """``(image numbers, class labels)`` of ``split`` from setid.mat and imagelabels.mat, or ``None``."""
    from scipy.io import loadmat

    tables = {}
    for name, key in (("setid.mat", SPLIT_KEYS[split]), ("imagelabels.mat", "labels")):
        path = root / name
        if not path.is_file():
            report(path, 0, "file is missing")
            return None
        try:
            data = loadmat(path)
        except Exception as exc:  # scipy raises several types for a damaged file
            report(path, 0, f"is not a readable MATLAB file ({exc})")
            return None
        if key not in data:
            report(path, 0, f"has no '{key}' array")
            return None
        values = np.asarray(data[key]).reshape(-1)
        if values.size == 0 or not np.issubdtype(values.dtype, np.number) or (values != np.round(values)).any():
            report(path, 0, f"'{key}' must be a non-empty array of integers")
            return None
        tables[name] = values.astype(np.int64)
    numbers, labels = tables["setid.mat"], tables["imagelabels.mat"]
    bad = (numbers < 1) | (numbers > len(labels))
    if bad.any():
        report(root / "setid.mat", 0, f"'{SPLIT_KEYS[split]}' names image {int(numbers[bad][0])}, but "
                                      f"imagelabels.mat lists {len(labels)} images")
        return None
    return numbers, labels[numbers - 1]


__all__ = ["Flowers102", "foreground_mask", "DOWNLOAD_STEPS"]
