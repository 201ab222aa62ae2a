"""Part-discovery methods. Importing this package registers the built-in methods.

Each module registers its class with ``@register_method``; a method whose optional dependency is missing
still registers and reports why through ``unavailable_reason()``. See :mod:`benchmark.core.method`.
"""



def _register_builtins() -> None:
    """Import every module and subpackage of this package once, so their decorators register them.
    (Discovery instead of a hand-kept list: a new plug-in file is picked up without editing this file.)"""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_builtins()
