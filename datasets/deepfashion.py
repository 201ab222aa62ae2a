"""DeepFashion In-shop Clothes Retrieval, segmentation subset (views and rules: ``docs/protocol.md``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, binarise
from benchmark.core.registry import register_dataset
from benchmark.core.types import Sample

from ._base import Reporter, RealDataset
from ._io import read_gray, read_palette_png, read_rgb
from ._views import cv2_resize, image_tensor, long_side_size, pad_to, pil_resize, short_side_size

#: the release's palette, label id = index; decoded through R+G+B (the sums are unique)
PALETTE = np.array([
    (0, 0, 0), (0, 100, 0), (16, 78, 139), (50, 205, 50), (70, 130, 180), (127, 255, 212), (144, 238, 144),
    (211, 211, 211), (220, 220, 220), (245, 222, 179), (250, 235, 215), (255, 0, 0), (255, 140, 0),
    (255, 250, 205), (255, 250, 250), (255, 255, 0)], dtype=np.int64)
NUM_LABELS = len(PALETTE)
LEGACY_UNKNOWN = 255  # the reference stores its -1 sentinel in uint8
_SUM_TO_LABEL = np.full(3 * 255 + 1, -1, dtype=np.int64)
_SUM_TO_LABEL[PALETTE.sum(axis=1)] = np.arange(NUM_LABELS)
assert len(set(PALETTE.sum(axis=1).tolist())) == NUM_LABELS
_PALETTE_CODES = (PALETTE[:, 0] << 16) | (PALETTE[:, 1] << 8) | PALETTE[:, 2]  # one integer per colour

JSON_NAMES = {"train": ("train",), "test": ("query", "gallery")}
DOWNLOAD_STEPS = """DeepFashion In-shop cannot be downloaded automatically (it needs a signed agreement):
  1. Open https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html and follow the
     "Download" link to the Google Drive folder of the In-shop Clothes Retrieval Benchmark.
  2. Fill in and send the agreement form named there; you receive the password of the archives.
  3. Download Img/img_highres*.zip and Anno/segmentation/ (DeepFashion_segmentation_{train,query,gallery}.json
     and the *_segment.png maps) and unpack them so that <root>/Anno/segmentation/img_highres/... exists.
  4. Optional: precomputed foreground masks (supervisedlabels/, one <file_name>.png per image) for
     --masks predicted:DIR.
  5. Check the tree: benchmark data check --dataset deepfashion --data-root <root>"""


def decode_palette(rgb: np.ndarray, path: Path, *, legacy: bool) -> np.ndarray:
    """RGB colour-coded map -> int64 labels 0..15. An unknown colour is an error naming the file and the
    first such pixel (corrected protocol) or label 255 (legacy: what the reference silently did)."""
    # Channel planes of int32, no (H, W, 3) int64 temporaries: a 1101x750 map decodes ~7x faster, and a
    # DeepFashion evaluation decodes every test map in each of its views.
    r, g, b = (rgb[..., c].astype(np.int32) for c in range(3))
    labels = _SUM_TO_LABEL[r + g + b]
    exact = (_PALETTE_CODES[labels] == ((r << 16) | (g << 8) | b)) & (labels >= 0)  # label -1: masked out
    if legacy:
        return np.where(labels >= 0, labels, LEGACY_UNKNOWN)  # the reference matches by sum only
    if not exact.all():
        bad = np.argwhere(~exact)
        y, x = (int(v) for v in bad[0])
        raise UserError(f"label map {path}: pixel (x={x}, y={y}) has colour {tuple(int(c) for c in rgb[y, x])}, "
                        f"which is not in the DeepFashion palette ({len(bad)} such pixels); the file is damaged "
                        f"or not a DeepFashion _segment.png (protocol=legacy maps unknown colours to 255)")
    return labels


@register_dataset("deepfashion")
class DeepFashion(RealDataset):
    """DeepFashion In-shop segmentation: 15 clothing/body labels, pixel-based NMI/ARI (``docs/protocol.md``).

    Tree (``--data-root`` = the ``In-shop Clothes Retrieval Benchmark`` folder):
    ``Anno/segmentation/DeepFashion_segmentation_{train,query,gallery}.json`` (only
    ``images[i].file_name`` is read), images ``Anno/segmentation/<file_name>``, label maps the same path with
    ``.jpg`` -> ``_segment.png`` (RGB palette :data:`PALETTE`, decoded by R+G+B); images found only under
    ``Img/<file_name>`` (the release's own layout) are used from there. Split ``train`` = train JSON,
    ``test`` = query + gallery (in that order, 6922 images).

    Views:

    * ``fg`` -- the notebook's FG evaluation: long side 256 (cv2 rules: size ``round``, bilinear image, nearest labels), padded
      to 256x256 (image edge-replicated, labels 0), the padding split around the image (``p // 2`` before,
      the rest after) as the reference's ``pad_if_smaller`` does; the network sees the centred image.
    * ``full`` -- the notebook's full evaluation: short side 256 (torchvision rule, PIL bilinear image); labels nearest under
      ``corrected``, PIL *bilinear* under ``legacy`` (the reference resized the label map like an image).
    * ``train`` -- the training code's augmentation: RandomResizedCrop (scale [0.5, 1], ratio [3/4, 4/3], torchvision's sampling with
      torch's RNG) to 256x256 (PIL bilinear image, nearest labels), horizontal flip p = 0.5.

    Masks: ``gt`` = label != 0 of the view; ``predicted:DIR`` = ``DIR/<file_name>.png`` (e.g.
    ``supervisedlabels``; ``DIR/<file_name without .jpg>.png`` is accepted too), binarised + nearest
    (``corrected``) or raw grey bilinear (``legacy``); ``none``.
    Unknown label colours: :class:`UserError` naming file and pixel (``corrected``), label 255 (``legacy``).
    """

    ground_truth = "pixels"
    views = ("fg", "full", "train")
    #: the notebook's get_fg_nmi_ari upsamples with align_corners=True, get_full_nmi_ari with align_corners=False
    legacy_align_corners = {"fg": True, "full": False}
    #: for SCOPS the notebook's FG argmax kept the background channel, and its full
    #: prediction used the per-channel max-normalised softmax with the background set to 0.1
    legacy_background_rules = {"fg": "all_channels", "full": "max_normalised"}
    expected_counts = {"test": 6922}
    protocol_description = (
        "fg: long side 256 (cv2 bilinear/nearest), centred pad to 256x256 (image edge, labels 0); full: short side "
        "256 (PIL bilinear), labels nearest (corrected) or bilinear (legacy); train: RandomResizedCrop "
        "[0.5,1]x[3/4,4/3] -> 256, flip; palette decoded by RGB sum, unknown colour = error (corrected) / 255")
    data_hint = ("DeepFashion needs a signed agreement: `benchmark data download deepfashion` prints the steps; "
                 "--data-root is the 'In-shop Clothes Retrieval Benchmark' folder.")

    def __init__(self, root=None, *, split="test", view="fg", protocol=DEFAULT_PROTOCOL, masks=None,
                 _collect: Reporter | None = None):
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks)
        self._pred_dir = self.mask_folder
        report = _collect or Reporter(fix="Re-extract Anno/segmentation from the DeepFashion archive")
        self._files: list[str] = []
        for part in JSON_NAMES[split]:
            self._files += _read_json(self.seg_root / f"DeepFashion_segmentation_{part}.json", report)
        self._counts = {"json_files": len(JSON_NAMES[split])}

    @property
    def seg_root(self) -> Path:
        return self.root / "Anno" / "segmentation"

    def __len__(self) -> int:
        return len(self._files)

    def image_size(self, index: int) -> tuple[int, int] | None:
        if self.view != "full":
            return 256, 256
        return short_side_size(*self._header_size(index, self._image_path(index)))

    def files(self, index: int) -> Iterator[tuple[Path, str]]:
        yield self._image_path(index), "rgb"
        yield self._label_path(index), "labels"
        if self._pred_dir is not None:
            yield self._pred_path(index), "gray"

    def _check_labels(self, path: Path) -> np.ndarray:
        return decode_palette(read_palette_png(path), path, legacy=not self.protocol.rules.reject_unknown_labels)

    def __getitem__(self, index: int) -> Sample:
        name = self._files[index]
        image = read_rgb(self._image_path(index))
        label_path = self._label_path(index)
        rgb = read_palette_png(label_path)
        if rgb.shape[:2] != image.shape[:2]:
            raise UserError(f"label map {label_path} is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but its image is "
                            f"{image.shape[1]}x{image.shape[0]}; re-extract Anno/segmentation")
        labels = decode_palette(rgb, label_path, legacy=not self.protocol.rules.reject_unknown_labels)
        raw_mask = self._raw_mask(index, image.shape[:2])
        h, w = image.shape[:2]
        meta: dict[str, Any] = {"file_name": name, "original_size": (h, w)}
        if self.view == "fg":
            img_t, lab_t, mask = self._fg(image, labels, raw_mask)
        elif self.view == "full":
            size = short_side_size(h, w)
            img_t = image_tensor(pil_resize(image, size, "bilinear"))
            lab_t = torch.from_numpy(pil_resize(labels.astype(np.uint8), size,
                                                self.protocol.rules.label_resize).astype(np.int64))
            mask = self._mask_view(raw_mask, size) if raw_mask is not None else None
        else:
            img_t, lab_t, mask, meta["crop"], meta["flipped"] = self._train(image, labels, raw_mask)
        if mask is None and self.masks.dataset_reads == "annotations":
            mask = (lab_t != 0).float()
        return Sample(image=img_t, id=name, part_labels=lab_t, mask=mask, meta=meta)

    # -- views -------------------------------------------------------------------------------------------
    def _fg(self, image, labels, raw_mask):
        size = long_side_size(*image.shape[:2])
        img = cv2_resize(image_tensor(image), size, "bilinear")
        lab = cv2_resize(torch.from_numpy(labels), size, "nearest")
        img = pad_to(img, (256, 256), mode="edge", centre=True)
        lab = pad_to(lab, (256, 256), mode="constant", value=0, centre=True)
        mask = None
        if raw_mask is not None:
            if self.protocol.rules.binarise_masks:
                mask = cv2_resize(torch.from_numpy(binarise(raw_mask)), size, "nearest")
            else:
                mask = cv2_resize(torch.from_numpy(raw_mask.astype(np.float32)), size, self.protocol.rules.mask_resize)
            mask = pad_to(mask, (256, 256), mode="constant", value=0, centre=True)
        return img.contiguous(), lab.contiguous(), mask

    def _train(self, image, labels, raw_mask):
        from PIL import Image
        from torchvision.transforms import RandomResizedCrop

        pil = Image.fromarray(image)
        top, left, ch, cw = RandomResizedCrop.get_params(pil, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3))
        box = (left, top, left + cw, top + ch)
        img = np.asarray(pil.resize((256, 256), Image.BILINEAR, box=box))
        lab = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((256, 256), Image.NEAREST, box=box))
        mask = None
        if raw_mask is not None:
            if self.protocol.rules.binarise_masks:
                m = Image.fromarray((binarise(raw_mask) * 255).astype(np.uint8))
                mask = torch.from_numpy((np.asarray(m.resize((256, 256), Image.NEAREST, box=box)) > 0).astype(np.float32))
            else:
                m = Image.fromarray(raw_mask.astype(np.uint8)).resize((256, 256), Image.BILINEAR, box=box)
                mask = torch.from_numpy(np.asarray(m).astype(np.float32))
        img_t, lab_t = image_tensor(img), torch.from_numpy(lab.astype(np.int64))
        flipped = bool(torch.rand(()) < 0.5)
        if flipped:
            img_t, lab_t = img_t.flip(-1), lab_t.flip(-1)
            mask = mask.flip(-1) if mask is not None else None
        return img_t.contiguous(), lab_t.contiguous(), (mask.contiguous() if mask is not None else None), (left, top, cw, ch), flipped

    # -- paths ------------------------------------------------------------------------------------------
    def _image_path(self, index: int) -> Path:
        """``Anno/segmentation/<file_name>``; the release's ``Img/<file_name>`` is accepted too."""
        primary = self.seg_root / self._files[index]
        if not primary.is_file():
            alternative = self.root / "Img" / self._files[index]
            if alternative.is_file():
                return alternative
        return primary

    def mask_file(self, index: int) -> str:
        return self._files[index] + ".png"  # the reference's `<file_name>.png`

    def source_image(self, index: int) -> torch.Tensor:
        from ._views import image_tensor

        return image_tensor(read_rgb(self._image_path(index)))

    def _label_path(self, index: int) -> Path:
        rel = self._files[index]
        return self.seg_root / (rel[:-4] + "_segment.png" if rel.lower().endswith(".jpg") else rel + "_segment.png")

    def _pred_path(self, index: int) -> Path:
        rel = self._files[index]
        primary = self._pred_dir / (rel + ".png")  # the reference's `<file_name>.png`
        alternative = self._pred_dir / Path(rel).with_suffix(".png")
        return alternative if not primary.is_file() and alternative.is_file() else primary

    def _raw_mask(self, index: int, hw) -> np.ndarray | None:
        if self._pred_dir is None:
            return None
        from ._io import read_predicted_mask

        return read_predicted_mask(self._pred_path(index), tuple(hw), protocol=self.protocol)

    @classmethod
    def check_tree(cls, root, **options):
        report = Reporter(collect=True)
        datasets = [cls(root, split=s, _collect=report, **options) for s in cls.splits]
        return (datasets, []) if not report.problems else ([], report.problems)


def _read_json(path: Path, report: Reporter) -> list[str]:
    if not path.is_file():
        report(path, 0, "is missing")
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        report(path, 0, f"cannot be read ({exc})")
        return []
    except json.JSONDecodeError as exc:
        report(path, exc.lineno, f"is not valid JSON ({exc.msg}, column {exc.colno})")
        return []
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        report(path, 0, "has no 'images' list")
        return []
    names = []
    for k, entry in enumerate(images):
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            report(path, 0, f"images[{k}] has no 'file_name'")
            continue
        names.append(name)
    return names
