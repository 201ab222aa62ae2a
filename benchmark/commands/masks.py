"""``benchmark masks predict|score``: make foreground mask folders with a trained fg/bg model (or a
training-free source) and score mask folders against the ground truth (see :mod:`benchmark.maskgen`)."""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

import click

from benchmark import options as opt
from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, PROTOCOL_NAMES

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group("masks", context_settings=CONTEXT)
def masks_group() -> None:
    """Foreground mask folders: predict them, score them.

    \b
    Examples:
      benchmark train -m fgbg -d synthetic --preset tiny --init random --out runs/fgbg-syn
      benchmark masks predict --checkpoint runs/fgbg-syn/model.pt -d synthetic --split test --out masks/syn
      benchmark masks score -d synthetic --masks predicted:masks/syn --split test
      benchmark run -m kmeans -d synthetic -p weights=random --masks predicted:masks/syn
    """


def _dataset_args(f):
    f = click.option("--dataset", "-d", "dataset", required=True, help="Registered dataset name.")(f)
    f = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                     help="Root of the dataset tree (not needed for `synthetic`).")(f)
    f = click.option("--split", default="test", show_default=True, help="Split whose images are used.")(f)
    f = click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
                     help="Dataset option, e.g. -o category=car. Repeatable.")(f)
    f = click.option("--category", default=None, help="Shortcut for -o category=NAME (PASCAL-Part).")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")(f)
    f = opt.eval_batch_size_option()(f)
    f = opt.num_workers_option(0, "DataLoader worker processes (image decoding).")(f)
    f = opt.quiet_option()(f)
    return f


def _inputs(dataset, data_root, options, category):
    from benchmark.runner import parse_params

    opts = parse_params(options, "dataset option")
    if category is not None:
        opts["category"] = category
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    return opts


def _batch_size(value: int) -> int:
    if value < 1:
        raise UserError(f"--batch-size must be >= 1, got {value}")
    return value


@masks_group.command("predict", context_settings=CONTEXT)
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False),
              help="model.pt of `benchmark train -m fgbg`.")
@click.option("--source", default=None, metavar="unsupervised:NAME",
              help="A training-free source instead of a checkpoint (e.g. unsupervised:spectral).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder the masks are written to (mirrors the image tree).")
@_dataset_args
def predict_command(checkpoint, source, out_dir, dataset, data_root, split, options, category, device, eval_batch_size,
                    num_workers, quiet):
    """Write one 0/255 PNG mask per image of a split, at the image's original resolution, in exactly the
    layout `--masks predicted:DIR` reads. Files are written atomically and existing ones are skipped, so a
    killed run resumes where it stopped.

    \b
    Examples:
      benchmark masks predict --checkpoint runs/fgbg-cub/model.pt -d cub --data-root /data/CUB_200_2011 \\
          --split test --out masks/cub
      benchmark masks predict --checkpoint runs/fgbg-cub/model.pt -d cub --data-root /data/CUB_200_2011 \\
          --split train --out masks/cub          # the same folder: the landmark fit split
      benchmark masks predict --source unsupervised:spectral -d synthetic --out masks/spectral
    """
    from benchmark.core.atomic import output_dir
    from benchmark.core.protocol import MaskSource
    from benchmark.mask_sources import ModelMasks, UnsupervisedMasks
    from benchmark.maskgen import predict_masks
    from benchmark.runner import build_dataset, resolve_device

    if (checkpoint is None) == (source is None):
        raise UserError("give exactly one of --checkpoint CKPT (a trained fg/bg model) or --source unsupervised:NAME")
    generated = MaskSource.parse(ModelMasks.spell(checkpoint) if checkpoint is not None else source)
    if source is not None and not isinstance(generated, UnsupervisedMasks):
        raise UserError(f"--source {source!r}: only unsupervised:NAME sources; pass a trained model with --checkpoint")
    opts = _inputs(dataset, data_root, options, category)
    device = resolve_device(device)
    data = build_dataset(dataset, data_root=data_root, split=split, view=_full_view(dataset), masks="none", options=opts)
    with output_dir(out_dir) as out:  # a failed command leaves no empty --out folder
        predictor = generated.predictor(device)
        t0 = time.perf_counter()
        summary = predict_masks(predictor, data, out, batch_size=_batch_size(eval_batch_size), device=device,
                                num_workers=num_workers, progress=not quiet)
        click.echo(f"{summary.written} mask(s) written, {summary.skipped} already there ({summary.images} images of "
                   f"{dataset}/{split}) in {time.perf_counter() - t0:.1f}s -> {out}")
        click.echo(f"use: --masks predicted:{out}")


def _full_view(dataset: str) -> str:
    from benchmark.core.registry import DATASETS

    return DATASETS.get(dataset).full_view


@masks_group.command("score", context_settings=CONTEXT)
@click.option("--masks", "source", required=True, metavar="predicted:DIR|model:CKPT|unsupervised:NAME",
              help="The masks to score.")
@click.option("--protocol", type=click.Choice(PROTOCOL_NAMES), default=DEFAULT_PROTOCOL, show_default=True,
              help="How masks are resized and thresholded (see docs/protocol.md).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Where the result CSV goes (runs/<dataset>/masks/...).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Cache of generated masks (model:/unsupervised:; default $PARTBENCH_CACHE).")
@_dataset_args
def score_command(source, protocol, out_dir, cache_dir, dataset, data_root, split, options, category, device,
                  eval_batch_size, num_workers, quiet):
    """IoU, precision and recall of a mask source against the ground-truth masks (pooled over every pixel of
    the split, in the dataset's full view); rows in the results format, so `benchmark report` tables them.

    \b
    Examples:
      benchmark masks score -d synthetic --masks predicted:masks/syn
      benchmark masks score -d cub --data-root /data/CUB_200_2011 --masks predicted:/data/supervisedlabels
      benchmark masks score -d synthetic --masks unsupervised:spectral-random
      benchmark report runs/synthetic/masks
    """
    from benchmark.core.atomic import output_dir
    from benchmark.core.cache import content_key
    from benchmark.core.protocol import MaskSource
    from benchmark.maskgen import prepared, score_masks
    from benchmark.provenance import device_description, git_state, package_versions
    from benchmark.results import RESULT_COLUMNS, write_rows
    from benchmark.runner import build_dataset, resolve_device

    masks = MaskSource.parse(source)
    if masks.dataset_reads != "folder":
        raise UserError(f"--masks {source}: score a mask folder (predicted:DIR), a model (model:CKPT) or an "
                        f"unsupervised source (unsupervised:NAME)")
    opts = _inputs(dataset, data_root, options, category)
    device = resolve_device(device)
    with output_dir(out_dir):  # a failed command leaves no empty --out folder
        started = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        if masks.needs_preparation:
            view = build_dataset(dataset, data_root=data_root, split=split, view=_full_view(dataset), masks="none",
                                 options=opts)
            masks = prepared(masks, [view], device=device, cache_dir=cache_dir, batch_size=_batch_size(eval_batch_size),
                             num_workers=num_workers, progress=not quiet)
        score, data = score_masks(dataset, masks, data_root=data_root, split=split, options=opts, protocol=protocol,
                                  batch_size=_batch_size(eval_batch_size), device=device, progress=not quiet,
                                  num_workers=num_workers)
        values, undefined = score.compute()
        for name, why in undefined.items():
            click.echo(f"warning: {name} is undefined and not written: {why}", err=True)
        if not values:
            raise UserError("no mask metric is defined: neither the predicted nor the ground-truth masks have a "
                            "foreground pixel")
        inputs = masks.fingerprint()
        key = content_key({"dataset": dataset, "root": str(Path(data_root).resolve()) if data_root else None,
                           "split": split, "options": data.options(), "protocol": protocol, "masks": inputs,
                           "what": "masks-score-v1"}, length=16)
        sha, dirty = git_state()
        common = {"method": "masks", "dataset": dataset, "split": split, "view": data.view, "protocol": protocol,
                  "masks": masks.spec, "ground_truth": "masks", "num_parts": "", "seed": 0,
                  "method_params": json.dumps({"source": masks.spec}), "dataset_options": json.dumps(data.options(),
                                                                                                      sort_keys=True, default=str),
                  "transductive": False, "weights": json.dumps(inputs, sort_keys=True, default=str),
                  "skipped_images": 0, "git_sha": sha, "git_dirty": dirty,
                  "versions": json.dumps(package_versions(), sort_keys=True), "device": device_description(device),
                  "wall_time_s": round(time.perf_counter() - t0, 3), "started_at": started.isoformat(timespec="seconds"),
                  "run_key": key, "landmark_protocol": ""}
        rows = [{**common, "metric": name, "value": value, "n": score.pixels} for name, value in values.items()]
        path = Path(out_dir) / dataset / "masks" / f"{split}-{key}.csv"
        write_rows(path, [{c: r.get(c, "") for c in RESULT_COLUMNS} for r in rows])
        click.echo(f"{masks.spec} on {dataset}/{split} ({score.images} images, {data.view} view): "
                   + "  ".join(f"{k}={100 * v:.2f}" for k, v in values.items()))
        click.echo(f"  -> {path}")


commands = [masks_group]
