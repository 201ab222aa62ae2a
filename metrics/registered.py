"""The registered clustering metrics: ``fg_nmi``, ``fg_ari``, ``nmi``, ``ari``.

An evaluation over no items, or over fewer items than the labels to tell apart (the number of parts K,
plus the background in the full view), raises :class:`~benchmark.core.errors.EmptyEvaluationError` from
:meth:`compute` instead of returning a value.

Each holds one exact :class:`~benchmark.metrics.clustering.ContingencyTable` fed with the label pairs
of its view (``role``) and label set (:meth:`label_set`) from
:func:`benchmark.metrics.scoring.label_pairs`; values are fractions in [0, 1] (ARI may be negative).
"""

from __future__ import annotations

from typing import Any, ClassVar

from benchmark.core.metric import Metric
from benchmark.core.registry import register_metric
from benchmark.metrics.clustering import ContingencyTable

__all__ = ["FgNMI", "FgARI", "FullNMI", "FullARI"]


class _ClusteringMetric(Metric):
    kind = "clustering"
    score: ClassVar[str] = "nmi"  # which ContingencyTable score compute() returns

    def label_set(self) -> str:
        return self.protocol.label_set(self.role, self.ground_truth, self.score)

    def reset(self) -> None:
        self.table = ContingencyTable()

    def update(self, target: Any, prediction: Any, *, split: str = "eval") -> None:
        self.require_eval_split(split)
        self.table.update(target, prediction)

    def min_items(self) -> int:
        """How many labels the metric must tell apart: the number of parts (``num_parts=`` option, given by
        the runner), plus the background label in the full-image view; 1 when unknown."""
        parts = int(self.options.get("num_parts") or 0)
        return max(1, parts + (1 if self.role == "full" and self.options.get("background", True) else 0))

    def compute(self) -> float:
        what = "keypoints" if self.ground_truth == "keypoints" else "pixels"
        self.table.require_items(self.min_items(), f"{self.role} {what}")
        return self.table.nmi() if self.score == "nmi" else self.table.ari()

    def merge(self, other: Metric) -> None:
        if not isinstance(other, _ClusteringMetric):
            raise ValueError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self.table.merge(other.table)

    @property
    def count(self) -> int:
        return self.table.total


@register_metric("fg_nmi")
class FgNMI(_ClusteringMetric):
    """Foreground NMI: part labels vs GT labels on foreground keypoints / pixels (no background label)."""

    role = "fg"
    score = "nmi"


@register_metric("fg_ari")
class FgARI(_ClusteringMetric):
    """Foreground ARI (``--protocol legacy`` on keypoints: the notebook's variant with a background label)."""

    role = "fg"
    score = "ari"


@register_metric("nmi")
class FullNMI(_ClusteringMetric):
    """Full-image NMI: background (label 0) and parts 1..K vs GT labels."""

    role = "full"
    score = "nmi"


@register_metric("ari")
class FullARI(_ClusteringMetric):
    """Full-image ARI: background (label 0) and parts 1..K vs GT labels."""

    role = "full"
    score = "ari"
