"""Test helpers: a perfect predictor, small dataset settings and CLI assertions shared by several test files."""

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


def invoke(*args):
    """The ``benchmark`` CLI in-process on ``args`` (each made a string); exceptions become the exit code."""
    from click.testing import CliRunner

    from benchmark.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result, *fragments):
    """Assert the contract for bad input: exit 2, no traceback, one ``error:`` line (besides warnings) that
    holds every fragment; return that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
