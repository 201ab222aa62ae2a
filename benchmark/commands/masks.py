"""``benchmark masks predict|score``: make foreground mask folders with a trained fg/bg model (or a
training-free source) and score mask folders against the ground truth (see :mod:`benchmark.maskgen`)."""

from __future__ import annotations

from pathlib import Path

import click

from benchmark import options as opt
from benchmark.core.errors import UserError
from benchmark.core.protocol import MaskSource, is_mask_folder

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
    f = opt.dataset_option()(f)
    f = opt.data_root_option()(f)
    f = opt.split_option("Split whose images are used.")(f)
    f = opt.dataset_options_option("Dataset option, e.g. -o category=car. Repeatable.")(f)
    f = opt.category_option()(f)
    f = opt.device_option()(f)
    f = opt.eval_batch_size_option()(f)
    f = opt.num_workers_option(0, "DataLoader worker processes (image decoding).")(f)
    f = opt.quiet_option()(f)
    return f


def _inputs(data_root, options, category) -> dict:
    """The dataset options (``-o`` and ``--category``); a missing ``--data-root`` is named first."""
    _, opts = opt.command_line_inputs((), options, category=category)
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    return opts


@masks_group.command("predict", context_settings=CONTEXT)
@click.option("--checkpoint", default=None, type=click.Path(dir_okay=False),
              help="model.pt of `benchmark train -m fgbg`.")
@click.option("--source", default=None, metavar="unsupervised:NAME",
              help="A training-free source instead of a checkpoint (e.g. unsupervised:spectral).")
@opt.out_option(None, "Folder the masks are written to (mirrors the image tree).", required=True)
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
    from benchmark.mask_sources import ModelMasks, UnsupervisedMasks
    from benchmark.tasks import PredictMasksConfig, predict_masks

    if (checkpoint is None) == (source is None):
        raise UserError("give exactly one of --checkpoint CKPT (a trained fg/bg model) or --source unsupervised:NAME")
    generated = MaskSource.parse(ModelMasks.spell(checkpoint) if checkpoint is not None else source)
    if source is not None and not isinstance(generated, UnsupervisedMasks):
        raise UserError(f"--source {source!r}: only unsupervised:NAME sources; pass a trained model with --checkpoint")
    opts = _inputs(data_root, options, category)
    result = predict_masks(PredictMasksConfig(
        source=generated.spec, dataset=dataset, out_dir=out_dir, data_root=data_root, split=split, options=opts,
        device=device, batch_size=eval_batch_size, num_workers=num_workers, progress=not quiet))
    click.echo(f"{result.written} mask(s) written, {result.skipped} already there ({result.images} images of "
               f"{dataset}/{split}) in {result.wall_s:.1f}s -> {result.out_dir}")
    click.echo(f"use: --masks predicted:{result.out_dir}")


@masks_group.command("score", context_settings=CONTEXT)
@opt.masks_option("The masks to score.", accepts=is_mask_folder, required=True, dest="source")
@opt.protocol_option("How masks are resized and thresholded (see docs/protocol.md).")
@opt.out_option("runs", "Where the result CSV goes (runs/<dataset>/masks/...).")
@opt.cache_dir_option("Cache of generated masks (model:/unsupervised:; default $PARTBENCH_CACHE).")
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
    from benchmark.tasks import ScoreMasksConfig, score_masks

    result = score_masks(ScoreMasksConfig(
        masks=source, dataset=dataset, data_root=data_root, split=split, options=_inputs(data_root, options, category),
        protocol=protocol, out_dir=out_dir, cache_dir=cache_dir, device=device, batch_size=eval_batch_size,
        num_workers=num_workers, progress=not quiet))
    for name, why in result.undefined.items():
        click.echo(f"warning: {name} is undefined and not written: {why}", err=True)
    click.echo(f"{result.spec} on {dataset}/{split} ({result.images} images, {result.view} view): "
               + "  ".join(f"{k}={100 * v:.2f}" for k, v in result.values.items()))
    click.echo(f"  -> {result.path}")


commands = [masks_group]
