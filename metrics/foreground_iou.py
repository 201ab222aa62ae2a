"""``fg_iou``: the foreground IoU of Flowers-102 as PDiscoFormer reports it (``engine/eval_fg_bg.py``).

A pixel is predicted foreground when the argmax over the K + 1 channels (the method's background channel
last, ``--protocol whole-image``) is one of the K part channels; the ground truth is the dataset's binary
foreground mask. The value is the intersection over the union of the two foregrounds, pooled over every
pixel of the split (integer counts, exact and mergeable; the reference's ``BinaryJaccardIndex`` pools the
same way). The harness feeds the full view's label pairs: label 0 is background, any other label is
foreground, for the truth and the prediction alike.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.core.errors import EmptyEvaluationError
from benchmark.core.metric import Metric
from benchmark.core.registry import register_metric

__all__ = ["ForegroundIoU"]


@register_metric("fg_iou")
class ForegroundIoU(Metric):
    """Foreground IoU: pixels whose argmax is a part channel against the ground-truth foreground mask."""

    kind = "foreground"
    role = "full"
    value_range = (0.0, 1.0)

    def label_set(self) -> str:
        return "full"

    def reset(self) -> None:
        self.intersection = self.union = self.pixels = 0

    def update(self, target: Any, prediction: Any, *, split: str = "eval") -> None:
        """``target``, ``prediction``: integer label tensors of one shape; 0 = background, else foreground."""
        self.require_eval_split(split)
        target, prediction = torch.as_tensor(target), torch.as_tensor(prediction)
        if target.shape != prediction.shape:
            raise ValueError(f"fg_iou: target {tuple(target.shape)} and prediction {tuple(prediction.shape)} differ")
        truth, predicted = target != 0, prediction != 0
        both = torch.stack([(truth & predicted).sum(), (truth | predicted).sum()]).tolist()
        self.intersection += int(both[0])
        self.union += int(both[1])
        self.pixels += truth.numel()

    def compute(self) -> float:
        if self.pixels == 0:
            raise EmptyEvaluationError("fg_iou: no pixels to score (the split is empty)")
        if self.union == 0:
            raise EmptyEvaluationError("fg_iou: neither the ground truth nor the prediction has a foreground "
                                       "pixel, so the IoU is undefined")
        return self.intersection / self.union

    def merge(self, other: Metric) -> None:
        if not isinstance(other, ForegroundIoU):
            raise ValueError(f"cannot merge {type(other).__name__} into ForegroundIoU")
        self.intersection += other.intersection
        self.union += other.union
        self.pixels += other.pixels

    @property
    def count(self) -> int:
        return self.pixels
