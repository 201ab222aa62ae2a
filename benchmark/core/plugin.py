"""What every plug-in class (method, dataset, metric) shares: its one-line description and availability."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import ClassVar, Iterable


class Plugin:
    name: ClassVar[str] = "?"  # set by the registry decorator

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


def import_submodules(package_name: str, path: Iterable[str]) -> None:
    """Import every non-underscore module and subpackage of a package, so that their decorators register
    them (discovery instead of a hand-kept list: a new plug-in file is picked up without editing one)."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
