"""Test helpers: a perfect predictor and small dataset settings shared by several test files."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.core.method import Method
from benchmark.core.types import PartMaps

from benchmark.testing import SYNTHETIC_TINY  # noqa: E402,F401  (the size the public checks use)


class Oracle(Method):
    """Part maps = one-hot ground-truth part labels (pixels) -- the upper bound (NMI = ARI = 1)."""

    def __init__(self, num_parts: int = 4):
        self.num_parts = num_parts

    def predict(self, batch):
        labels = batch.part_labels
        k = max(self.num_parts, int(labels.max()) + 1)
        onehot = torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).float()
        return PartMaps(onehot, image_size=batch.size, kind="probs")


def sklearn_fg_nmi(method, data) -> float:
    """FG-NMI with scikit-learn over the GT-foreground pixels: the tests' own oracle, not benchmark.metrics."""
    from sklearn.metrics import normalized_mutual_info_score

    truth, predicted = [], []
    for batch in data.batches(4):
        labels = method.predict(batch).resized().part_labels()
        fg = batch.part_labels > 0
        truth.append(batch.part_labels[fg].numpy())
        predicted.append(labels[fg].numpy())
    return normalized_mutual_info_score(np.concatenate(truth), np.concatenate(predicted))
