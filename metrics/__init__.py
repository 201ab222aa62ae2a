"""Exact evaluation metrics.

* :func:`nmi`, :func:`ari` -- pure functions on 1-D integer labels, equal to scikit-learn's
  ``normalized_mutual_info_score`` (arithmetic) and ``adjusted_rand_score`` to 1e-9.
* :class:`ContingencyTable` -- the streaming, mergeable accumulator behind them.
* :mod:`.scoring` -- turning part maps into label pairs (keypoint- or pixel-based, FG / full).
* :mod:`.landmarks` -- part centres and landmark regression (``regression_error``).
* Registered metrics: ``fg_nmi``, ``fg_ari``, ``nmi``, ``ari``, ``landmark_error``, ``fg_iou`` (the
  foreground IoU of Flowers-102, :mod:`.foreground_iou`).
"""

from benchmark.metrics.clustering import ContingencyTable, ari, nmi

__all__ = ["ContingencyTable", "ari", "nmi"]

from benchmark.core.plugin import import_submodules  # noqa: E402

import_submodules(__name__, __path__)
