"""Mask quality: a predicted foreground against the ground-truth masks (``benchmark masks score``).

:class:`MaskScore` is a :class:`~benchmark.core.metric.Metric` with the shared ``update(target,
prediction)`` call, but no registered metric of part runs: it scores foreground masks, not part maps, and
returns three values (IoU, precision, recall) with the reason of each undefined one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from benchmark.core.errors import UserError
from benchmark.core.metric import Metric

__all__ = ["MaskScore"]


class MaskScore(Metric):
    """Streaming pixel counts of a predicted foreground against the ground truth: IoU, precision, recall
    pooled over every pixel of the split (exact integer counts, no per-image averaging)."""

    name: ClassVar[str] = "mask_quality"
    kind: ClassVar[str] = "masks"
    role: ClassVar[str] = "full"

    def reset(self) -> None:
        self.tp = self.fp = self.fn = self.pixels = self.images = 0

    def update(self, target: Any, prediction: Any, *, split: str = "eval") -> None:
        """``target``, ``prediction``: ``(N, H, W)`` (or ``(H, W)``) masks, > 0.5 = foreground."""
        self.require_eval_split(split)
        predicted, truth = prediction > 0.5, target > 0.5
        counts = torch.stack([(predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum()])
        tp, fp, fn = (int(v) for v in counts.tolist())
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.pixels += predicted.numel()
        self.images += predicted.shape[0] if predicted.ndim == 3 else 1

    def compute(self) -> tuple[dict[str, float], dict[str, str]]:  # type: ignore[override]
        """(values, why each undefined metric is undefined): a ratio with a zero denominator has no value and
        is reported as such, never as 0 or 1."""
        if self.pixels == 0:
            raise UserError("no pixels to score: the split has no images with ground-truth masks")
        values, undefined = {}, {}
        for name, num, den, why in (
                ("mask_iou", self.tp, self.tp + self.fp + self.fn,
                 "neither the predicted nor the ground-truth masks have a foreground pixel"),
                ("mask_precision", self.tp, self.tp + self.fp, "the predicted masks have no foreground pixel"),
                ("mask_recall", self.tp, self.tp + self.fn, "the ground-truth masks have no foreground pixel")):
            if den == 0:
                undefined[name] = why
            else:
                values[name] = num / den
        return values, undefined

    def merge(self, other: Metric) -> None:
        if not isinstance(other, MaskScore):
            raise ValueError(f"cannot merge {type(other).__name__} into MaskScore")
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn
        self.pixels, self.images = self.pixels + other.pixels, self.images + other.images

    @property
    def count(self) -> int:
        return self.pixels
