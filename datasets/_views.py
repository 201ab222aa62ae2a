"""Crop and resize rules shared by the real datasets (``docs/protocol.md`` describes the views).

Two resize families are used on purpose, because the reference used two libraries:

* *evaluation notebooks* (torchvision ``Resize`` on PIL images): :func:`short_side_size` (the long side is
  ``int(256 * long / short)``, truncated, as torchvision computes it) and :func:`pil_resize` (PIL's
  bilinear, which low-pass filters when shrinking, or PIL's nearest);
* *training code* (OpenCV ``cv2.resize``): :func:`cv2_resize` = ``F.interpolate`` with half-pixel centres
  and no anti-aliasing (identical to ``INTER_LINEAR``), and ``mode="nearest"`` (``floor(dst * scale)``,
  identical to ``INTER_NEAREST``); output size ``round(side * scale)`` as the reference computes it.

Coordinates are continuous (benchmark.core.types): pixel column ``j`` covers ``[j, j+1)``. A crop that
starts at pixel ``x0`` and is resized by ``s`` maps ``x`` to ``(x - x0) * s``; a horizontal flip of a
width-``W`` view maps ``x`` to ``W - x``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: CUB keypoint order after a horizontal flip (the reference's 1-based [1..6, 11, 12, 13, 10, 7, 8, 9, 14, 15] - 1)
CUB_FLIP_PERMUTATION = (0, 1, 2, 3, 4, 5, 10, 11, 12, 9, 6, 7, 8, 13, 14)

#: the training code's out-of-image fill of the training crops is the value 1 on the uint8 image (almost black, 1/255
#: after scaling; CMR and SCOPS used 1 on [0, 1] images, i.e. white). Kept as the reference did it.
CROP_FILL_UINT8 = 1


def short_side_size(h: int, w: int, short: int = 256) -> tuple[int, int]:
    """torchvision ``Resize(short)`` output size: short side = ``short``, long side truncated."""
    if w <= h:
        return int(short * h / w), short
    return short, int(short * w / h)


def long_side_size(h: int, w: int, long: int = 256) -> tuple[int, int]:
    """Training-code size: scale = ``long / max(h, w)``, sizes rounded (``np.round``)."""
    scale = long / float(max(h, w))
    return int(np.round(h * scale)), int(np.round(w * scale))


def cut_borders(h: int, w: int, multiple: int = 16) -> tuple[int, int, int, int]:
    """The notebook's ``cut_borders``: centred crop down to multiples of ``multiple``: ``(top, left, new_h, new_w)``."""
    nh, nw = h - h % multiple, w - w % multiple
    return (h % multiple) // 2, (w % multiple) // 2, nh, nw


def centre_crop_offset(length: int, size: int) -> int:
    """Where torchvision's ``center_crop`` starts a ``size`` cut of ``length`` pixels: ``int(round((length -
    size) / 2))`` with Python's round-half-to-even (``length >= size``)."""
    return int(round((length - size) / 2.0))


def pil_resize(array: np.ndarray, size_hw: tuple[int, int], mode: str) -> np.ndarray:
    """Resize a uint8 ``(H, W)`` or ``(H, W, 3)`` array with PIL (``"bilinear"`` or ``"nearest"``), as
    torchvision's ``Resize`` does on PIL images; the result stays uint8 (PIL rounds)."""
    from PIL import Image

    if tuple(array.shape[:2]) == tuple(size_hw):
        return array
    resample = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[mode]
    image = Image.fromarray(np.ascontiguousarray(array))
    return np.asarray(image.resize((size_hw[1], size_hw[0]), resample=resample))


def cv2_resize(tensor: Tensor, size_hw: tuple[int, int], mode: str) -> Tensor:
    """Resize a ``(C, H, W)`` or ``(H, W)`` tensor as ``cv2.resize`` (``"bilinear"`` or ``"nearest"``)."""
    squeeze = tensor.ndim == 2
    x = tensor[None, None] if squeeze else tensor[None]
    if tuple(x.shape[-2:]) != tuple(size_hw):
        dtype = x.dtype
        x = x.float()
        if mode == "bilinear":
            x = F.interpolate(x, size=size_hw, mode="bilinear", align_corners=False, antialias=False)
        else:
            x = F.interpolate(x, size=size_hw, mode="nearest")
        x = x.to(dtype) if not dtype.is_floating_point and mode == "nearest" else x
    return x[0, 0] if squeeze else x[0]


def image_tensor(array: np.ndarray) -> Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)


def square_box(x0: float, y0: float, x1: float, y1: float, *, pad: float = 0.05, jitter: float = 0.0,
               generator: torch.Generator | None = None) -> tuple[int, int, int]:
    """The training code's crop box from an inclusive pixel box ``(x0, y0, x1, y1)``: every side grows by ``pad`` of the
    box width/height plus a uniform jitter in ``[-jitter, jitter]`` of it (drawn per side), then the box is
    rounded and its short side grown (centred) to a square. Returns ``(left, top, side)`` in pixels."""
    bw, bh = x1 - x0 + 1, y1 - y0 + 1
    j = (1 - 2 * torch.rand(4, generator=generator, dtype=torch.float64)).numpy() * jitter if jitter else np.zeros(4)
    box = [x0 - pad * bw - j[0] * bw, y0 - pad * bh - j[1] * bh, x1 + pad * bw + j[2] * bw, y1 + pad * bh + j[3] * bh]
    left, top, right, bottom = (int(np.round(v)) for v in box)
    w, h = right - left + 1, bottom - top + 1
    side = max(w, h)
    left -= int(np.round((side - w) / 2.0))
    top -= int(np.round((side - h) / 2.0))
    return left, top, side


def crop_fill(array: np.ndarray, left: int, top: int, width: int, height: int, fill) -> np.ndarray:
    """The ``height x width`` window at ``(left, top)``; pixels outside the array get ``fill``."""
    out = np.full((height, width) + array.shape[2:], fill, dtype=array.dtype)
    h, w = array.shape[:2]
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(left + width, w), min(top + height, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = array[sy0:sy1, sx0:sx1]
    return out


def pad_to(tensor: Tensor, size_hw: tuple[int, int], *, mode: str, value: float = 0.0,
           centre: bool = False) -> Tensor:
    """Pad ``(C, H, W)`` / ``(H, W)`` up to ``size_hw`` (``"edge"`` or ``"constant"``): at the bottom and
    right, or with ``centre`` split around the content (``p // 2`` before, the rest after, as the
    reference's ``pad_if_smaller`` does for the DeepFashion evaluation crops)."""
    ph, pw = size_hw[0] - tensor.shape[-2], size_hw[1] - tensor.shape[-1]
    if ph <= 0 and pw <= 0:
        return tensor
    ph, pw = max(ph, 0), max(pw, 0)
    top, left = (ph // 2, pw // 2) if centre else (0, 0)
    pads = (left, pw - left, top, ph - top)
    if mode == "constant":
        return F.pad(tensor, pads, value=value)
    squeeze = tensor.ndim == 2
    x = tensor[None, None] if squeeze else tensor[None]
    dtype = x.dtype
    x = F.pad(x.float(), pads, mode="replicate").to(dtype)
    return x[0, 0] if squeeze else x[0]


def flip_keypoints(keypoints: Tensor, visible: Tensor, width: int, permutation) -> tuple[Tensor, Tensor]:
    """Keypoints of the horizontally flipped view: ``x -> width - x`` and left/right parts swapped."""
    perm = torch.as_tensor(permutation, dtype=torch.long)
    flipped = keypoints[perm].clone()
    flipped[:, 0] = width - flipped[:, 0]
    return flipped, visible[perm].clone()


def inside(keypoints: Tensor, h: int, w: int) -> Tensor:
    """Keypoints whose containing pixel ``floor(x), floor(y)`` lies in the view (``0 <= x < w``, ``0 <= y < h``)."""
    x, y = keypoints[:, 0], keypoints[:, 1]
    return (x >= 0) & (x < w) & (y >= 0) & (y < h)


def whole_image_view(image: np.ndarray, labels: np.ndarray, size: int, crop: bool,
                     flip: bool) -> tuple[Tensor, Tensor]:
    """The whole-image view of the 2023-2025 evaluations (PartImageNet, Flowers-102): the short side resized
    to ``size`` (image bilinear as PIL does, labels nearest), an optional centred ``size`` x ``size`` crop,
    then an optional horizontal flip (training view). Returns the image tensor and the int64 label map."""
    sh, sw = short_side_size(*image.shape[:2], size)
    image = pil_resize(image, (sh, sw), "bilinear")
    label_map = F.interpolate(torch.from_numpy(labels)[None, None].float(), size=(sh, sw), mode="nearest")[0, 0].long()
    if crop:
        top, left = centre_crop_offset(sh, size), centre_crop_offset(sw, size)
        image = image[top:top + size, left:left + size]
        label_map = label_map[top:top + size, left:left + size]
    img = image_tensor(image)
    if flip:
        img, label_map = img.flip(-1), label_map.flip(-1)
    return img, label_map.contiguous()
