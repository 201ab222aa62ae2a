"""Part-discovery methods. Importing this package registers the built-in methods.

Each module registers its class with ``@register_method``; a method whose optional dependency is missing
still registers and reports why through ``unavailable_reason()``. See :mod:`benchmark.core.method`.
"""

from benchmark.core.plugin import import_submodules  # noqa: E402

import_submodules(__name__, __path__)
