"""Mask jobs: predict a mask folder with a mask model or a training-free source, and score a mask source
against the ground-truth masks (``benchmark masks predict|score`` and the plans' ``masks-*`` steps)."""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, is_mask_folder, mask_kinds_text


@dataclass(frozen=True)
class PredictMasksConfig:
    """Write one 0/255 PNG per image of ``split`` into ``out_dir`` (the layout ``--masks predicted:DIR``
    reads) with ``source``: ``model:CKPT`` (a trained fg/bg model) or ``unsupervised:NAME``."""

    source: str
    dataset: str
    out_dir: str | Path
    data_root: str | Path | None = None
    split: str = "test"
    options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    batch_size: int = 16
    num_workers: int = 0
    progress: bool = False


@dataclass
class PredictMasksResult:
    out_dir: Path
    written: int
    skipped: int  # already there (a rerun after a kill)
    images: int
    wall_s: float


def predict_masks(config: PredictMasksConfig) -> PredictMasksResult:
    """Predict the masks of the split's images not yet in the folder (a killed job resumes)."""
    from benchmark.core.atomic import output_dir
    from benchmark.core.registry import DATASETS
    from benchmark.factories import build_dataset, build_mask_source, resolve_device
    from benchmark.mask_sources import GeneratedMasks
    from benchmark.maskgen import predict_masks as write_masks

    source = build_mask_source(config.source)
    if not isinstance(source, GeneratedMasks):
        raise UserError(f"{config.source!r}: masks are predicted by a trained model (model:CKPT) or a training-free "
                        f"source (unsupervised:NAME)")
    device = resolve_device(config.device)
    # The one rule of mask preparation: whole images, the dataset's full view, loaded without masks.
    data = build_dataset(config.dataset, data_root=config.data_root, split=config.split,
                         view=DATASETS.get(config.dataset).full_view, masks="none", options=config.options)
    with output_dir(config.out_dir) as out:  # a failed job leaves no empty --out folder
        predictor = source.predictor(device)
        t0 = time.perf_counter()
        summary = write_masks(predictor, data, out, batch_size=config.batch_size, device=device,
                              num_workers=config.num_workers, progress=config.progress)
    return PredictMasksResult(out, summary.written, summary.skipped, summary.images, time.perf_counter() - t0)


@dataclass(frozen=True)
class ScoreMasksConfig:
    """Score ``masks`` (``predicted:DIR``, ``model:CKPT``, ``unsupervised:NAME``) against the GT masks of
    ``split`` in the dataset's full view; rows go to ``<out_dir>/<dataset>/masks/<split>-<key>.csv``."""

    masks: str
    dataset: str
    data_root: str | Path | None = None
    split: str = "test"
    options: dict[str, Any] = field(default_factory=dict)
    protocol: str = DEFAULT_PROTOCOL
    out_dir: str | Path = "runs"
    cache_dir: str | Path | None = None  # generated masks (None: $PARTBENCH_CACHE or ~/.cache/partbench)
    device: str = "auto"
    batch_size: int = 16
    num_workers: int = 0
    progress: bool = False


@dataclass
class ScoreMasksResult:
    values: dict[str, float]
    undefined: dict[str, str]  # metric -> why it has no value (a zero denominator), not written
    rows: list[dict[str, Any]]
    path: Path
    spec: str
    images: int
    view: str


def score_masks(config: ScoreMasksConfig) -> ScoreMasksResult:
    """IoU, precision and recall pooled over every pixel of the split (see :class:`~benchmark.maskgen.MaskScore`).
    A metric without a value is left out (``undefined`` says why); none at all is an error."""
    from benchmark.core.atomic import output_dir
    from benchmark.core.cache import content_key
    from benchmark.factories import build_mask_source, resolve_device
    from benchmark.maskgen import prepare_masks, score_masks as score
    from benchmark.results import build_rows, write_rows

    masks = build_mask_source(config.masks)
    if not is_mask_folder(type(masks)):
        raise UserError(f"--masks {config.masks}: score a mask folder, a model or an unsupervised source; use "
                        f"{mask_kinds_text(accepts=is_mask_folder)}")
    device = resolve_device(config.device)
    with output_dir(config.out_dir):  # a failed job leaves no empty --out folder
        started = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        masks = prepare_masks(masks, config.dataset, [config.split], data_root=config.data_root, options=config.options,
                              device=device, cache_dir=config.cache_dir, batch_size=config.batch_size,
                              num_workers=config.num_workers, progress=config.progress)
        counts, data = score(config.dataset, masks, data_root=config.data_root, split=config.split,
                             options=config.options, protocol=config.protocol, batch_size=config.batch_size,
                             device=device, progress=config.progress, num_workers=config.num_workers)
        values, undefined = counts.compute()
        if not values:
            raise UserError("no mask metric is defined: neither the predicted nor the ground-truth masks have a "
                            "foreground pixel")
        inputs = masks.fingerprint()
        key = content_key({"dataset": config.dataset,
                           "root": str(Path(config.data_root).resolve()) if config.data_root else None,
                           "split": config.split, "options": data.options(), "protocol": config.protocol,
                           "masks": inputs, "what": "masks-score-v1"}, length=16)
        fields = {"method": "masks", "dataset": config.dataset, "split": config.split, "view": data.view,
                  "protocol": config.protocol, "masks": masks.spec, "ground_truth": "masks", "num_parts": "", "seed": 0,
                  "method_params": json.dumps({"source": masks.spec}),
                  "dataset_options": json.dumps(data.options(), sort_keys=True, default=str), "transductive": False,
                  "weights": json.dumps(inputs, sort_keys=True, default=str), "skipped_images": 0, "run_key": key,
                  "landmark_protocol": ""}
        rows = build_rows(fields, [{"metric": name, "value": value, "n": counts.pixels} for name, value in values.items()],
                          device=device, wall=time.perf_counter() - t0, started=started)
        path = Path(config.out_dir) / config.dataset / "masks" / f"{config.split}-{key}.csv"
        write_rows(path, rows)
    return ScoreMasksResult(values, undefined, rows, path, masks.spec, counts.images, data.view)
