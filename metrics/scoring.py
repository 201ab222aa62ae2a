"""Turning predicted part maps into (true, predicted) label pairs for the clustering metrics.

:func:`label_pairs` works on a whole :class:`~benchmark.core.types.Batch` at once (no per-image loops)
and returns 1-D int64 tensors on the batch's device, one pair per *label set*:

* ``"fg"``   -- foreground view: the K part labels only (no background);
* ``"full"`` -- full view: label 0 = background, 1..K = parts;
* ``"fg_with_background"`` -- keypoint datasets under a protocol with ``fg_ari_with_background``
  (``--protocol legacy``): the full formula evaluated on the FG (box-cropped) view, which is what the
  reference notebook reported as CUB FG-ARI before its fix (see ``docs/protocol.md``).

The rules come from the run's :class:`~benchmark.core.protocol.EvaluationProtocol` (``protocol=``; a name
is resolved to one). Ground truth:

* ``"keypoints"`` (CUB): one pair per *visible* keypoint; the GT label is the keypoint index and the
  prediction is read at one pixel (``keypoint_readout``): ``"containing_pixel"`` reads the pixel whose
  square ``[j, j+1) x [i, i+1)`` holds the point (``floor``); ``"grid_sample"`` reads what the notebook
  read: the point normalised as ``x / W * 2 - 1`` in float32 and sampled by
  ``grid_sample(mode="nearest", align_corners=False)``, whose own float32 rounding decides exact ties.
  A point outside the image reads all-zero scores (grid_sample's zero padding), i.e. label 0. Scores are
  gathered at the keypoints before the per-pixel softmax/argmax (both are per pixel, so this equals
  evaluating whole maps).
* ``"pixels"`` (DeepFashion, PASCAL-Part): FG view = pixels whose GT part label != 0, prediction = argmax
  over the K parts; full view = every pixel, prediction = ``mask * (argmax + 1)``.

Background (``background=``, the mask source's ``background``, one per run):

* ``"mask"``: ``batch.masks``. With ``binarise_masks`` they must be exactly {0, 1}. Otherwise they are
  used as given (e.g. 0..255, or fractional after bilinear resizing): for keypoints the (K+1)-channel map
  ``[1 - m, m * softmax(parts)]`` is built with those values, for pixels ``m * (argmax + 1)`` is computed
  in float32 as the reference does and each distinct *value* becomes one label (scikit-learn treats
  arbitrary label values the same way).
* ``"method"``: the method's own background channel 0 (``maps.has_background``): full prediction = argmax
  over all K+1 raw channels.
* ``"none"``: no background label: full prediction = argmax + 1 everywhere.

Position of the background in the K + 1 channels (the protocol's ``background_channel``): ``"first"``
(the notebooks built ``[background, parts]``) or ``"last"`` (``whole-image``: PDiscoNet-style models emit
``[parts, background]``). The full-image argmax runs over the channels in that order, so an exact tie
between the background and a part goes to the background when it is first and to the part when it is
last (``torch.argmax`` returns the first maximum; ties between parts go to the lowest part either way),
and a keypoint read outside the image (all-zero scores) gets the first channel's label: background (0)
or the first part (1). The labels themselves stay 0 = background, 1..K = parts.

Reference rules for methods with their own background channel (``legacy_rule=``, the protocol's
``background_rule(role)`` from the dataset's ``legacy_background_rules``; used only for
``maps.has_background``), what the DeepFashion notebook did with SCOPS:

* ``"all_channels"`` (FG view): the FG prediction is the argmax over all K+1 channels, background included;
* ``"max_normalised"`` (full view, ``background="method"``): probabilities divided by their per-image,
  per-channel spatial maximum, the background channel replaced by 0.1, then argmax over the K+1 channels.
"""

from __future__ import annotations

import torch
from torch import Tensor

import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.core.protocol import EvaluationProtocol
from benchmark.core.types import Batch, PartMaps

__all__ = ["label_pairs", "value_labels"]

ROLES = ("fg", "full")
GROUND_TRUTHS = ("keypoints", "pixels")
BACKGROUNDS = ("mask", "method", "none")
LEGACY_RULES = ("all_channels", "max_normalised")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name}={value!r} is not one of {', '.join(choices)}")


def value_labels(values: Tensor) -> Tensor:
    """Injective int64 labels for float values, consistent across calls: a non-negative integral value
    ``v < 2**31`` becomes ``v`` itself (the common case: masks in {0, 1} or 0..255), any other value
    becomes ``2**32 + its float32 bit pattern``. ``-0.0`` and ``0.0`` are the same label."""
    v = values.float() + 0.0  # folds -0.0 into 0.0
    integral = (v == v.round()) & (v >= 0) & (v < 2.0**31)
    bits = v.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return torch.where(integral, v.clamp(0, 2.0**31 - 1).to(torch.int64), bits + (1 << 32))


def _masks(batch: Batch, protocol: EvaluationProtocol) -> Tensor:
    if batch.masks is None:
        raise UserError(
            "this evaluation needs foreground masks (background='mask') but the batch has none; pass "
            "--masks gt or --masks predicted:DIR, or --masks method for a method with its own background "
            "channel, or --masks none to evaluate without a background label")
    masks = batch.masks.float()
    if protocol.rules.binarise_masks and bool(((masks != 0) & (masks != 1)).any()):
        raise UserError(
            "the corrected protocol needs binary {0, 1} foreground masks but the dataset supplied other "
            "values; binarise them in the dataset (value >= half of the file's maximum code) or use "
            "--protocol legacy")
    return masks


def _require_background_channel(maps: PartMaps) -> None:
    if not maps.has_background:
        raise UserError(
            "background='method' needs a method with its own background channel (PartMaps.has_background); "
            "this method has none: use --masks gt, --masks predicted:DIR or --masks none")


def _part_probs(part_scores: Tensor, kind: str, dim: int = 1) -> Tensor:
    """Softmax over the K part channels (for ``kind='probs'``: the part probabilities renormalised)."""
    if kind == "logits":
        return part_scores.float().softmax(dim=dim)
    p = part_scores.float()
    return p / p.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)


def background_argmax(full: Tensor, background_channel: str) -> Tensor:
    """Labels 0 = background, 1..K = parts of ``[background, parts]`` channel-first scores ``full`` (``(M, K+1)``
    or ``(N, K+1, H, W)``), the argmax taken with the background ``"first"`` or ``"last"`` (module
    docstring: this decides exact ties)."""
    if background_channel == "first":
        return full.argmax(dim=1)
    if background_channel != "last":
        raise ValueError(f"unknown background_channel {background_channel!r}")
    index = torch.cat([full[:, 1:], full[:, :1]], dim=1).argmax(dim=1)  # [parts, background]
    parts = full.shape[1] - 1
    return torch.where(index == parts, torch.zeros_like(index), index + 1)


def _full_from_scores(scores: Tensor, masks: Tensor | None, maps: PartMaps, background: str,
                      background_channel: str = "first") -> Tensor:
    """Full-view labels (0 = background, 1..K) from channel-first scores ``(M, C)`` or ``(N, C, H, W)``
    via the keypoint formula (argmax over K+1 channels)."""
    off = int(maps.has_background)
    if background == "method":
        return background_argmax(scores, background_channel)
    parts = scores[:, off:]
    if background == "none":
        return parts.argmax(dim=1) + 1
    m = masks.unsqueeze(1)
    full = torch.cat([1.0 - m, m * _part_probs(parts, maps.kind)], dim=1)
    return background_argmax(full, background_channel)


def label_pairs(maps: PartMaps, batch: Batch, *, role: str, ground_truth: str,
                protocol: str | EvaluationProtocol, background: str,
                legacy_rule: str | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """Label pairs ``{label_set: (true, pred)}`` of one batch for one evaluation view (module docstring)."""
    _check_choice("role", role, ROLES)
    _check_choice("ground_truth", ground_truth, GROUND_TRUTHS)
    protocol = EvaluationProtocol.resolve(protocol)
    _check_choice("background", background, BACKGROUNDS)
    if legacy_rule is not None:
        _check_choice("legacy_rule", legacy_rule, LEGACY_RULES)
        if not protocol.rules.reference_quirks or not maps.has_background:
            legacy_rule = None
    if len(maps) != len(batch):
        raise ValueError(f"part maps cover {len(maps)} images but the batch has {len(batch)}")
    needs_background = role == "full" or (role == "fg" and protocol.needs_fg_background(ground_truth))
    if needs_background and background == "method":
        _require_background_channel(maps)
    masks = _masks(batch, protocol) if needs_background and background == "mask" else None
    maps = maps.resized(batch.size)
    scores = maps.scores.to(batch.device)
    if ground_truth == "keypoints":
        return _keypoint_pairs(scores, masks, maps, batch, role, protocol, background)
    return _pixel_pairs(scores, masks, maps, batch, role, protocol, background, legacy_rule)


def keypoint_pixels(batch: Batch, readout: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(image, keypoint index, row, col, inside)`` of every visible keypoint: the pixel it reads under the
    protocol's ``keypoint_readout`` (module docstring); ``row``/``col`` are clamped into the image where
    ``inside`` is false."""
    h, w = batch.size
    img, kp_index = batch.visible.nonzero(as_tuple=True)
    points = batch.keypoints[img, kp_index]
    if readout == "grid_sample":
        # The notebook's exact steps: float32 normalisation, then grid_sample picks the pixel. Sampling maps
        # of 1-based row and column numbers (exact in float32; 0 = the zero padding outside the image)
        # returns grid_sample's own choice, whatever the dtype of the scores.
        device = points.device
        grid = (points.float() / torch.tensor([w, h], dtype=torch.float32, device=device)) * 2 - 1
        rows = torch.arange(1, h + 1, dtype=torch.float32, device=device).view(h, 1).expand(h, w)
        cols = torch.arange(1, w + 1, dtype=torch.float32, device=device).view(1, w).expand(h, w)
        picked = F.grid_sample(torch.stack([rows, cols])[None], grid.view(1, 1, -1, 2), mode="nearest",
                               padding_mode="zeros", align_corners=False)[0, :, 0].long()  # (2, M)
        inside = picked[0] > 0
        return img, kp_index, (picked[0] - 1).clamp(min=0), (picked[1] - 1).clamp(min=0), inside
    if readout != "containing_pixel":
        raise ValueError(f"unknown keypoint readout {readout!r}")
    col = torch.floor(points[:, 0].double())
    row = torch.floor(points[:, 1].double())
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    return img, kp_index, row.clamp(0, h - 1).long(), col.clamp(0, w - 1).long(), inside


def _keypoint_pairs(scores: Tensor, masks: Tensor | None, maps: PartMaps, batch: Batch, role: str,
                    protocol: EvaluationProtocol, background: str) -> dict[str, tuple[Tensor, Tensor]]:
    if batch.keypoints is None or batch.visible is None:
        raise UserError("ground_truth='keypoints' needs keypoints in the dataset's samples; this dataset has "
                        "none: evaluate it with pixel ground truth (part label maps)")
    img, kp_index, row, col, inside = keypoint_pixels(batch, protocol.rules.keypoint_readout)
    values = scores[img, :, row, col]  # (M, C)
    m = masks[img, row, col] if masks is not None else None
    off = int(maps.has_background)
    zero = torch.zeros((), dtype=torch.int64, device=values.device)

    def fg() -> Tensor:  # outside the image grid_sample gives all-zero scores -> argmax 0
        return torch.where(inside, values[:, off:].argmax(dim=1), zero)

    order = protocol.rules.background_channel
    # outside the image grid_sample reads all-zero scores: the label of the first channel
    outside = zero if order == "first" else zero + 1

    def full() -> Tensor:
        return torch.where(inside, _full_from_scores(values, m, maps, background, order), outside)

    true = kp_index.to(torch.int64)
    if role == "full":
        return {"full": (true, full())}
    pairs = {"fg": (true, fg())}
    if protocol.needs_fg_background("keypoints"):
        pairs["fg_with_background"] = (true, full())
    return pairs


def _pixel_pairs(scores: Tensor, masks: Tensor | None, maps: PartMaps, batch: Batch, role: str,
                 protocol: EvaluationProtocol, background: str, legacy_rule: str | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    if batch.part_labels is None:
        raise UserError("ground_truth='pixels' needs part label maps in the dataset's samples; this dataset "
                        "has none: evaluate it with keypoint ground truth")
    gt = batch.part_labels.to(torch.int64)
    off = int(maps.has_background)
    parts = scores[:, off:].argmax(dim=1)  # (N, H, W), 0..K-1
    if role == "fg":
        fg = gt != 0
        if legacy_rule == "all_channels":  # the DeepFashion notebook kept SCOPS' background channel here
            parts = scores.argmax(dim=1)
        return {"fg": (gt[fg], parts[fg])}
    if background == "method" and legacy_rule == "max_normalised":
        probs = scores.float().softmax(dim=1) if maps.kind == "logits" else scores.float()
        probs = probs / probs.amax(dim=(2, 3), keepdim=True)
        probs[:, 0] = 0.1
        pred = probs.argmax(dim=1)
    elif background == "method":
        pred = background_argmax(scores, protocol.rules.background_channel)
    elif background == "none":
        pred = parts + 1
    elif not protocol.rules.binarise_masks:
        # The reference multiplies the raw mask (float) by argmax + 1; each distinct value is one label.
        pred = value_labels(masks * (parts + 1).float())
    else:
        pred = masks.to(torch.int64) * (parts + 1)
    return {"full": (gt.reshape(-1), pred.reshape(-1))}
