"""Part-discovery methods. Importing this package registers the built-in methods.

Each module registers its class with ``@register_method``; a method whose optional dependency is missing
still registers and reports why through ``unavailable_reason()``. See :mod:`benchmark.core.method`.
"""

from benchmark.methods import random_parts  # noqa: F401  (registers "random")
