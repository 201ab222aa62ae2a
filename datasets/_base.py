"""What the three real datasets share: problem collection (raise the first, or list them all for
``benchmark data check``), file checks, mask post-processing per protocol, cached header sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from benchmark.core.dataset import Dataset
from benchmark.core.errors import UserError

from benchmark.core.protocol import DEFAULT_PROTOCOL, binarise

from ._io import Problem, image_size, read_gray, read_rgb
from ._views import pil_resize


class Reporter:
    """Collects :class:`Problem` s (``data check``) or raises the first as a :class:`UserError` (loading)."""

    def __init__(self, collect: bool = False, fix: str = ""):
        self.collect = collect
        self.fix = fix
        self.problems: list[Problem] = []

    def __call__(self, path: Path, line: int, message: str) -> None:
        problem = Problem(Path(path), line, message)
        if not self.collect:
            raise UserError(f"{problem}. {self.fix}".strip())
        self.problems.append(problem)


class RealDataset(Dataset):
    """Base of the file-backed datasets. Subclasses fill ``self._counts`` (what the index kept and
    skipped, shown by :meth:`summary`) and implement :meth:`files` (what ``data check`` opens)."""

    def __init__(self, root=None, *, split="test", view="fg", protocol=DEFAULT_PROTOCOL, masks=None):
        super().__init__(root, split=split, view=view, protocol=protocol, masks=masks)
        self._counts: dict[str, int] = {}
        self._sizes: dict[int, tuple[int, int]] = {}

    # -- summary and checks -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts of the index: samples kept and everything skipped, with the reason in the key."""
        return {"dataset": self.name, "split": self.split, "samples": len(self), **self._counts}

    def files(self, index: int) -> Iterator[tuple[Path, str]]:
        """``(path, kind)`` of the files sample ``index`` needs: kind ``"rgb"`` (the image, first),
        ``"gray"`` (a mask) or ``"labels"`` (a label map, checked with :meth:`_check_labels`)."""
        raise NotImplementedError

    def check_files(self, *, deep: bool = True, progress: bool = False) -> list[Problem]:
        """Every missing or unreadable file (``deep``: fully decoded, so truncated files are found;
        otherwise existence and header only) and every mask whose size differs from its image."""
        problems: list[Problem] = []
        indices: Any = range(len(self))
        if progress:
            from tqdm.auto import tqdm

            indices = tqdm(indices, desc=f"{self.name}/{self.split}: files", unit="sample", leave=False)
        seen: set[Path] = set()
        for i in indices:
            image_hw = None
            for path, kind in self.files(i):
                if path in seen and kind == "rgb":
                    continue
                seen.add(path)
                try:
                    if deep:
                        if kind == "rgb":
                            array = read_rgb(path)
                        elif kind == "labels":
                            array = self._check_labels(path)
                        else:
                            array = read_gray(path)
                        hw = tuple(array.shape[:2])
                    else:
                        if not path.is_file():
                            raise UserError(f"{path} is missing")
                        w, h = image_size(path)
                        hw = (h, w)
                except UserError as exc:
                    problems.append(Problem(path, 0, str(exc).replace(f"{path} ", "").strip(),
                                            kind="mask" if kind == "gray" else ""))
                    continue
                if kind == "rgb":
                    image_hw = hw
                elif image_hw is not None and hw != image_hw:
                    problems.append(Problem(path, 0, f"mask is {hw[1]}x{hw[0]} (WxH) but its image is "
                                                     f"{image_hw[1]}x{image_hw[0]}", kind="mask" if kind == "gray" else ""))
        return problems

    def _check_labels(self, path: Path) -> np.ndarray:
        """Decode a label file for ``data check`` (raise :class:`UserError` if it is invalid)."""
        return read_gray(path)

    # -- shared helpers -------------------------------------------------------------------------------
    @property
    def mask_folder(self) -> Path | None:
        """The folder of mask files to read (``--masks predicted:DIR``), or ``None``."""
        return self.masks.folder if self.masks.dataset_reads == "folder" else None

    def _header_size(self, index: int, path: Path) -> tuple[int, int]:
        """``(H, W)`` of an original image from its header, cached (for :meth:`image_size`)."""
        hw = self._sizes.get(index)
        if hw is None:
            w, h = image_size(path)
            hw = self._sizes[index] = (h, w)
        return hw

    def _mask_view(self, raw: np.ndarray | None, size_hw: tuple[int, int]) -> torch.Tensor | None:
        """A mask at the evaluation resolution of a notebook view: binarised, then nearest (``corrected``);
        or the raw codes resized bilinearly (PIL, as the notebooks' ``Resize``), never thresholded."""
        if raw is None:
            return None
        if not self.protocol.rules.binarise_masks:
            codes = raw if raw.dtype == np.uint8 else np.clip(raw, 0, 255).astype(np.uint8)
            return torch.from_numpy(pil_resize(codes, size_hw, self.protocol.rules.mask_resize).astype(np.float32))
        binary = (binarise(raw) * 255).astype(np.uint8)
        return torch.from_numpy((pil_resize(binary, size_hw, "nearest") > 0).astype(np.float32))
