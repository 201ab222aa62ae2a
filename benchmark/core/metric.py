"""The :class:`Metric` base class: streaming accumulators (``reset / update / compute``).

A metric sees the whole evaluation split through repeated :meth:`update` calls and returns one number
from :meth:`compute`, pooled over the split (never an average of per-image scores). State must be exact
and mergeable (:meth:`merge`), so that several processes can evaluate shards and combine them.

Clustering metrics (``fg_nmi``, ``fg_ari``, ``nmi``, ``ari``) consume label pairs produced by the
harness from the predicted part maps (``benchmark.metrics.scoring.label_pairs``): each declares the view
it reads (``role``: ``"fg"`` or ``"full"``) and which label set of that view through :meth:`label_set`
(``"fg"``, ``"full"``, or a protocol-specific variant: ask
:meth:`~benchmark.core.protocol.EvaluationProtocol.label_set`, never compare protocol names); the harness calls ``update(true, pred)`` with 1-D
integer tensors. The landmark metric (``role = "landmarks"``, ``kind = "landmarks"``) is called as
``update(maps, batch, split="fit"|"eval")`` on the fitting split and on the evaluation split of the
dataset's ``landmark_view``, and computes the regression error at the end.

``value_range`` is the closed interval every value of the metric lies in (``(0, 1)`` for NMI, ``(-1, 1)``
for ARI, ``(0, inf)`` for an error); ``benchmark report`` refuses a stored value outside it, or not finite.
"""

from __future__ import annotations

from typing import Any, ClassVar

from benchmark.core.plugin import Plugin
from benchmark.core.protocol import EvaluationProtocol


class Metric(Plugin):
    name: ClassVar[str] = "?"  # set by @register_metric
    kind: ClassVar[str] = "clustering"  # "clustering" (label pairs) or "landmarks" (centres)
    role: ClassVar[str] = "fg"  # which evaluation view it reads: "fg", "full" or "landmarks"
    higher_is_better: ClassVar[bool] = True
    value_range: ClassVar[tuple[float, float]] = (float("-inf"), float("inf"))  # closed; see the docstring

    def __init__(self, protocol: str | EvaluationProtocol = "corrected", ground_truth: str = "pixels",
                 **options: Any):
        self.protocol = EvaluationProtocol.resolve(protocol)
        self.ground_truth = ground_truth
        self.options = options
        self.reset()

    def label_set(self) -> str:
        """For clustering metrics: the name of the label pairs this metric consumes."""
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def merge(self, other: "Metric") -> None:
        raise NotImplementedError

    @property
    def count(self) -> int:
        """How many items (keypoints, pixels, landmark pairs) the value is computed from."""
        raise NotImplementedError
