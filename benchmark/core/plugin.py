"""What every plug-in class (method, dataset, metric) shares: its one-line description and availability."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import ClassVar, Iterable


@dataclass(frozen=True)
class Range:
    """The values a numeric constructor parameter accepts: ``low <= v <= high`` (``low < v`` when
    ``low_open``; ``None`` = unbounded). Declared in :attr:`Plugin.param_ranges` and checked, with the types,
    for every ``-p``/``-o`` value before the plug-in is built (:func:`benchmark.options.check_ranges`)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def text(self) -> str:
        low = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = None if self.high is None else f"<= {self.high:g}"
        return " and ".join(t for t in (low, high) if t) or "any number"


class Plugin:
    name: ClassVar[str] = "?"  # set by the registry decorator
    #: ``{parameter: Range}``: the accepted values of numeric constructor parameters (a learning rate > 0, an
    #: image side of at most a few thousand pixels); a value outside is one clear error before anything runs.
    param_ranges: ClassVar[dict[str, Range]] = {}

    @classmethod
    def description(cls) -> str:
        """One line for ``benchmark list``: the first paragraph of the class docstring, whole (a sentence
        wrapped over several lines is joined, never cut at the line break)."""
        doc = (inspect.getdoc(cls) or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """``None`` if the plug-in can run here, else why not and how to fix it (a missing optional
        dependency, ...). It then stays registered, is listed as unavailable and is skipped by the demo."""
        return None


#: The module name that holds a package's speed benchmarks; loaded only by ``benchmark bench`` and
#: ``benchmark list`` (see :mod:`benchmark.benches`), never by importing the package.
BENCH_MODULE = "bench"


def import_submodules(package_name: str, path: Iterable[str]) -> None:
    """Import every non-underscore module and subpackage of a package except its ``bench`` module, so that
    their decorators register them (discovery instead of a hand-kept list: a new plug-in file is picked up
    without editing one)."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.startswith("_") and info.name != BENCH_MODULE:
            importlib.import_module(f"{package_name}.{info.name}")
