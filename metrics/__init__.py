"""Exact evaluation metrics.

* :func:`nmi`, :func:`ari` -- pure functions on 1-D integer labels, equal to scikit-learn's
  ``normalized_mutual_info_score`` (arithmetic) and ``adjusted_rand_score`` to 1e-9.
* :class:`ContingencyTable` -- the streaming, mergeable accumulator behind them.
* :mod:`.scoring` -- turning part maps into label pairs (keypoint- or pixel-based, FG / full).
* :mod:`.landmarks` -- part centres and landmark regression (``regression_error``).
* Registered metrics: ``fg_nmi``, ``fg_ari``, ``nmi``, ``ari``, ``landmark_error``.
"""

from benchmark.metrics.clustering import ContingencyTable, ari, nmi

__all__ = ["ContingencyTable", "ari", "nmi"]


def _register_builtins() -> None:
    """Import every module and subpackage of this package once, so their decorators register them.
    (Discovery instead of a hand-kept list: a new plug-in file is picked up without editing this file.)"""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_builtins()
