"""Plug-in registries (in the spirit of timm's model registry).

Every method, dataset, metric and speed benchmark is a class (or function) registered under its public
name with a decorator::

    from benchmark.core.registry import register_method

    @register_method("my-method")
    class MyMethod(Method):
        ...

* A duplicate name raises :class:`ValueError` at import time (two plug-ins can never shadow each other).
* An unknown name raises :class:`~benchmark.core.errors.UnknownNameError` listing the known names.
* Built-in plug-ins are imported lazily the first time a registry is queried (by module *name*, so this
  module imports nothing of the project).
* Third-party packages register through entry points, without touching partbench::

      [project.entry-points."partbench.methods"]
      my-method = "my_package.module:MyMethod"

  The entry point is loaded on first query; loading registers the object under the entry point's name
  (a class already decorated with the same name is accepted as is). An entry point that fails to load
  is recorded as *broken* and shown by ``benchmark list`` with the reason, instead of crashing.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from benchmark.core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> plug-in mapping with lazy loading of built-ins and entry points."""

    def __init__(self, kind: str, builtin_module: str | None, entry_point_group: str | None):
        self.kind = kind
        self._builtin_module = builtin_module
        self._group = entry_point_group
        self._items: dict[str, T] = {}
        self.broken: dict[str, str] = {}  # name -> why its entry point could not be loaded
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()

    # -- registration ---------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; sets ``obj.name = name`` on classes."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string without spaces, got {name!r}")

        def decorator(obj: T) -> T:
            with self._lock:
                existing = self._items.get(name)
                if existing is not None and existing is not obj:
                    raise ValueError(
                        f"duplicate {self.kind} name {name!r}: already registered by "
                        f"{_qualname(existing)}, cannot register {_qualname(obj)}"
                    )
                if isinstance(obj, type):
                    # The public name lives on the class itself, so an instance knows its name.
                    obj.name = name  # type: ignore[attr-defined]
                self._items[name] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove a plug-in (tests use this to clean up temporary registrations)."""
        with self._lock:
            self._items.pop(name, None)

    # -- lookup ---------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded or self._loading:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                if self._builtin_module:
                    importlib.import_module(self._builtin_module)
                if self._group:
                    for ep in entry_points(group=self._group):
                        if ep.name in self._items:
                            continue
                        try:
                            obj = ep.load()
                        except Exception as exc:  # a broken third-party plug-in must not break the CLI
                            self.broken[ep.name] = f"entry point {ep.value!r} failed to load: {exc}"
                            continue
                        if getattr(obj, "name", None) == ep.name and self._items.get(ep.name) is obj:
                            continue
                        self.register(ep.name)(obj)
                self._loaded = True
            finally:
                self._loading = False

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            hint = f" ({self.broken[name]})" if name in self.broken else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        self._ensure_loaded()
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


METHODS: Registry = Registry("method", "benchmark.methods", "partbench.methods")
DATASETS: Registry = Registry("dataset", "benchmark.datasets", "partbench.datasets")
METRICS: Registry = Registry("metric", "benchmark.metrics", "partbench.metrics")
# Speed benchmarks (``benchmark bench NAME``): functions ``fn(**options) -> str`` printing nothing
# themselves and returning the report text; registered in the ``bench.py`` module of the package whose code
# they measure, found by :mod:`benchmark.benches` (the convention is documented there).
BENCHES: Registry = Registry("benchmark", "benchmark.benches", "partbench.benches")

register_method = METHODS.register
register_dataset = DATASETS.register
register_metric = METRICS.register
register_bench = BENCHES.register
#: The checks ``benchmark bench NAME`` runs on a speed benchmark's options before it starts (e.g. a memory
#: estimate refusing a size the machine cannot hold), declared with :func:`register_bench_check` beside the
#: benchmark: ``check(**options)`` raises a UserError or returns None.
BENCH_CHECKS: dict[str, Callable[..., None]] = {}


def register_bench_check(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Declare ``check`` as the options check of the speed benchmark ``name`` (one per benchmark)."""

    def decorator(check: Callable[..., None]) -> Callable[..., None]:
        if name in BENCH_CHECKS and BENCH_CHECKS[name] is not check:
            raise ValueError(f"speed benchmark {name!r} has two options checks")
        BENCH_CHECKS[name] = check
        return check

    return decorator


# Foreground/background mask models (``benchmark train -m fgbg``, ``--masks model:CKPT``): trainable
# segmenters that are *not* part-discovery methods, so they live apart from METHODS (run/demo/contract
# tests never see them).
MASK_MODELS: Registry = Registry("mask model", "benchmark.methods.fgbg", "partbench.mask_models")
register_mask_model = MASK_MODELS.register
