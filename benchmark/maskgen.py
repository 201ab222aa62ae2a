"""Foreground mask folders: predict them with a mask model, and score a mask source against the
ground-truth masks.

A mask folder mirrors the dataset's image tree exactly as ``--masks predicted:DIR`` reads it
(:meth:`benchmark.core.dataset.Dataset.mask_file`): one greyscale PNG per image, 0 (background) / 255
(foreground), at the image's original resolution.

* :func:`predict_masks` writes such a folder: images are decoded in DataLoader workers, resized to the
  model's input side, predicted in batches on the device; each mask is upsampled to its image's size on the
  device and written atomically, so a killed run leaves only complete files and a rerun skips them. The
  computed mask kinds of ``--masks`` (``model:CKPT``, ``unsupervised:NAME``, :mod:`benchmark.mask_sources`)
  call it when a job prepares its masks; :func:`prepare_masks` is that step for every job (which splits,
  which view).
* :func:`score_masks` compares a mask source with the ground-truth masks in the dataset's full view
  (:class:`benchmark.metrics.mask_quality.MaskScore`).
"""

from __future__ import annotations

import io
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

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


# --------------------------------------------------------------------------------------------------
# preparation: the one place every job makes the masks it reads
# --------------------------------------------------------------------------------------------------
def mask_splits(dataset_cls: Any, split: str, metrics: Sequence[str] | None = None, *,
                trains: bool = False) -> list[str]:
    """The splits whose masks a job reads, in order: the evaluation ``split``; the landmark regression's
    fitting split when a landmark metric is asked for (``metrics=None``: every registered metric that
    applies) and the dataset defines a landmark protocol; the training split when ``trains`` (a method
    trains within the job on these masks). Nothing else is checked or prepared: a folder that `masks
    predict --split test` wrote serves full-image NMI/ARI on the test split."""
    from benchmark.core.registry import METRICS

    splits = [split]
    if dataset_cls.landmark_protocol is not None and any(
            METRICS.get(name).kind == "landmarks" for name in (metrics or METRICS.names())):
        splits.append(dataset_cls.landmark_fit_split)
    if trains:
        splits.append("train")
    return list(dict.fromkeys(splits))


def prepare_masks(source: "str | MaskSource", dataset: str, splits: Sequence[str], *, data_root: Any = None,
                  options: dict[str, Any] | None = None, protocol: Any = DEFAULT_PROTOCOL, device: str = "cpu",
                  cache_dir: Any = None, batch_size: int = 16, num_workers: int = 0,
                  progress: bool = False) -> MaskSource:
    """``source`` parsed and, when its kind computes its masks (``model:``, ``unsupervised:``), prepared for
    every image of ``splits``: the source the datasets then read. The one rule of every job (run, export,
    train, masks score, reproduce): masks are made from the dataset's **full view** of each split under
    ``protocol`` (whole images, the tree a mask folder mirrors) loaded without masks. ``cache_dir=None`` is the kind's
    default cache (``$PARTBENCH_CACHE``); a job without a cache passes a folder of its own
    (:func:`mask_cache`)."""
    from benchmark.core.registry import DATASETS
    from benchmark.factories import build_dataset

    source = MaskSource.parse(source)
    if not source.needs_preparation:
        return source
    view = DATASETS.get(dataset).role_view("full", protocol)  # the whole-image view under that protocol
    images = [build_dataset(dataset, data_root=data_root, split=split, view=view, protocol=protocol, masks="none",
                            options=options) for split in dict.fromkeys(splits)]
    return source.prepare(images, device=device, cache_dir=cache_dir, batch_size=batch_size, progress=progress,
                          num_workers=num_workers)


@contextmanager
def mask_cache(cache_dir: str | Path | None) -> Iterator[Path]:
    """The folder a job caches generated masks in: ``cache_dir``, or for a job run without a cache
    (``run --no-cache``) a temporary folder removed when the job ends, never the home cache."""
    if cache_dir is not None:
        yield Path(cache_dir)
        return
    with tempfile.TemporaryDirectory(prefix="partbench-masks-") as folder:
        yield Path(folder)


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------
def score_masks(dataset_name: str, source: str, *, data_root=None, split: str = "test",
                options: dict[str, Any] | None = None, protocol: str = DEFAULT_PROTOCOL, batch_size: int = 16,
                device: str = "cpu", progress: bool = False, num_workers: int = 0) -> tuple["MaskScore", Any]:
    """Score the masks of ``source`` (``predicted:DIR``) against the GT masks in the dataset's full view."""
    from benchmark.metrics.mask_quality import MaskScore
    from benchmark.factories import build_dataset

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
