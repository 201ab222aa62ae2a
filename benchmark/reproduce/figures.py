"""Qualitative figure of one experiment on one dataset: the same test images, the ground truth, and every
method's parts in consistent colours.

Part indices are arbitrary per method, so before drawing, each method's parts are renumbered to the ground-
truth part they overlap most (a one-to-one Hungarian matching over the shown images' foreground pixels):
the same colour then means the same object part in every column. Datasets with keypoint ground truth (CUB)
have no part labels to match; their parts keep their own indices in the shared palette.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.reproduce.graph import Settings, Step, ledger_dir


def match_to_ground_truth(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Renumber predicted labels (0 = background, 1..K) so that each part gets the number of the GT part it
    overlaps most, one-to-one; parts left over get numbers after the GT's."""
    from scipy.optimize import linear_sum_assignment

    k_pred, k_gt = int(pred.max()), int(gt.max())
    if k_pred == 0 or k_gt == 0:
        return pred
    fg = (pred > 0) & (gt > 0)
    counts = np.zeros((k_pred, k_gt), dtype=np.int64)
    np.add.at(counts, (pred[fg] - 1, gt[fg] - 1), 1)
    rows, cols = linear_sum_assignment(-counts)
    mapping = np.zeros(k_pred + 1, dtype=np.int64)
    mapping[rows + 1] = cols + 1
    spare = [p for p in range(1, k_pred + 1) if p - 1 not in set(rows.tolist())]
    for offset, part in enumerate(spare):
        mapping[part] = k_gt + 1 + offset
    return mapping[pred]


def _load_examples(path: str) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def write_experiment_figure(step: Step, settings: Settings) -> Path:
    import torch

    from benchmark.figures import comparison_figure

    examples: dict[str, dict[str, Any]] = {}
    for label, entry in step.spec["methods"].items():
        record = json.loads((ledger_dir(settings) / entry["ledger"]).read_text())
        examples[label] = _load_examples(record["outputs"]["examples"])
    reference = next(iter(examples.values()))
    for label, example in examples.items():
        if list(example["ids"]) != list(reference["ids"]):
            raise RuntimeError(f"{step.id}: {label} kept other test images than the first method; "
                               "figures must show the same images")
        gt = reference.get("gt")
        if gt is not None:
            pred = example["pred"].numpy()
            example["pred"] = torch.from_numpy(np.stack([match_to_ground_truth(p, g) for p, g in zip(pred, gt.numpy())]))
    path = Path(settings.out_dir) / "figures" / f"{step.spec['experiment']}-{step.spec['dataset_label']}.png"
    return comparison_figure(path, examples, title=step.spec["title"])
