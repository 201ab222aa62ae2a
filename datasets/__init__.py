"""Datasets and their evaluation views. Importing this package registers the built-in datasets.

Public entry point: :func:`load` (``benchmark.datasets.load(name, root=..., split=..., **options)``).
"""

from __future__ import annotations

from typing import Any

from benchmark.core.registry import DATASETS


def load(name: str, root: Any = None, split: str = "test", **options: Any):
    """Instantiate dataset ``name`` for ``split`` (options: ``view=``, ``protocol=``, ``masks=``, and the
    dataset's own, e.g. ``category=`` for PASCAL-Part)."""
    cls = DATASETS.get(name)
    return cls(root, split=split, **options)

from benchmark.core.plugin import import_submodules  # noqa: E402

import_submodules(__name__, __path__)
