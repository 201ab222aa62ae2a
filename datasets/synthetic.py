"""``synthetic``: procedurally generated articulated creatures on cluttered backgrounds (no download).

Usage::

    ds = benchmark.datasets.load("synthetic", split="test", view="fg", difficulty=0.8, num_test=500)
    sample = ds[0]                      # Sample with image, part_labels, mask, keypoints, visible, bbox
    for batch in ds.batches(32): ...    # collated Batch es (all images have the same size)

    benchmark bench synthetic -p n=500  # samples/s, against decoding PNGs of the same size

See :class:`SyntheticCreatures` for the contract and :mod:`benchmark.datasets._synthetic_render` for the
renderer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.dataset import Dataset
from benchmark.core.errors import UserError
from benchmark.core.plugin import Range
from benchmark.core.protocol import DEFAULT_PROTOCOL, binarise
from benchmark.core.registry import register_dataset
from benchmark.core.seeding import derive_seed
from benchmark.core.types import Sample
from benchmark.datasets._synthetic_render import (
    KEYPOINT_FLIP,
    KEYPOINT_NAMES,
    KEYPOINT_PARTS,
    PART_FLIP,
    PART_NAMES,
    render_scene,
)

TORSO_CLASSES = (0, 1, 2, 3)  # meta["class_id"]: the torso colour's class (see the class docstring)

PAD = 0.05  # bbox padding per side, as a fraction of the bbox width/height (as the real datasets' crops)
JITTER = 0.05  # train view: uniform jitter of every side, as a fraction of the bbox width/height
_GROUND_TRUTHS = ("pixels", "keypoints")
# Rendered scenes are kept in memory when the whole split fits in this budget (training revisits the same
# scenes every epoch; at 64 px a scene takes 80 kB, so 400 training images take 32 MB).
CACHE_BYTES = 256 * 2**20


@register_dataset("synthetic")
class SyntheticCreatures(Dataset):
    """Procedurally generated articulated creatures on clutter (built in, no download, deterministic).

    Every image shows one creature seen from above -- head, torso, tail and four legs (7 part labels, see
    ``part_names``) with 15 named keypoints (``keypoint_names``) -- at a random pose (head turn, tail bend,
    two joint angles per leg), scale, rotation and mirror, with per-instance colour and texture jitter
    (stripes, spots, smooth noise) over a background of gradients, noise and clutter shapes whose colours
    overlap the part palette more as ``difficulty`` grows (0 = few plain distractors, 1 = dense clutter in
    part colours, stronger colour jitter and pixel noise, wider rotations).

    Options (constructor keywords, all recorded by :meth:`options`):

    * ``num_train`` / ``num_test``: split sizes; ``image_size``: side of every view's square images;
    * ``seed``: sample ``i`` of ``split`` is rendered from ``derive_seed(seed, "synthetic", split, i)``, so
      the splits are independent, a sample does not depend on the split size, and the same options give
      bit-identical tensors in every process and run (on one machine and NumPy build);
    * ``difficulty`` in [0, 1]; ``ground_truth``: ``"pixels"`` (part label maps, the default) or
      ``"keypoints"`` (evaluate at the 15 keypoints, CUB style).

    Views (the geometry rules of the real datasets, so every metric path runs):

    * ``"full"``: the whole ``image_size`` x ``image_size`` rendered image.
    * ``"fg"``: the tight GT box padded by 5 % of its width/height on every side, grown to a square about
      its centre, cropped and resized to ``image_size`` (bilinear image, nearest labels and masks);
      keypoints are transformed and a keypoint outside the crop is invisible.
    * ``--protocol whole-image``: both roles read ``"full"`` (:attr:`whole_image_view`), the image as generated:
      the stand-in has no original resolution to resize from, so the protocol's image size and crop do
      not apply (its argmax and background rules do).
    * ``"train"``: the ``"fg"`` crop with every side of the padded box jittered uniformly by +-5 % of the
      box width/height and a horizontal flip with p = 0.5 that swaps left/right labels
      (``part_flip_permutation``) and keypoints (``flip_permutation``). This randomness is drawn from
      torch's **global** RNG inside ``__getitem__``, so the trainer controls it by seeding torch (and, in
      DataLoader workers, by the DataLoader's per-worker seeding); the underlying scene stays fixed.

    Scenes are placed so that even the jittered crop stays inside the image (no fill values are needed).

    Class labels (``meta["class_id"]``, for methods trained with image-level labels, as CUB's species): from
    the base colour of the creature's torso, ``2 * (brightness >= 0.75) + (saturation >= 0.7)`` (HSV; both are
    drawn uniformly around those thresholds, so the four classes are about equally frequent). The class is
    visible on one part, in its colour, so that even a small network trained from random weights can learn
    it (a texture class was not learnt in the tiny runs); :meth:`class_ids` lists the four.

    Crops are continuous (sub-pixel) boxes sampled with ``grid_sample(align_corners=False)``, i.e. an exact
    crop-and-resize with no integer rounding of the box. A keypoint is visible when it lies inside the view
    on a pixel labelled with its own part (pixel ``round(x - 0.5), round(y - 0.5)``), so occlusion by
    another part -- and any resampling at a part's border -- is reflected in ``visible``.

    Masks: ``"gt"`` gives ``part_labels != 0``; ``"none"`` gives ``None``; ``"predicted:DIR"`` reads
    ``DIR/<sample id>.png`` (e.g. ``DIR/test/000007.png``), a greyscale mask of the *full* image
    (``image_size`` x ``image_size``, 0/255 or 0/1), cropped like the image: under the corrected protocol it
    is binarised by the one rule of :func:`benchmark.core.protocol.binarise` (>= half of the file's
    maximum code: 128 in 8-bit files, 0.5 in 0/1 files) and resized with nearest neighbour; under the
    legacy protocol its raw values are resized bilinearly (as the reference notebooks did). The generated ground
    truth (labels, GT masks, keypoints) is exact and identical under both protocols; ``root`` is ignored.
    """

    needs_data_root = False
    ground_truth = "pixels"
    landmark_protocol = "kanazawa-crop"
    landmark_view = "fg"
    landmark_fit_split = "train"
    fg_view = "fg"
    full_view = "full"
    whole_image_view = "full"
    keypoint_names = KEYPOINT_NAMES
    part_names = PART_NAMES  # index = label, 0 = background
    num_parts = len(PART_NAMES) - 1
    keypoint_parts = KEYPOINT_PARTS  # label of the part every keypoint lies on
    flip_permutation = KEYPOINT_FLIP  # keypoint i of a flipped image is keypoint flip_permutation[i]
    part_flip_permutation = PART_FLIP  # label l of a flipped image is label part_flip_permutation[l]
    protocol_description = (
        "full: the whole generated image; fg: tight GT box padded 5% of its width/height per side, made "
        "square about its centre, resized to image_size (bilinear image, nearest labels/masks), keypoints "
        "outside the crop invisible; train: fg crop with +-5% per-side jitter and a flip (p=0.5) with the "
        "left/right keypoint and label permutation. Ground truth is exact; protocols corrected and legacy "
        "differ only for predicted masks.")
    data_hint = "Built in: generated on the fly, no data root needed."

    # An image side beyond 2048 px would need tens of GiB per batch of renders and part maps.
    param_ranges = {"image_size": Range(16, 2048), "num_train": Range(0, 1_000_000), "num_test": Range(0, 1_000_000),
                    "seed": Range(0), "difficulty": Range(0, 1)}

    def __init__(self, root: str | Path | None = None, *, split: str = "test", view: str = "fg",
                 protocol: str = DEFAULT_PROTOCOL, masks: str | None = None, num_train: int = 400, num_test: int = 200,
                 image_size: int = 64, seed: int = 0, difficulty: float = 0.5, ground_truth: str = "pixels"):
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks)
        self.root = None  # ignored: nothing is read from disk
        self.num_train = _integer("num_train", num_train, 0)
        self.num_test = _integer("num_test", num_test, 0)
        self.size_px = _integer("image_size", image_size, 16)
        self.seed = _integer("seed", seed, 0)
        self.difficulty = _number("difficulty", difficulty)
        if not 0.0 <= self.difficulty <= 1.0:
            raise UserError(f"synthetic: option difficulty must be in [0, 1], got {difficulty!r}")
        if ground_truth not in _GROUND_TRUTHS:
            raise UserError(f"synthetic: option ground_truth must be 'pixels' or 'keypoints', got {ground_truth!r}")
        self.ground_truth = ground_truth  # instance attribute shadows the class attribute
        self._mask_dir: Path | None = self.masks.folder if self.masks.dataset_reads == "folder" else None
        self._scenes: dict[int, Any] = {}
        self._cache = len(self) * self.size_px ** 2 * (3 * 4 + 8) <= CACHE_BYTES

    # -- description --------------------------------------------------------------------------------
    @classmethod
    def demo_options(cls) -> dict[str, Any]:
        return {"num_train": 128, "num_test": 64, "image_size": 64, "seed": 0, "difficulty": 0.5}

    def options(self) -> dict[str, Any]:
        return {"num_train": self.num_train, "num_test": self.num_test, "image_size": self.size_px,
                "seed": self.seed, "difficulty": self.difficulty, "ground_truth": self.ground_truth}

    # -- data ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_train if self.split == "train" else self.num_test

    def class_ids(self) -> tuple[int, ...]:
        """The four torso-colour classes (see the class docstring), the class labels of every split."""
        return TORSO_CLASSES

    def image_size(self, index: int) -> tuple[int, int]:
        return self.size_px, self.size_px

    def sample_id(self, index: int) -> str:
        return f"{self.split}/{index:06d}"

    def scene(self, index: int):
        """The rendered full-image scene of sample ``index`` (NumPy arrays, see ``_synthetic_render``)."""
        if not 0 <= index < len(self):
            raise IndexError(f"synthetic {self.split} has {len(self)} samples, index {index} is out of range")
        scene = self._scenes.get(index)
        if scene is None:
            rng = np.random.default_rng(derive_seed(self.seed, "synthetic", self.split, index))
            scene = render_scene(rng, self.size_px, self.difficulty)
            if self._cache:
                self._scenes[index] = scene
        return scene

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        scene = self.scene(index)
        size = self.size_px
        # Copies: a caller modifying a sample in place must not change the cached scene.
        image = torch.from_numpy(scene.image).permute(2, 0, 1).clone()
        labels = torch.from_numpy(scene.labels).clone()
        keypoints = torch.from_numpy(scene.keypoints).clone()
        visible = torch.from_numpy(scene.visible).clone()
        bbox = tight_bbox(labels != 0)
        mask_src = self._predicted_mask(index) if self._mask_dir is not None else None
        meta: dict[str, Any] = {"index": index, "mirrored_scene": scene.flipped, "class_id": scene.torso_class}

        if self.view == "full":
            mask = self._mask(labels, mask_src, None)
        else:
            jitter = (torch.rand(4) * 2 - 1) * JITTER if self.view == "train" else None
            crop = square_crop(bbox, jitter)
            image = resample(image, crop, size, "bilinear")
            labels = resample(labels[None].double(), crop, size, "nearest")[0].long()  # exact: nearest copies values
            mask = self._mask(labels, mask_src, crop)
            keypoints = to_crop(keypoints, crop, size)
            bbox = torch.cat([to_crop(bbox[None, :2], crop, size)[0], bbox[2:] * (size / crop[2])]).float()
            visible = visibility(keypoints, labels, visible)
            meta["crop"] = [float(v) for v in crop]  # (x0, y0, side) in full-image pixels
            if self.view == "train":
                flip = bool(torch.rand(()) < 0.5)
                meta["flipped"] = flip
                if flip:
                    image, labels, mask, keypoints, visible, bbox = flip_sample(image, labels, mask, keypoints, visible, bbox)

        return Sample(image=image.float().contiguous(), id=self.sample_id(index), keypoints=keypoints.float(),
                      visible=visible, mask=mask, part_labels=labels, bbox=bbox, meta=meta)

    # -- masks --------------------------------------------------------------------------------------
    def mask_file(self, index: int) -> str:
        return f"{self.sample_id(index)}.png"

    def source_image(self, index: int) -> Tensor:
        return torch.from_numpy(self.scene(int(index)).image).permute(2, 0, 1).float()

    def _predicted_mask(self, index: int) -> Tensor:
        """The predicted mask file of sample ``index`` as float (checked by
        :func:`datasets._io.read_predicted_mask`): binary 0/1 under a protocol that binarises masks, else its
        raw codes."""
        from ._io import read_predicted_mask

        path = self._mask_dir / f"{self.sample_id(index)}.png"
        values = read_predicted_mask(path, (self.size_px, self.size_px), protocol=self.protocol)
        if self.protocol.rules.binarise_masks:
            return torch.from_numpy(binarise(values))
        return torch.from_numpy(values.astype(np.float32))

    def _mask(self, labels: Tensor, source: Tensor | None, crop: tuple[float, float, float] | None) -> Tensor | None:
        if self.masks.dataset_reads is None:
            return None
        if source is None:  # "gt": exact, identical under both protocols
            return (labels != 0).float()
        if crop is None:
            return source
        return resample(source[None].double(), crop, self.size_px, self.protocol.rules.mask_resize)[0].float()


def _number(name: str, value: Any) -> float:
    """An option value as a float (strings from the command line included), or one clear UserError."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"synthetic: option {name} must be a number, got {value!r}") from None


def _integer(name: str, value: Any, low: int) -> int:
    """An option value as an int (exact for 63-bit seeds; "12" and 12.0 accepted), or one clear UserError."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        number = int(value)
    else:
        try:
            number = int(str(value).strip())
        except ValueError:
            as_float = _number(name, value)
            if as_float != int(as_float):
                raise UserError(f"synthetic: option {name} must be an integer >= {low}, got {value!r}") from None
            number = int(as_float)
    if number < low:
        raise UserError(f"synthetic: option {name} must be an integer >= {low}, got {value!r}")
    return number


# -- geometry (pure functions, shared by the views and tested on their own) --------------------------------
def tight_bbox(mask: Tensor) -> Tensor:
    """(x0, y0, w, h) float32 of the pixels where ``mask`` is true: pixel (i, j) covers [j, j+1) x [i, i+1)."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if len(rows) == 0:
        return torch.tensor([0.0, 0.0, float(mask.shape[1]), float(mask.shape[0])])
    x0, y0 = float(cols[0]), float(rows[0])
    return torch.tensor([x0, y0, float(cols[-1]) + 1 - x0, float(rows[-1]) + 1 - y0], dtype=torch.float32)


def square_crop(bbox: Tensor, jitter: Tensor | None = None, pad: float = PAD) -> tuple[float, float, float]:
    """The square crop (x0, y0, side) of the real datasets' training crops: pad every side of ``bbox`` by ``pad`` of its
    width/height, move the sides (left, top, right, bottom) by ``jitter`` times the width/height, grow the
    short side about the centre."""
    x, y, w, h = (float(v) for v in bbox)
    left, top, right, bottom = x - pad * w, y - pad * h, x + w + pad * w, y + h + pad * h
    if jitter is not None:
        j = [float(v) for v in jitter]
        left, top, right, bottom = left + j[0] * w, top + j[1] * h, right + j[2] * w, bottom + j[3] * h
    side = max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return cx - side / 2, cy - side / 2, side


def resample(tensor: Tensor, crop: tuple[float, float, float], size: int, mode: str) -> Tensor:
    """Crop the square ``crop`` = (x0, y0, side) of a (C, H, W) tensor and resize it to ``size`` x ``size``
    (output pixel centre j + 0.5 samples input x = x0 + (j + 0.5) * side / size; outside is 0)."""
    x0, y0, side = crop
    _, h, w = tensor.shape
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) * side / size
    gx = (x0 + centres) / w * 2 - 1
    gy = (y0 + centres) / h * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
    out = F.grid_sample(tensor[None].to(torch.float64), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out[0].to(tensor.dtype)


def to_crop(points: Tensor, crop: tuple[float, float, float], size: int) -> Tensor:
    """(x, y) points in full-image pixels -> pixels of the resized crop."""
    x0, y0, side = crop
    return ((points.double() - torch.tensor([x0, y0], dtype=torch.float64)) * (size / side)).float()


def visibility(keypoints: Tensor, labels: Tensor, visible: Tensor) -> Tensor:
    """``visible`` restricted to keypoints inside the view on a pixel labelled with their own part."""
    h, w = labels.shape
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    col = torch.round(x - 0.5).long().clamp(0, w - 1)
    row = torch.round(y - 0.5).long().clamp(0, h - 1)
    return visible & inside & (labels[row, col] == torch.tensor(KEYPOINT_PARTS))


def flip_sample(image, labels, mask, keypoints, visible, bbox):
    """Mirror a view horizontally; left/right labels and keypoints trade names (x -> W - x)."""
    w = image.shape[-1]
    image = image.flip(-1)
    labels = torch.tensor(PART_FLIP)[labels.flip(-1)]
    mask = None if mask is None else mask.flip(-1)
    perm = list(KEYPOINT_FLIP)
    keypoints = keypoints[perm].clone()
    keypoints[:, 0] = w - keypoints[:, 0]
    visible = visible[perm]
    bbox = bbox.clone()
    bbox[0] = w - bbox[0] - bbox[2]
    return image, labels, mask, keypoints, visible, bbox
