"""CUB-200-2011 (official tree, optionally the Kanazawa/CMR split) with the evaluation views of the
reference notebook and the training crop of the reference training code (``docs/protocol.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, WHOLE_IMAGE_DEFAULT_SIZE, binarise
from benchmark.core.registry import register_dataset
from benchmark.core.types import Sample

from ._base import Reporter, RealDataset
from ._io import Problem, first_existing, read_gray, read_predicted_mask, read_rgb, read_table, scan_table
from ._io import image_size as header_size
from ._views import (CROP_FILL_UINT8, CUB_FLIP_PERMUTATION, centre_crop_offset, crop_fill, cut_borders, cv2_resize,
                     flip_keypoints, image_tensor, inside, long_side_size, pil_resize, short_side_size, square_box)

PART_NAMES = ("back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing",
              "nape", "right eye", "right leg", "right wing", "tail", "throat")
KANAZAWA_SPLITS = ("train", "val", "test", "testval")  # <split>_cub_cleaned.mat of the CMR cachedir
NUM_PARTS = len(PART_NAMES)
FIX = "The CUB-200-2011 tree is damaged: re-extract CUB_200_2011.tgz (benchmark data download cub --out DIR)"

#: the index files of the official tree and their column types
TABLES: dict[str, tuple[type, ...]] = {
    "images.txt": (int, str),
    "train_test_split.txt": (int, int),
    "bounding_boxes.txt": (int, float, float, float, float),
    "image_class_labels.txt": (int, int),
    "classes.txt": (int, str),
    "parts/part_locs.txt": (int, int, float, float, float),
}


@register_dataset("cub")
class CUB(RealDataset):
    """CUB-200-2011 birds: 15 keypoints, keypoint-based NMI/ARI, landmark regression.

    Views (``view=``):

    * ``fg`` -- the notebook's FG variant: crop to the GT box with integer-truncated ``x, y, w, h``; a box
      extending past the image is zero-padded to its whole size (``corrected``) or clipped at the image
      edge as the notebook's array slice, the resize factor then coming from the clipped crop
      (``legacy``, the protocol's ``box_crop``); keypoints shifted by the truncated ``(x, y)``
      (``legacy``: by the float box corner, as the reference evaluation's CUB loader
      ``evaluation/datasets/cub200.py`` of subhc/unsup-parts, which subtracts the box's float ``x, y`` from
      the keypoints while the image crop starts at their integer truncation)
      and clamped at >= 0; short side resized to 256 (torchvision rule: the
      long side is truncated; PIL bilinear image); keypoints scaled by 256 / short side; centred crop of
      both sides down to multiples of 16; a visible keypoint outside the final view becomes invisible
      (inside = ``0 <= x < W`` and ``0 <= y < H``, i.e. its read-out pixel exists).
    * ``full`` -- the notebook's full variant: the same without the box crop. ``Sample.bbox`` = the GT box in view
      pixels (the ``cub-bbox`` landmark protocol normalises by it; ``legacy``: corner clamped at >= 0 and
      width/height at most the view's, as the notebook's ``cut_borders``, without moving the far edge).
    * ``train`` -- the training code's crop: inclusive box ``(x, y, x+w-1, y+h-1)`` (Kanazawa: the .mat box minus 1), 5 % pad
      plus uniform +-``jitter`` (5 %) per side, rounded and grown to a square, cropped with fill 1/255 (the
      reference's uint8 value 1) for the image and 0 for the mask, resized to 256x256 as cv2 does
      (bilinear image, nearest mask), flipped with p = 0.5 with the keypoint permutation
      ``flip_permutation``.
    * ``crop`` -- the same square crop without jitter and flip (the Kanazawa test crops; the
      ``kanazawa-crop`` landmark view).
    * ``whole`` -- the view of ``--protocol whole-image`` (PDiscoNet / PDiscoFormer / MPAE, the
      ``FineGrainedBirdClassificationParts`` dataset of the PDiscoFormer code): no box crop; the short side
      resized to ``S = protocol.image_size`` (torchvision rule: long side truncated; PIL bilinear image),
      keypoints multiplied by ``S / short side`` (float32, as the reference); with ``protocol.centre_crop``
      a centred ``S x S`` cut at ``int(round((H - S) / 2))`` (torchvision's ``center_crop``), keypoints
      shifted by it. A visible keypoint becomes invisible only when it lies *beyond* the view
      (``x < 0``, ``y < 0``, ``x > W`` or ``y > H``, the reference's ``center_crop_boxes_kps`` rule: a point
      exactly on the far edge stays visible and reads grid_sample's zero padding). The reference applies
      that rule only with its crop and otherwise asserts that every point lies inside; this view applies
      it always. Masks (``--masks`` for a method without a background channel): binarised, nearest.

    Masks: ``gt`` = ``segmentations/<class>/<file>.png`` (annotator votes 0..255; Kanazawa split: the
    ``mask`` of the .mat); ``predicted:DIR`` = ``DIR/<class>/<file>.png`` (e.g. the DeepLab
    ``supervisedlabels``); ``none``. Protocol ``corrected``: masks binarised (>= half the file's code range)
    and resized nearest; ``legacy``: in the ``fg``/``full`` views the values resized bilinearly like the
    image and never thresholded (the notebook's predicted masks), where the official ``gt`` source
    is first reduced to ``vote == 255`` as the reference's ``mask_type='gt'``; in the square crops
    (``train``/``crop``) the values resized nearest, as the training code.

    Splits: ``split_source="official"`` (``train_test_split.txt``: 5994 / 5794) or ``"kanazawa"``
    (``cachedir/cub/data/{train,val,test,testval}_cub_cleaned.mat``, or ``kanazawa_dir=``; 1-based coordinates, pixel
    ``p`` -> continuous ``p - 0.5``; the .mat, masks included, is held in memory, as the reference did);
    ``classes=(1, 2, 3)`` keeps those class ids (``meta["class_id"]``).
    Landmarks: official split -> protocol ``cub-bbox`` (fit on train, view ``full``); Kanazawa split ->
    ``kanazawa-crop`` (view ``crop``; the reference fitted on augmented ``train`` crops). Under
    ``--protocol whole-image``: ``whole-image-bbox`` on the ``whole`` view (official split; ``Sample.bbox``
    there = the GT box scaled by ``S / short side``, shifted by the crop with its corner clamped into it,
    as the reference's ``center_crop_boxes_kps``); none on the Kanazawa split.
    """

    ground_truth = "keypoints"
    views = ("fg", "full", "train", "crop", "whole")
    whole_image_view = "whole"
    whole_image_landmark_protocol = "whole-image-bbox"
    #: the notebook upsamples with align_corners=False; the trainer's landmark code (crops) with True
    legacy_align_corners = {"fg": False, "full": False, "crop": True}
    fg_view = "fg"
    full_view = "full"
    landmark_protocol = "cub-bbox"
    landmark_view = "full"
    landmark_fit_split = "train"
    keypoint_names = PART_NAMES
    flip_permutation = CUB_FLIP_PERMUTATION
    expected_counts = {"train": 5994, "test": 5794}  # official split
    protocol_description = (
        "fg: GT-box crop (int-truncated; past the image: zero-padded, legacy clipped), short side 256 (PIL bilinear, long side truncated), centred crop "
        "to multiples of 16, keypoints shifted/clamped/scaled, outside -> invisible; full: same without the "
        "crop; train: 5% padded +-5% jittered square box, fill 1/255, 256x256 (cv2 bilinear), flip with "
        "keypoint permutation; masks: corrected = binarised + nearest, legacy = un-thresholded bilinear (gt: vote == 255; crops: nearest)")
    data_hint = ("Download: benchmark data download cub --out DIR, then --data-root DIR/CUB_200_2011 "
                 "(images.txt, parts/, segmentations/).")

    @classmethod
    def splits_for(cls, **options: Any) -> tuple[str, ...]:
        return KANAZAWA_SPLITS if options.get("split_source") == "kanazawa" else cls.splits

    def __init__(self, root=None, *, split="test", view="fg", protocol=DEFAULT_PROTOCOL, masks=None,
                 split_source: str = "official", classes: Sequence[int] | None = None,
                 kanazawa_dir: str | Path | None = None, jitter: float = 0.05, _collect: Reporter | None = None):
        if split_source == "kanazawa":  # CMR's cachedir also has val (and testval = test + val) files
            self.splits = KANAZAWA_SPLITS
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks)
        if split_source not in ("official", "kanazawa"):
            raise UserError(f"unknown split_source {split_source!r}; use 'official' or 'kanazawa'")
        self.split_source = split_source
        self.classes = tuple(int(c) for c in classes) if classes is not None else None
        self.jitter = float(jitter)
        self.kanazawa_dir = Path(kanazawa_dir) if kanazawa_dir else self.root / "cachedir" / "cub" / "data"
        self._pred_dir = self.mask_folder
        report = _collect or Reporter(fix=FIX)
        index = self._read_index(report)
        self._mat: Any = None
        self._kp_line: np.ndarray | None = None  # official index only: line numbers for keypoint errors
        self._bbox_line: np.ndarray | None = None  # ... and for box errors
        rows = None
        if index is not None and split_source == "kanazawa":
            self._mat, rows = _read_kanazawa(self.kanazawa_dir, split, index, report)
        if index is None or (split_source == "kanazawa" and rows is None):  # collected for `data check`
            self._paths, self._select = np.array([], dtype=object), np.array([], dtype=np.int64)
            return
        keep = self._take_index(index, rows)
        in_split = int(keep.sum())
        self._select = np.flatnonzero(keep & self._class_filter(index))
        self._counts = {"images_in_tree": len(index["paths"]), "in_split": in_split,
                        "removed_by_class_filter": in_split - len(self._select)}

    def _read_index(self, report: Reporter) -> dict[str, np.ndarray] | None:
        """The official index of the tree (a CUB-like dataset with other index files overrides this)."""
        return _read_official(self.root, report)

    def _take_index(self, index: dict[str, np.ndarray], rows: dict[str, np.ndarray] | None) -> np.ndarray:
        """Hold the annotations of the split source; the images of this split (bool per index row)."""
        if self.split_source == "official":
            self._paths, self._bbox, self._kp, self._vis = index["paths"], index["bbox"], index["kp"], index["vis"]
            self._kp_line, self._bbox_line = index["kp_line"], index["bbox_line"]
            self._class = index["class_id"]
            return index["is_train"] == (1 if self.split == "train" else 0)
        self._bbox, self._kp, self._vis = rows["bbox"], rows["kp"], rows["vis"]
        self._class, self._paths = rows["class_id"], rows["paths"]
        if self.protocol.rules.whole_image:  # the newer papers regress on the official split only
            self.landmark_protocol = None
        else:
            self.landmark_protocol = "kanazawa-crop"
            self.landmark_view = "crop"
        return np.ones(len(self._paths), dtype=bool)

    def _class_filter(self, index: dict[str, np.ndarray]) -> np.ndarray | bool:
        """The images of the ``classes`` option (all when it is not given); unknown class ids are an error."""
        if self.classes is None:
            return True
        unknown = sorted(set(self.classes) - set(np.unique(index["class_id"]).tolist()))
        if unknown:
            raise UserError(f"classes {unknown} do not occur in {self.root / 'image_class_labels.txt'}; "
                            f"CUB class ids are 1..200")
        return np.isin(self._class, self.classes)

    # -- contract --------------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"split_source": self.split_source,
                                "classes": list(self.classes) if self.classes is not None else None,
                                "jitter": self.jitter}
        if self.split_source == "kanazawa":
            opts["kanazawa_dir"] = str(self.kanazawa_dir)
        return opts

    def __len__(self) -> int:
        return int(len(self._select))

    def class_ids(self) -> tuple[int, ...]:
        """The species ids (``image_class_labels.txt``) of this split's images."""
        return tuple(int(c) for c in np.unique(self._class[self._select])) if len(self._select) else ()

    def image_size(self, index: int) -> tuple[int, int] | None:
        i = int(self._select[index])
        if self.view in ("train", "crop"):
            return 256, 256
        if self.view == "whole":
            size = self._whole_size()
            return (size, size) if self.protocol.centre_crop else short_side_size(*self._header_size(i, self._image_path(i)), size)
        if self.view == "fg":
            _, _, w, h = self._fg_box(i)
        else:
            h, w = self._header_size(i, self._image_path(i))
        _, _, nh, nw = cut_borders(*short_side_size(h, w))
        return nh, nw

    def files(self, index: int) -> Iterator[tuple[Path, str]]:
        i = int(self._select[index])
        yield self._image_path(i), "rgb"
        reads = self.masks.dataset_reads
        if reads == "folder" or (reads == "annotations" and self._mat is None):
            yield self._mask_path(i), "gray"

    def __getitem__(self, index: int) -> Sample:
        i = int(self._select[index])
        image = read_rgb(self._image_path(i))
        h, w = image.shape[:2]
        if self._kp_line is not None:
            self._bounds_problems(i, (h, w), Reporter(fix=FIX))
        raw_mask = self._raw_mask(i, (h, w))
        kp = torch.from_numpy(self._kp[i].astype(np.float32))
        vis = torch.from_numpy(self._vis[i].copy())
        box = self._bbox[i].astype(np.float64)
        meta = {"class_id": int(self._class[i]), "path": str(self._paths[i]), "original_size": (h, w)}
        if self.view in ("train", "crop"):
            return self._square_crop(i, image, raw_mask, kp, vis, box, meta)
        if self.view == "whole":
            return self._whole_view(i, image, raw_mask, kp, vis, box, meta)
        if self.view == "fg":
            image, raw_mask, kp, box = self._crop_to_box(i, image, raw_mask, kp, box)
        return self._notebook_view(i, image, raw_mask, kp, vis, box, meta)

    # -- internals -------------------------------------------------------------------------------------
    def _bounds_problems(self, i: int, size: tuple[int, int], report: Reporter) -> None:
        """Annotations of image ``i`` (official index) that its size (``(h, w)``) makes impossible: visible
        keypoints and a box outside it. Loading raises the first; ``data check`` lists them all."""
        keypoint_bounds_problems(self.root / "parts" / "part_locs.txt", self._kp[i], self._vis[i],
                                 self._kp_line[i], size, str(self._paths[i]), report)
        box_bounds_problems(self.root / "bounding_boxes.txt", self._bbox[i], self._bbox_line[i], size,
                            str(self._paths[i]), report)

    def _fg_box(self, i: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of the FG crop: the integer-truncated box, zero-padded where it extends past the
        image (``box_crop="pad"``), or clipped at the image edge as the notebook's array slice
        (``"clip"``: the resize factor then comes from the clipped crop)."""
        x, y, bw, bh = (int(v) for v in self._bbox[i])
        if self.protocol.rules.box_crop == "clip":
            height, width = self._header_size(i, self._image_path(i))
            bw, bh = min(bw, width - x), min(bh, height - y)
            if bw < 1 or bh < 1:
                raise UserError(f"{self.root / 'bounding_boxes.txt'}: the box of {self._paths[i]} starts outside "
                                f"its {width}x{height} image. {FIX}")
        return x, y, bw, bh

    def _crop_to_box(self, i, image, raw_mask, kp, box):
        """The FG crop (:meth:`_fg_box`) of image and mask; keypoints shifted and clamped at >= 0; the box
        in crop coordinates."""
        x, y, bw, bh = self._fg_box(i)
        image = crop_fill(image, x, y, bw, bh, 0)
        raw_mask = crop_fill(raw_mask, x, y, bw, bh, 0) if raw_mask is not None else None
        # The crop starts at the truncated corner (x, y); the reference notebook shifted the keypoints
        # by the float corner instead (a sub-pixel inconsistency), which its reproduction keeps.
        shift = (box[0], box[1]) if self.protocol.rules.reference_quirks else (x, y)
        kp = (kp - torch.tensor(shift, dtype=torch.float32)).clamp_(min=0)
        return image, raw_mask, kp, np.array([0.0, 0.0, int(box[2]), int(box[3])])

    def _notebook_view(self, i, image, raw_mask, kp, vis, box, meta) -> Sample:
        """Short side to 256 (torchvision rule), centred cut to multiples of 16; keypoints and box follow."""
        h, w = image.shape[:2]
        sh, sw = short_side_size(h, w)
        scale = 256.0 / min(h, w)
        top, left, nh, nw = cut_borders(sh, sw)
        image = pil_resize(image, (sh, sw), "bilinear")[top:top + nh, left:left + nw]
        mask = self._mask_view(raw_mask, (sh, sw))
        if mask is not None:
            mask = mask[top:top + nh, left:left + nw].contiguous()
        kp = kp * scale - torch.tensor([left, top], dtype=torch.float32)
        vis = vis & inside(kp, nh, nw)
        bbox = torch.tensor([box[0] * scale - left, box[1] * scale - top, box[2] * scale, box[3] * scale],
                            dtype=torch.float32)
        if self.protocol.rules.reference_quirks:  # the notebook's cut_borders clamps the corner at 0 and the size at the view
            bbox[:2].clamp_(min=0)
            bbox[2].clamp_(max=nw)
            bbox[3].clamp_(max=nh)
        meta.update(scale=scale, offset=(top, left))
        return Sample(image=image_tensor(image), id=str(self._paths[i]), keypoints=kp, visible=vis, mask=mask,
                      bbox=bbox, meta=meta)

    def _whole_size(self) -> int:
        return int(self.protocol.image_size or WHOLE_IMAGE_DEFAULT_SIZE)

    def _whole_view(self, i, image, raw_mask, kp, vis, box, meta) -> Sample:
        """The ``whole`` view (class docstring): short side to S, optional centred S x S crop."""
        size = self._whole_size()
        h, w = image.shape[:2]
        sh, sw = short_side_size(h, w, size)
        scale = size / min(h, w)
        image = pil_resize(image, (sh, sw), "bilinear")
        mask = self._mask_view(raw_mask, (sh, sw))
        kp = kp * scale
        top, left, nh, nw = 0, 0, sh, sw
        if self.protocol.centre_crop:
            top, left, nh, nw = centre_crop_offset(sh, size), centre_crop_offset(sw, size), size, size
            image = image[top:top + nh, left:left + nw]
            mask = mask[top:top + nh, left:left + nw].contiguous() if mask is not None else None
            kp = kp - torch.tensor([left, top], dtype=torch.float32)
        x, y = kp[:, 0], kp[:, 1]
        vis = vis & (x >= 0) & (y >= 0) & (x <= nw) & (y <= nh)
        bbox = torch.tensor([box[0] * scale - left, box[1] * scale - top, box[2] * scale, box[3] * scale],
                            dtype=torch.float32)
        if self.protocol.centre_crop:  # the reference's center_crop_boxes_kps keeps the corner in the crop
            bbox[0].clamp_(0, nw)
            bbox[1].clamp_(0, nh)
        meta.update(scale=scale, offset=(top, left))
        return Sample(image=image_tensor(np.ascontiguousarray(image)), id=str(self._paths[i]), keypoints=kp,
                      visible=vis, mask=mask, bbox=bbox, meta=meta)

    def mask_file(self, index: int) -> str:
        return Path(str(self._paths[int(self._select[index])])).with_suffix(".png").as_posix()

    def source_image(self, index: int) -> torch.Tensor:
        return image_tensor(read_rgb(self._image_path(int(self._select[index]))))

    def _image_path(self, i: int) -> Path:
        return self.root / "images" / str(self._paths[i])

    def _mask_path(self, i: int) -> Path:
        rel = Path(str(self._paths[i])).with_suffix(".png")
        if self._pred_dir is not None:
            return self._pred_dir / rel
        return self.root / "segmentations" / rel

    def _raw_mask(self, i: int, hw: tuple[int, int]) -> np.ndarray | None:
        if self.masks.dataset_reads is None:
            return None
        if self.masks.dataset_reads == "annotations" and self._mat is not None:
            raw = np.asarray(self._mat[i].mask).astype(np.uint8)
            where = f"{self.kanazawa_dir} (record {self._paths[i]})"
        else:
            path = self._mask_path(i)
            if self._pred_dir is not None:
                return read_predicted_mask(path, hw, protocol=self.protocol)
            fix = ("Extract segmentations.tgz into the CUB_200_2011 folder, or evaluate without GT masks "
                   "(--masks none, predicted:DIR or model:CKPT)")
            path = first_existing([path], "mask", fix)
            raw, where = read_gray(path), str(path)
            if self.protocol.rules.reference_quirks and self._pred_dir is None:
                raw = (raw == 255).astype(np.uint8)  # the reference's mask_type='gt' reads vote == 255
        if tuple(raw.shape) != hw:
            raise UserError(f"mask {where} is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image is "
                            f"{hw[1]}x{hw[0]}; the masks do not belong to these images")
        return raw

    def _square_crop(self, i, image, raw_mask, kp, vis, box, meta) -> Sample:
        x0, y0 = box[0], box[1]
        x1, y1 = box[0] + box[2] - 1, box[1] + box[3] - 1
        train = self.view == "train"
        left, top, side = square_box(x0, y0, x1, y1, pad=0.05, jitter=self.jitter if train else 0.0)
        crop = torch.from_numpy(crop_fill(image, left, top, side, side, CROP_FILL_UINT8)).permute(2, 0, 1)
        out_hw = long_side_size(side, side)
        img = cv2_resize(crop.float(), out_hw, "bilinear").div_(255.0)
        mask = None
        if raw_mask is not None:
            cropped = crop_fill(raw_mask, left, top, side, side, 0)
            # the training code's crops resize masks nearest (cv2) under both protocols
            values = binarise(cropped) if self.protocol.rules.binarise_masks else cropped.astype(np.float32)
            mask = cv2_resize(torch.from_numpy(values), out_hw, "nearest")
        scale = out_hw[1] / side
        kp = (kp - torch.tensor([left, top], dtype=torch.float32)) * scale
        bbox = torch.tensor([(x0 - left) * scale, (y0 - top) * scale, box[2] * scale, box[3] * scale],
                            dtype=torch.float32)
        flipped = bool(train and torch.rand(()) < 0.5)
        if flipped:
            img, kp_vis = img.flip(-1), flip_keypoints(kp, vis, out_hw[1], self.flip_permutation)
            kp, vis = kp_vis
            mask = mask.flip(-1) if mask is not None else None
            bbox[0] = out_hw[1] - bbox[0] - bbox[2]
        vis = vis & inside(kp, *out_hw)
        meta.update(crop=(left, top, side), scale=scale, flipped=flipped)
        return Sample(image=img.contiguous(), id=str(self._paths[i]), keypoints=kp, visible=vis,
                      mask=mask.contiguous() if mask is not None else None, bbox=bbox, meta=meta)

    # -- data check --------------------------------------------------------------------------------------
    @classmethod
    def check_tree(cls, root, **options) -> tuple[list["CUB"], list]:
        """All problems of the index files (every bad line), then the datasets of both splits."""
        root = Path(root)
        problems = []
        for name, kinds in TABLES.items():
            problems += scan_table(root / name, kinds)
        loc_path = root / "parts" / "part_locs.txt"
        problems += [Problem(loc_path, line, message) for line, message in nonfinite_keypoint_lines(loc_path)]
        collect = Reporter(collect=True)
        parts_file_problems(root, collect)
        problems += collect.problems
        if problems:
            return [], problems
        report = Reporter(collect=True)
        datasets = []
        for split in cls.splits:
            ds = cls(root, split=split, _collect=report, **options)
            if report.problems and len(ds._paths) == 0:  # the index itself is unusable
                return [], report.problems
            datasets.append(ds)
        # Every visible keypoint and box outside its image (sizes from the image headers; missing images
        # are reported by the file check): the very check loading a sample makes.
        for ds in datasets:
            if ds._kp_line is None:
                continue
            for i in ds._select:
                try:
                    w, h = header_size(ds._image_path(int(i)))
                except UserError:
                    continue
                ds._bounds_problems(int(i), (h, w), report)
        return datasets, list(report.problems)


def _read_official(root: Path, report: Reporter) -> dict[str, np.ndarray] | None:
    """The official index, vectorised (pandas); ids checked for consistency across the files."""
    images = _read_images(root, report)
    if images is None:
        return None
    split = _aligned_table(root, "train_test_split.txt", images, report)
    boxes = _aligned_table(root, "bounding_boxes.txt", images, report)
    labels = _aligned_table(root, "image_class_labels.txt", images, report)
    class_ids = read_table(root / "classes.txt", TABLES["classes.txt"], fix=FIX)[0]
    parts_file_problems(root, report)
    if split is None or boxes is None or labels is None:
        return None
    # Both are reported in full before giving up: an image with neither flag would be in no split, one of
    # an unknown class in no class filter.
    bad_split = _flag_problems(root / "train_test_split.txt", split, images, (0, 1), "is_training_image",
                               "0 or 1", report)
    bad_class = _flag_problems(root / "image_class_labels.txt", labels, images, class_ids, "class id",
                               f"an id listed in {root / 'classes.txt'} ({_ids_text(class_ids)})", report)
    if bad_split or bad_class:
        return None
    keypoints = _read_keypoints(root, images, report)
    bbox = _checked_boxes(root, boxes, images, report)
    if keypoints is None or bbox is None:
        return None
    return {"ids": images["ids"], "paths": images["paths"], "is_train": split[1], "bbox": bbox,
            "bbox_line": boxes[5], "class_id": labels[1], "kp": keypoints[0], "vis": keypoints[1],
            "kp_line": keypoints[2]}


def _flag_problems(path: Path, table: list[np.ndarray], images: dict[str, np.ndarray], allowed, what: str,
                   expected: str, report: Reporter) -> bool:
    """Report every line of an aligned two-column table (:func:`_aligned_table`) whose value is not one of
    ``allowed``; whether there was one."""
    values, lines = table[1], table[2]
    bad = np.flatnonzero(~np.isin(values, np.asarray(allowed)))
    for k in bad:
        report(path, int(lines[k]), f"image id {int(images['ids'][k])} has {what} {int(values[k])}, expected "
                                    f"{expected}")
    return bool(bad.size)


def _ids_text(ids) -> str:
    """``1..200`` for a run of ids, else the ids (the first ten)."""
    ids = sorted(int(v) for v in np.unique(np.asarray(ids)))
    if ids and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")


def _read_images(root: Path, report: Reporter) -> dict[str, np.ndarray] | None:
    """``images.txt`` sorted by id: ids, relative paths and each id's line number (``order``)."""
    ids, paths = read_table(root / "images.txt", TABLES["images.txt"], fix=FIX)
    order = np.argsort(ids, kind="stable")
    ids, paths = ids[order], paths[order]
    dup = ids[1:][ids[1:] == ids[:-1]]
    if dup.size:
        report(root / "images.txt", 0, f"image id {int(dup[0])} is listed twice")
        return None
    return {"ids": ids, "paths": paths, "order": order}


def _aligned_table(root: Path, name: str, images: dict[str, np.ndarray], report: Reporter) -> list[np.ndarray] | None:
    """The columns of ``name`` sorted by image id, with one line per image of ``images.txt``; the last
    column holds the line numbers in the file."""
    ids, paths, order = images["ids"], images["paths"], images["order"]
    cols = read_table(root / name, TABLES[name], fix=FIX)
    got = cols[0]
    o = np.argsort(got, kind="stable")
    if len(got) == len(ids) and np.array_equal(got[o], ids):
        return [c[o] for c in cols] + [o + 1]
    missing, extra = np.setdiff1d(ids, got), np.setdiff1d(got, ids)
    if missing.size:
        line = int(np.searchsorted(ids, missing[0]))
        report(root / name, 0, f"has no line for image id {int(missing[0])} ({paths[line]}, line "
                               f"{int(order[line]) + 1} of images.txt)")
    elif extra.size:
        report(root / name, int(np.flatnonzero(got == extra[0])[0]) + 1, f"image id {int(extra[0])} is not in images.txt")
    else:
        report(root / name, 0, "lists some image ids more than once")
    return None


def _read_keypoints(root: Path, images: dict[str, np.ndarray], report: Reporter
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(N, 15, 2)`` keypoints and ``(N, 15)`` visibility from ``parts/part_locs.txt``: 15 lines per image,
    sorted by image then part; checked, then reshaped without a Python loop."""
    ids, paths = images["ids"], images["paths"]
    n = len(ids)
    loc_path = root / "parts" / "part_locs.txt"
    try:
        locs = read_table(loc_path, TABLES["parts/part_locs.txt"], fix=FIX)
    except UserError:
        bad = nonfinite_keypoint_lines(loc_path)
        if not bad:
            raise
        for line, message in bad:
            report(loc_path, line, message)
        return None
    known = np.isin(locs[0], ids)
    if not known.all():
        line = int(np.flatnonzero(~known)[0])
        report(loc_path, line + 1, f"image id {int(locs[0][line])} is not in images.txt")
        return None
    counts = np.bincount(np.searchsorted(ids, locs[0]).clip(0, n - 1), minlength=n) if n else np.zeros(0, int)
    if (counts != NUM_PARTS).any():
        k = int(np.flatnonzero(counts != NUM_PARTS)[0])
        what = "no keypoint lines" if counts[k] == 0 else f"{counts[k]} keypoint lines instead of {NUM_PARTS}"
        report(loc_path, 0, f"image id {int(ids[k])} ({paths[k]}) has {what}")
        return None
    o = np.lexsort((locs[1], locs[0]))
    expected_parts = np.tile(np.arange(1, NUM_PARTS + 1), n)
    if not np.array_equal(locs[1][o], expected_parts):
        bad = int(o[np.flatnonzero(locs[1][o] != expected_parts)[0]])
        report(loc_path, bad + 1, f"part id {int(locs[1][bad])} of image {int(locs[0][bad])} is not one of "
                                  f"1..{NUM_PARTS} exactly once")
        return None
    kp = np.stack([locs[2][o], locs[3][o]], axis=1).reshape(n, NUM_PARTS, 2)
    kp_line = (o + 1).reshape(n, NUM_PARTS)  # line of each keypoint in part_locs.txt, for error messages
    keypoint_value_problems(loc_path, locs, report)  # loading: raises at the first; data check: lists all
    return kp, (locs[4][o] > 0.5).reshape(n, NUM_PARTS), kp_line


def _checked_boxes(root: Path, boxes: list[np.ndarray], images: dict[str, np.ndarray],
                   report: Reporter) -> np.ndarray | None:
    """``(N, 4)`` boxes ``x, y, w, h``; a box the FG crop cannot use (``x, y < 0`` or ``w, h < 1``) is named."""
    bbox = np.stack(boxes[1:5], axis=1)
    bad_box = np.flatnonzero((bbox[:, 2] < 1) | (bbox[:, 3] < 1) | (bbox[:, :2] < 0).any(axis=1))
    if bad_box.size:
        k = int(bad_box[0])
        report(root / "bounding_boxes.txt", int(boxes[5][k]), f"image id {int(images['ids'][k])} has an invalid box "
                                                             f"{bbox[k].tolist()} (needs x, y >= 0 and w, h >= 1)")
        return None
    return bbox


#: how far (pixels) a visible keypoint may lie outside its image before it is refused as impossible
KEYPOINT_SLACK = 1.0


def nonfinite_keypoint_lines(path: Path) -> list[tuple[int, str]]:
    """(line, message) for every line of ``part_locs.txt`` with a NaN or infinite value (the fast reader
    only says that the file did not parse)."""
    bad = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return bad
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if len(fields) == 5:
            try:
                values = [float(v) for v in fields[2:]]
            except ValueError:
                continue
            if not all(np.isfinite(values)):
                bad.append((number, f"keypoint value is not a finite number: {line.strip()!r}"))
    return bad


def keypoint_value_problems(path: Path, locs: list[np.ndarray], report: Reporter) -> bool:
    """Every impossible keypoint line: non-finite values, a visibility flag other than 0/1, a visible
    keypoint at a negative coordinate beyond :data:`KEYPOINT_SLACK` (the far edges need the image size:
    :func:`keypoint_bounds_problems`). Returns whether any was found (and reported)."""
    x, y, flag = locs[2], locs[3], locs[4]
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(flag)
    bad_flag = finite & (flag != 0) & (flag != 1)
    visible = finite & (flag == 1)
    negative = visible & ((x < -KEYPOINT_SLACK) | (y < -KEYPOINT_SLACK))
    found = False
    for line in np.flatnonzero(~finite | bad_flag | negative):
        found = True
        if not finite[line]:
            why = "is not a finite number"
        elif bad_flag[line]:
            why = f"has visibility {flag[line]:g}, expected 0 or 1"
        else:
            why = f"is a visible keypoint at ({x[line]:g}, {y[line]:g}), outside the image"
        report(path, int(line) + 1, f"keypoint {int(locs[1][line])} of image {int(locs[0][line])} {why}")
    return found


def keypoint_bounds_problems(path: Path, kp: np.ndarray, vis: np.ndarray, lines: np.ndarray,
                             size: tuple[int, int], image: str, report: Reporter) -> None:
    """Report every visible keypoint of one image (``kp`` (P, 2) in pixels, image ``size`` = (h, w)) lying
    more than :data:`KEYPOINT_SLACK` pixels outside it, with its line in ``part_locs.txt``."""
    h, w = size
    outside = vis & ((kp[:, 0] > w + KEYPOINT_SLACK) | (kp[:, 1] > h + KEYPOINT_SLACK)
                     | (kp[:, 0] < -KEYPOINT_SLACK) | (kp[:, 1] < -KEYPOINT_SLACK))
    for p in np.flatnonzero(outside):
        report(path, int(lines[p]), f"visible keypoint {int(p) + 1} of {image} at ({kp[p, 0]:g}, {kp[p, 1]:g}) "
                                    f"lies outside the {w}x{h} image")


def box_bounds_problems(path: Path, box: np.ndarray, line: int, size: tuple[int, int], image: str,
                        report: Reporter) -> None:
    """Report the box ``(x, y, w, h)`` of one image (``size`` = (h, w)) when it does not overlap the image:
    its crop would be all padding and its landmark normalisation meaningless. A box that merely extends
    past the image is real CUB data (see the ``fg`` view) and is kept."""
    h, w = size
    if box[0] >= w or box[1] >= h:
        report(path, int(line), f"the box {[float(v) for v in box]} of {image} lies outside its {w}x{h} image "
                                "(x must be < width and y < height)")


def parts_file_problems(root: Path, report: Reporter) -> None:
    """``parts/parts.txt``: 15 lines ``<part_id> <name>``, names may hold a space ("7 left eye")."""
    path = root / "parts" / "parts.txt"
    if not path.is_file():
        report(path, 0, "file is missing")
        return
    lines = [(n, line.split(None, 1)) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if line.strip()]
    for number, fields in lines:
        if len(fields) != 2 or not fields[0].isdigit():
            report(path, number, "expected '<part_id> <name>'")
    if len(lines) != NUM_PARTS:
        report(path, 0, f"lists {len(lines)} parts, expected {NUM_PARTS}")


def _read_kanazawa(folder: Path, split: str, index: dict[str, np.ndarray], report: Reporter):
    """Records of ``<split>_cub_cleaned.mat`` (CMR cachedir) matched to the official image paths."""
    import scipy.io

    path = folder / f"{split}_cub_cleaned.mat"
    if not path.is_file():
        raise UserError(f"Kanazawa split file {path} is missing; build or download the CMR cachedir "
                        f"(cachedir/cub/data/{{train,val,test}}_cub_cleaned.mat) into the CUB_200_2011 folder or "
                        f"pass kanazawa_dir=..., or use split_source='official'")
    try:
        records = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)["images"]
    except Exception as exc:  # scipy raises many types for damaged files
        raise UserError(f"{path} cannot be read as a CMR split file ({exc}); rebuild or re-download it") from None
    records = np.atleast_1d(records)
    known = {str(p): k for k, p in enumerate(index["paths"])}
    n = len(records)
    bbox, kp = np.zeros((n, 4)), np.zeros((n, NUM_PARTS, 2))
    vis, cls, paths = np.zeros((n, NUM_PARTS), bool), np.zeros(n, np.int64), np.empty(n, object)
    for r, rec in enumerate(records):  # a few thousand small records: index-time only
        rel = str(rec.rel_path).replace("\\", "/")
        if rel not in known:
            report(path, 0, f"record {r + 1}: rel_path {rel!r} is not in images.txt")
            return records, None
        b = rec.bbox
        x1, y1, x2, y2 = ((b.x1, b.y1, b.x2, b.y2) if hasattr(b, "x1") else tuple(np.ravel(b)[:4]))
        bbox[r] = (x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)  # 1-based inclusive -> left/top edge, size
        parts = np.asarray(rec.parts, dtype=np.float64).reshape(3, NUM_PARTS)
        kp[r] = parts[:2].T - 0.5  # 1-based pixel p has its centre at p - 0.5
        vis[r] = parts[2] > 0
        cls[r] = int(rec.class_id) if hasattr(rec, "class_id") else int(rel[:3])
        paths[r] = rel
    return records, {"bbox": bbox, "kp": kp, "vis": vis, "class_id": cls, "paths": paths}
