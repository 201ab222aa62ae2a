"""The :class:`Metric` base class: streaming accumulators (``reset / update / compute``).

A metric sees the whole evaluation split through repeated :meth:`update` calls and returns one number
from :meth:`compute`, pooled over the split (never an average of per-image scores). State must be exact
and mergeable (:meth:`merge`), so that several processes can evaluate shards and combine them.

Every metric is fed with one call, ``update(target, prediction, *, split="eval")``: the ground truth
first, then what is scored against it; what the two are depends on the metric's ``kind``:

* ``"clustering"`` (``fg_nmi``, ``fg_ari``, ``nmi``, ``ari``): 1-D integer tensors of true and predicted
  labels, produced by the harness from the part maps (``benchmark.metrics.scoring.label_pairs``). Each
  declares the view it reads (``role``: ``"fg"`` or ``"full"``) and which label set of that view through
  :meth:`label_set` (``"fg"``, ``"full"``, or a protocol-specific variant: ask
  :meth:`~benchmark.core.protocol.EvaluationProtocol.label_set`, never compare protocol names).
* ``"landmarks"`` (``landmark_error``, ``role = "landmarks"``): the :class:`~benchmark.core.types.Batch`
  (keypoints, boxes, masks) and its :class:`~benchmark.core.types.PartMaps`, on the fitting split
  (``split="fit"``) and on the evaluation split (``split="eval"``) of the dataset's ``landmark_view``; the
  regression error is computed at the end.
* ``"foreground"`` (``fg_iou``, ``role = "full"``): the full view's label pairs like a clustering
  metric; label 0 is background, any other label foreground. Only datasets listing the kind in
  ``Dataset.metric_kinds`` are scored with it.
* ``"masks"`` (:class:`benchmark.metrics.mask_quality.MaskScore`, not a registered part metric):
  ground-truth and predicted foreground masks.

``split="fit"`` exists for metrics that fit something (landmark regression); the others accept only
``"eval"`` (:meth:`require_eval_split`).

``value_range`` is the closed interval every value of the metric lies in (``(0, 1)`` for NMI, ``(-1, 1)``
for ARI, ``(0, inf)`` for an error); ``benchmark report`` refuses a stored value outside it, or not finite.
"""

from __future__ import annotations

from typing import Any, ClassVar

from benchmark.core.plugin import Plugin
from benchmark.core.protocol import DEFAULT_PROTOCOL, EvaluationProtocol


class Metric(Plugin):
    name: ClassVar[str] = "?"  # set by @register_metric
    kind: ClassVar[str] = "clustering"  # "clustering"/"foreground" (label pairs), "landmarks" (centres), "masks"
    role: ClassVar[str] = "fg"  # which evaluation view it reads: "fg", "full" or "landmarks"
    higher_is_better: ClassVar[bool] = True
    value_range: ClassVar[tuple[float, float]] = (float("-inf"), float("inf"))  # closed; see the docstring

    def __init__(self, protocol: str | EvaluationProtocol = DEFAULT_PROTOCOL, ground_truth: str = "pixels",
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

    def update(self, target: Any, prediction: Any, *, split: str = "eval") -> None:
        """Add one batch: ``target`` (the ground truth) and ``prediction`` (see the module docstring)."""
        raise NotImplementedError

    def require_eval_split(self, split: str) -> None:
        """For metrics that fit nothing: ``split`` must be ``"eval"``."""
        if split != "eval":
            raise ValueError(f"{self.name} fits nothing; update it with split='eval', got {split!r}")

    def compute(self) -> float:
        raise NotImplementedError

    def merge(self, other: "Metric") -> None:
        raise NotImplementedError

    @property
    def count(self) -> int:
        """How many items (keypoints, pixels, landmark pairs) the value is computed from."""
        raise NotImplementedError
