"""Datasets and their evaluation views. Importing this package registers the built-in datasets.

Public entry point: :func:`load` (``benchmark.datasets.load(name, root=..., split=..., **options)``).
"""

from __future__ import annotations

from typing import Any

from benchmark.core.registry import DATASETS  # noqa: F401  (re-exported: the registry of this package)


def load(name: str, root: Any = None, split: str = "test", *, view: str | None = None, protocol: Any = None,
         masks: Any = None, **options: Any):
    """Instantiate dataset ``name`` for ``split`` in ``view`` under ``protocol`` and ``masks`` (``None``: the
    dataset's own default view and protocol), with the dataset's own options (e.g. ``category=`` for
    PASCAL-Part) validated as ``-o`` options are: the one dataset factory,
    :func:`benchmark.factories.build_dataset`."""
    from benchmark.factories import build_dataset

    return build_dataset(name, data_root=root, split=split, view=view, protocol=protocol, masks=masks,
                         options=options)

from benchmark.core.plugin import import_submodules  # noqa: E402

import_submodules(__name__, __path__)
