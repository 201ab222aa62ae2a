"""Foreground mask folders: predict them with a mask model, the ``model:CKPT`` / ``unsupervised:NAME`` mask
kinds of the evaluation protocol, and scoring against ground-truth masks.

A mask folder mirrors the dataset's image tree exactly as ``--masks predicted:DIR`` reads it
(:meth:`benchmark.core.dataset.Dataset.mask_file`): one greyscale PNG per image, 0 (background) / 255
(foreground), at the image's original resolution.

* :func:`predict_masks` writes such a folder: images are decoded in DataLoader workers, resized to the
  model's input side, predicted in batches on the device; each mask is upsampled to its image's size on the
  device and written atomically, so a killed run leaves only complete files and a rerun skips them.
* :class:`ModelMasks` (``--masks model:CKPT``) and :class:`UnsupervisedMasks` (``--masks unsupervised:NAME``)
  are :class:`~benchmark.core.protocol.MaskSource` kinds (registered here; the protocol's parser loads this
  module by name). Their :meth:`~GeneratedMasks.prepare` writes the masks of the run's views once per run
  into ``<cache>/masks/<key>`` (the key digests the checkpoint's content or the unsupervised source's name
  and settings, the dataset, its root and options, and the prediction code) and returns a
  :class:`PreparedMasks` source that reads the folder like ``predicted:DIR``.
* :func:`score_masks` compares a mask source with the ground-truth masks in the dataset's full view.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from benchmark.core.atomic import atomic_write_bytes, output_dir
from benchmark.core.cache import content_key
from benchmark.core.errors import UserError
from benchmark.core.protocol import FolderMasks, MaskSource, register_mask_kind

PREDICT_VERSION = "masks-predict-v1"  # bump when a change alters the written masks (invalidates caches)


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
# model:CKPT and unsupervised:NAME: mask kinds of the evaluation protocol
# --------------------------------------------------------------------------------------------------
class GeneratedMasks(MaskSource):
    """A mask kind whose masks are predicted (by a trained model or a training-free source) into a cache
    folder once per run (:meth:`prepare`), then read exactly like ``predicted:DIR``.

    The folder is ``<cache>/masks/<key>``; the key digests :meth:`fingerprint` (the checkpoint's content or
    the source's name and settings, and the prediction code), the dataset, its root and options -- not the
    split or view: the folder mirrors the whole image tree and every split adds its own files."""

    dataset_reads = "folder"
    needs_preparation = True

    def predictor(self, device: str = "cpu") -> Predictor:
        raise NotImplementedError

    def identity(self) -> Any:
        raise NotImplementedError

    def fingerprint(self) -> Any:
        return {"kind": self.kind, "source": self.identity(), "code": PREDICT_VERSION}

    @property
    def folder(self) -> Path:
        raise UserError(f"--masks {self.spec}: the masks are predicted when a run starts; load the dataset "
                        f"through `benchmark run`/`export`/`train` (or `benchmark masks predict` them first and "
                        f"pass --masks predicted:DIR)")

    def cache_folder(self, dataset, cache_dir: str | Path | None) -> Path:
        if cache_dir is None:
            import os

            cache_dir = os.environ.get("PARTBENCH_CACHE", str(Path.home() / ".cache" / "partbench"))
        key = content_key({"source": self.fingerprint(), "dataset": dataset.name,
                           "root": str(Path(dataset.root).resolve()) if dataset.root else None,
                           "options": dataset.options()})
        return Path(cache_dir) / "masks" / key

    def prepare(self, views: Sequence[Any], *, device: str, cache_dir: Any = None, batch_size: int = 16,
                progress: bool = False, num_workers: int = 0) -> MaskSource:
        """Predict the masks of every image of ``views`` not yet in the cache folder; the source that reads
        it (its :attr:`spec` and :meth:`fingerprint` stay this kind's, so rows and run keys name the model)."""
        views = list(views)
        if not views:
            raise ValueError("prepare needs at least one view")
        folder = self.cache_folder(views[0], cache_dir)
        with output_dir(folder, "mask cache folder"):  # a model that fails to load leaves no empty cache folder
            return PreparedMasks(self, folder).prepare(views, device=device, batch_size=batch_size,
                                                       progress=progress, num_workers=num_workers)


class PreparedMasks(FolderMasks):
    """The cache folder of a :class:`GeneratedMasks` source, read like ``predicted:DIR`` but named (row,
    run key) by the source that wrote it. Preparing it again for more views (e.g. the training split of a
    method that trains within the run) adds their masks to the same folder."""

    needs_preparation = True

    def __init__(self, origin: GeneratedMasks, folder: Path):
        super().__init__(str(folder))
        self.origin = origin

    def prepare(self, views: Sequence[Any], *, device: str = "cpu", cache_dir: Any = None, batch_size: int = 16,
                progress: bool = False, num_workers: int = 0) -> MaskSource:
        predictor = None
        for data in views:
            if not pending_files(data, self.folder)[0]:
                continue
            predictor = predictor or self.origin.predictor(device)
            predict_masks(predictor, data, self.folder, batch_size=batch_size, device=device,
                          num_workers=num_workers, progress=progress)
        return self

    @property
    def spec(self) -> str:
        return self.origin.spec

    @property
    def trains_methods(self) -> bool:  # type: ignore[override]
        return self.origin.trains_methods

    def fingerprint(self) -> Any:
        return self.origin.fingerprint()


@register_mask_kind("model")
class ModelMasks(GeneratedMasks):
    """Masks predicted by a trained fg/bg model (``model.pt`` of ``benchmark train -m fgbg``)."""

    argument = "CKPT"

    def __init__(self, argument: str | None = None):
        path = Path(str(argument)).expanduser()
        if not path.is_file():
            raise UserError(f"--masks model:{argument}: {path} is not a file; pass the model.pt written by "
                            f"`benchmark train -m fgbg`")
        super().__init__(str(path.resolve()))

    def identity(self) -> Any:
        from benchmark.core.cache import file_digest

        return file_digest(self.value)

    def predictor(self, device: str = "cpu") -> Predictor:
        from benchmark.methods.fgbg import load_mask_model

        return load_mask_model(Path(self.value)).to(device)


@register_mask_kind("unsupervised")
class UnsupervisedMasks(GeneratedMasks):
    """Masks of a training-free source (:data:`benchmark.methods.saliency.UNSUPERVISED`)."""

    argument = "NAME"
    trains_methods = True  # the unsupervised setting trains and evaluates with the same masks

    def __init__(self, argument: str | None = None):
        from benchmark.methods.saliency import UNSUPERVISED

        name = str(argument)
        if name not in UNSUPERVISED:
            raise UserError(f"--masks unsupervised:{name}: unknown unsupervised mask source {name!r}; known: "
                            f"{', '.join(sorted(UNSUPERVISED))}")
        super().__init__(name)

    def identity(self) -> Any:
        from benchmark.methods.saliency import unsupervised_source

        return unsupervised_source(self.value).identity

    def predictor(self, device: str = "cpu") -> Predictor:
        from benchmark.methods.saliency import unsupervised_source

        return unsupervised_source(self.value).to(device)


def prepared(source: "str | MaskSource", views: Sequence[Any], **kwargs: Any) -> MaskSource:
    """``source`` parsed, and prepared for ``views`` when its kind computes its masks (else as parsed)."""
    source = MaskSource.parse(source)
    return source.prepare(views, **kwargs) if source.needs_preparation else source


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------
class MaskScore:
    """Streaming pixel counts of a predicted foreground against the ground truth: IoU, precision, recall
    pooled over every pixel of the split (exact integer counts, no per-image averaging)."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.pixels = self.images = 0

    def update(self, predicted: torch.Tensor, truth: torch.Tensor) -> None:
        predicted, truth = predicted > 0.5, truth > 0.5
        counts = torch.stack([(predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum()])
        tp, fp, fn = (int(v) for v in counts.tolist())
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.pixels += predicted.numel()
        self.images += predicted.shape[0] if predicted.ndim == 3 else 1

    def compute(self) -> tuple[dict[str, float], dict[str, str]]:
        """(values, why each undefined metric is undefined): a ratio with a zero denominator has no value and
        is reported as such, never as 0 or 1."""
        if self.pixels == 0:
            raise UserError("no pixels to score: the split has no images with ground-truth masks")
        values, undefined = {}, {}
        for name, num, den, why in (
                ("mask_iou", self.tp, self.tp + self.fp + self.fn,
                 "neither the predicted nor the ground-truth masks have a foreground pixel"),
                ("mask_precision", self.tp, self.tp + self.fp, "the predicted masks have no foreground pixel"),
                ("mask_recall", self.tp, self.tp + self.fn, "the ground-truth masks have no foreground pixel")):
            if den == 0:
                undefined[name] = why
            else:
                values[name] = num / den
        return values, undefined


def score_masks(dataset_name: str, source: str, *, data_root=None, split: str = "test",
                options: dict[str, Any] | None = None, protocol: str = "corrected", batch_size: int = 16,
                device: str = "cpu", progress: bool = False, num_workers: int = 0) -> tuple[MaskScore, Any]:
    """Score the masks of ``source`` (``predicted:DIR``) against the GT masks in the dataset's full view."""
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
        score.update(pred_batch.masks, gt_batch.masks)
    return score, truth
