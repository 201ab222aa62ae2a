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
* ``"masks"`` (:class:`benchmark.metrics.mask_quality.MaskScore`, not a registered part metric):
  ground-truth and predicted foreground masks.

``split="fit"`` exists for metrics that fit something (landmark regression); the others accept only
``"eval"`` (:meth:`require_eval_split`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from benchmark.core.plugin import Plugin
from benchmark.core.protocol import DEFAULT_PROTOCOL, EvaluationProtocol


class Metric(Plugin):
    name: ClassVar[str] = "?"  # set by @register_metric
    kind: ClassVar[str] = "clustering"  # "clustering" (label pairs), "landmarks" (centres) or "masks"
    role: ClassVar[str] = "fg"  # which evaluation view it reads: "fg", "full" or "landmarks"
    higher_is_better: ClassVar[bool] = True

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
