"""Foreground mask folders: predict them with a mask model, and score a mask source against the
ground-truth masks.

A mask folder mirrors the dataset's image tree exactly as ``--masks predicted:DIR`` reads it
(:meth:`benchmark.core.dataset.Dataset.mask_file`): one greyscale PNG per image, 0 (background) / 255
(foreground), at the image's original resolution.

* :func:`predict_masks` writes such a folder: images are decoded in DataLoader workers, resized to the
  model's input side, predicted in batches on the device; each mask is upsampled to its image's size on the
  device and written atomically, so a killed run leaves only complete files and a rerun skips them. The
  computed mask kinds of ``--masks`` (``model:CKPT``, ``unsupervised:NAME``, :mod:`benchmark.mask_sources`)
  call it when a run prepares its masks; :func:`prepared` is that step for any source.
* :func:`score_masks` compares a mask source with the ground-truth masks in the dataset's full view
  (:class:`benchmark.metrics.mask_quality.MaskScore`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from benchmark.core.atomic import atomic_write_bytes
from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, MaskSource

if TYPE_CHECKING:
    from benchmark.metrics.mask_quality import MaskScore


# --------------------------------------------------------------------------------------------------
# predictors
# --------------------------------------------------------------------------------------------------
class Predictor:
    """What :func:`predict_masks` needs: the input side, coarse fg logits of a batch, an identity."""

    input_size: int
    identity: str

    def to(self, device) -> "Predictor":
        return self

    def coarse(self, images01: torch.Tensor) -> torch.Tensor:  # (B, 1, h, w), > 0 = foreground
        raise NotImplementedError

    @staticmethod
    def upsample(coarse: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[:, 0] > 0


# --------------------------------------------------------------------------------------------------
# writing a folder
# --------------------------------------------------------------------------------------------------
class _Images(torch.utils.data.Dataset):
    """The not-yet-written images of a dataset: (image at the model's input side, original (H, W), file)."""

    def __init__(self, dataset, indices: list[int], files: list[str], size: int):
        self.dataset, self.indices, self.files, self.size = dataset, indices, files, size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image = self.dataset.source_image(self.indices[i])
        h, w = image.shape[-2:]
        if (h, w) != (self.size, self.size):
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", align_corners=False,
                                  antialias=True)[0].clamp_(0, 1)
        return image, (int(h), int(w)), self.files[i]


def _collate(items):
    images, sizes, files = zip(*items)
    return torch.stack(images), list(sizes), list(files)


def png_bytes(mask: torch.Tensor) -> bytes:
    """A (H, W) boolean mask as a 0/255 8-bit greyscale PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(mask.to(torch.uint8).mul_(255).numpy(), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class PredictSummary:
    written: int
    skipped: int  # already there (a rerun after a kill)
    images: int


def pending_files(dataset, out_dir: Path) -> tuple[list[int], list[str], int]:
    """(sample indices, their mask files) still to write -- one sample per image -- and the image count."""
    seen: set[str] = set()
    indices, files = [], []
    for index in range(len(dataset)):
        rel = dataset.mask_file(index)
        if rel in seen:
            continue
        seen.add(rel)
        if not (out_dir / rel).is_file():
            indices.append(index)
            files.append(rel)
    return indices, files, len(seen)


def predict_masks(predictor, dataset, out_dir: str | Path, *, batch_size: int = 16, device: str = "cpu",
                  num_workers: int = 0, progress: bool = False, batched: bool = True,
                  on_file: Callable[[Path], None] | None = None) -> PredictSummary:
    """Write the mask of every image of ``dataset`` not yet in ``out_dir`` (see the module docstring).
    ``batched=False`` predicts image by image (the baseline of ``benchmark bench masks-predict``)."""
    out_dir = Path(out_dir)
    indices, files, images = pending_files(dataset, out_dir)
    if not indices:
        return PredictSummary(0, images, images)
    predictor.to(device)
    loader = DataLoader(_Images(dataset, indices, files, predictor.input_size),
                        batch_size=batch_size if batched else 1, collate_fn=_collate, num_workers=num_workers,
                        pin_memory=torch.device(device).type == "cuda")
    iterator: Iterable = loader
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), desc=f"masks {dataset.name}/{dataset.split}", unit="image", leave=False)
    written = 0
    try:
        for images01, sizes, rels in iterator:
            coarse = predictor.coarse(images01.to(device, non_blocking=True))
            # One upsampling per distinct original size (one call for a dataset of equal sizes).
            groups: dict[tuple[int, int], list[int]] = {}
            for i, size in enumerate(sizes):
                groups.setdefault(size, []).append(i)
            masks: list[Any] = [None] * len(sizes)
            for size, members in groups.items():
                upsampled = predictor.upsample(coarse[members], size).cpu()
                for j, i in enumerate(members):
                    masks[i] = upsampled[j]
            for rel, mask in zip(rels, masks):
                path = out_dir / rel
                atomic_write_bytes(path, png_bytes(mask))
                written += 1
                if on_file is not None:
                    on_file(path)
            if bar is not None:
                bar.update(len(rels))
    finally:
        if bar is not None:
            bar.close()
    return PredictSummary(written, images - len(indices), images)


def prepared(source: "str | MaskSource", views: Sequence[Any], **kwargs: Any) -> MaskSource:
    """``source`` parsed, and prepared for ``views`` when its kind computes its masks (else as parsed)."""
    source = MaskSource.parse(source)
    return source.prepare(views, **kwargs) if source.needs_preparation else source


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------
def score_masks(dataset_name: str, source: str, *, data_root=None, split: str = "test",
                options: dict[str, Any] | None = None, protocol: str = DEFAULT_PROTOCOL, batch_size: int = 16,
                device: str = "cpu", progress: bool = False, num_workers: int = 0) -> tuple["MaskScore", Any]:
    """Score the masks of ``source`` (``predicted:DIR``) against the GT masks in the dataset's full view."""
    from benchmark.metrics.mask_quality import MaskScore
    from benchmark.runner import build_dataset

    first = build_dataset(dataset_name, data_root=data_root, split=split, view="fg", protocol=protocol,
                          masks="gt", options=options)
    view = first.full_view
    truth = build_dataset(dataset_name, data_root=data_root, split=split, view=view, protocol=protocol,
                          masks="gt", options=options)
    predicted = build_dataset(dataset_name, data_root=data_root, split=split, view=view, protocol=protocol,
                              masks=source, options=options)
    score = MaskScore()
    batches = zip(truth.batches(batch_size, device=device, num_workers=num_workers,
                                progress=progress and f"score {dataset_name}/{split}"),
                  predicted.batches(batch_size, device=device, num_workers=num_workers))
    for gt_batch, pred_batch in batches:
        if gt_batch.masks is None:
            raise UserError(f"dataset {dataset_name!r} has no ground-truth masks in its {view} view to score against")
        score.update(gt_batch.masks, pred_batch.masks)
    return score, truth
