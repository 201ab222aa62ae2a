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


def _register_builtins() -> None:
    """Import every module and subpackage of this package once, so their decorators register them.
    (Discovery instead of a hand-kept list: a new plug-in file is picked up without editing this file.)"""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_builtins()
