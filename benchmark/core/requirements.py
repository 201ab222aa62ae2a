"""Weights files a plug-in needs before it can run offline, declared as data.

A plug-in (method or mask model) answers ``weights_needed(params) -> list[WeightsFile]``: one entry per file
its parameters make it read (a backbone's published weights in the torch or timm cache, a ``-p weights=PATH``
file, ``--init caffe:PATH`` ...), each with the places the loader looks and how to get it. Every command asks
this one declaration -- ``benchmark list`` ("needs weights"), ``run``/``sweep``/``train`` (before any data is
read) and each step of ``benchmark reproduce`` (its "blocked" reason) -- so they cannot disagree. The catalogue
of published weights (torchvision, DINO, DINOv2, the DeepLab caffe file) lives in
:mod:`benchmark.methods.pretrained`; this module holds only the type, so that the plug-in contract in
``core`` can name it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: Set to 1 to let the loaders download published weights that are missing (never the default).
ALLOW_DOWNLOAD_ENV = "PARTBENCH_ALLOW_DOWNLOAD"


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "") not in ("", "0")


@dataclass(frozen=True)
class WeightsFile:
    """One weights file: ``what`` it is, the ``paths`` the loader reads (any one will do; the first is where
    to put it), ``fix`` (how to get it, commands included) and whether the loader may download it when
    :data:`ALLOW_DOWNLOAD_ENV` is set."""

    what: str
    paths: tuple[Path, ...]
    fix: str
    downloadable: bool = False

    def found(self) -> Path | None:
        return next((path for path in self.paths if path.is_file()), None)

    def missing(self) -> str | None:
        """``None`` when the loader will find (or may download) the file; else one sentence: what is missing,
        where it was looked for, and the fix."""
        if self.found() is not None or (self.downloadable and downloads_allowed()):
            return None
        return f"{self.what} missing ({' or '.join(str(p) for p in self.paths)}): {self.fix}"


def describe_missing(needed: Iterable[WeightsFile], *, alternative: str = "", brief: bool = False) -> str | None:
    """The missing files of ``needed`` as one sentence (``alternative`` appended, e.g. "or pass
    --checkpoint"), or ``None`` when everything is here. ``brief``: only what each file is and its name (the
    fixes left out, as ``benchmark list`` shows them without ``--verbose``)."""
    needed = list(needed)
    missing = [text for text in (need.missing() for need in needed) if text]
    if not missing:
        return None
    if brief:
        return "; ".join(_brief(need) for need in needed if need.missing())
    return "; ".join(missing) + (f"; {alternative}" if alternative else "")


def _brief(need: WeightsFile) -> str:
    """What the file is and its name, unless ``what`` names it already (a Hugging Face cache entry
    ``models--org--name`` of the hub id ``org/name``)."""
    name = need.paths[0].name
    hub_id = name.removeprefix("models--").replace("--", "/")
    return need.what if hub_id in need.what else f"{need.what} ({name})"
