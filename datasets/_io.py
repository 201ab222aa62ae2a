"""Reading the files of the real datasets, with one clear :class:`UserError` per bad file.

* :func:`read_table` parses whitespace-separated annotation files (CUB ``*.txt``) with pandas' C parser
  (fast, CRLF-tolerant). Only when that fails -- or the values have the wrong type -- does
  :func:`scan_table` re-read the file line by line to name the exact line; ``data check`` calls
  :func:`scan_table` directly to list *every* bad line.
* :func:`read_rgb` / :func:`read_gray` decode an image fully (a truncated JPEG is an error, never a
  silently grey bottom half) and :func:`image_size` reads only the header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.core.errors import UserError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data tree (``line`` is 1-based, 0 when not about a line)."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.path}, line {self.line}" if self.line else f"{self.path}"
        return f"{where}: {self.message}"


def _parse(token: str, kind: type) -> bool:
    try:
        kind(token)
    except ValueError:
        return False
    return True


def scan_table(path: Path, kinds: Sequence[type], *, limit: int | None = None) -> list[Problem]:
    """Every line of ``path`` that does not have ``len(kinds)`` fields of the given types (slow path)."""
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        return [Problem(path, 0, "file is missing")]
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(path, 0, f"cannot be read ({exc})")]
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue  # blank lines are skipped by the fast path too
        if len(fields) != len(kinds):
            problems.append(Problem(path, number, f"expected {len(kinds)} fields, found {len(fields)}: {line.strip()!r}"))
        else:
            bad = [f"{token!r} is not {'an integer' if kind is int else 'a number'}"
                   for token, kind in zip(fields, kinds) if kind is not str and not _parse(token, kind)]
            if bad:
                problems.append(Problem(path, number, "; ".join(bad)))
        if limit is not None and len(problems) >= limit:
            break
    return problems


def read_table(path: Path, kinds: Sequence[type], *, fix: str = "") -> list[np.ndarray]:
    """The columns of a whitespace-separated file (``int`` -> int64, ``float`` -> float64, ``str`` ->
    object). Raises one :class:`UserError` naming the file, the first bad line and ``fix``."""
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{path} is missing. {fix}".strip())
    dtypes = {i: (np.int64 if k is int else np.float64 if k is float else object) for i, k in enumerate(kinds)}
    try:
        frame = pd.read_csv(path, sep=r"\s+", header=None, dtype=dtypes, engine="c", comment=None,
                            skip_blank_lines=True, names=list(range(len(kinds))), index_col=False)
        ok = not frame.isna().to_numpy().any()
    except (ValueError, TypeError, pd.errors.ParserError, UnicodeDecodeError):
        ok = False
    if ok:
        return [frame[i].to_numpy() for i in range(len(kinds))]
    problems = scan_table(path, kinds, limit=1) or [Problem(path, 0, "could not be parsed")]
    raise UserError(f"{problems[0]}. {fix}".strip())


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header (no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise UserError(f"image {path} is missing; re-extract the dataset archive") from None
    except OSError as exc:
        raise UserError(f"image {path} cannot be read ({exc}); re-extract or re-download it") from None


def _decode(path: Path, mode: str, what: str) -> np.ndarray:
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone switched PIL to padding truncated files with grey
        raise UserError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; partbench refuses to evaluate on "
                        "silently padded images: unset it")
    try:
        with Image.open(path) as im:
            im.load()
            if mode == "RGB" and im.mode != "RGB":
                im = im.convert("RGB")
            elif mode == "L" and im.mode not in ("L", "I;16", "I", "1"):
                im = im.convert("L")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise UserError(f"{what} {path} is missing; re-extract the dataset (or fix the path)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{what} {path} is unreadable ({exc}); it is truncated or corrupt: re-extract or "
                        f"re-download it") from None
    if mode == "L" and arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


def read_rgb(path: Path, what: str = "image") -> np.ndarray:
    """``(H, W, 3)`` uint8, fully decoded."""
    return _decode(path, "RGB", what)


def read_gray(path: Path, what: str = "mask") -> np.ndarray:
    """``(H, W)`` integer array with the file's own codes (uint8, or uint16/int32 for 16-bit PNGs)."""
    return _decode(path, "L", what)


def read_palette_png(path: Path, what: str = "label map") -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a colour-coded label PNG."""
    return _decode(path, "RGB", what)


def first_existing(candidates: Sequence[Path], what: str, fix: str) -> Path:
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(f"{what} {candidates[0]} is missing. {fix}".strip())
