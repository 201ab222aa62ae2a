"""``benchmark train``: train any registered method that has the training capability on a dataset's
training split, writing checkpoints, a per-step loss log and the final weights to ``--out``.

The capability is part of the method contract (:mod:`benchmark.core.method`, "Optional capability:
training"): ``Method.trainable()`` says whether a class implements ``train(data, *, out_dir, resume,
seed, device)``, and ``Method.train_presets()`` lists its presets. This command names no method: it builds
the training view (``split="train", view="train", masks="gt"``) and the method from the options (each
option sets the method parameter of the same name), and calls ``train``. Launched with
``torchrun --nproc_per_node N -m benchmark train ...`` it trains with DDP (the global batch is split over
the processes; rank 0 writes).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import click

from benchmark import options as opt
from benchmark.core.errors import UserError


def trainable_methods() -> dict[str, type]:
    """The registered methods with the training capability, by name (usable here or not)."""
    from benchmark.core.registry import METHODS

    return {name: cls for name, cls in METHODS.items() if cls.trainable()}


def trainable_mask_models() -> dict[str, type]:
    """The registered foreground/background mask models (``fgbg``) with the training capability: trained by
    ``benchmark train`` like a method, but kept out of the part-method registry."""
    from benchmark.core.registry import MASK_MODELS

    return {name: cls for name, cls in MASK_MODELS.items() if cls.trainable()}


def describe_trainable() -> str:
    """One line per trainable method for ``--help``: its presets and whether it can run here."""
    lines = []
    for name, cls in {**trainable_methods(), **trainable_mask_models()}.items():
        reason = cls.unavailable_reason()
        presets = ", ".join(cls.train_presets()) or "(none)"
        lines.append(f"  {name:<12} presets: {presets}" + (f"  [UNAVAILABLE: {reason}]" if reason else ""))
    return "\n".join(lines) or "  (none registered)"


class _TrainCommand(click.Command):
    """``train --help`` ends with the real values of every preset and the trainable methods, read from the
    registry when help is shown."""

    def format_epilog(self, ctx, formatter):
        rows = preset_rows()
        if rows:
            with formatter.section("Presets (what --preset sets; options given explicitly override it)"):
                formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)
        formatter.write("\nMethods that train (from the registry; a plug-in with a `train` method joins them):\n")
        formatter.write(describe_trainable() + "\n")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; use --device cpu")
    return name


def build_method(method: str, given: dict[str, Any]):
    """Instantiate a registered method that supports training with the given parameters."""
    from benchmark.core.registry import MASK_MODELS, METHODS

    # Mask models (fgbg) train through the same capability but are not part methods (MASK_MODELS).
    cls = MASK_MODELS.get(method) if method in MASK_MODELS else METHODS.get(method)
    if not cls.trainable():
        trainable = [*trainable_methods(), *trainable_mask_models()]
        raise UserError(f"method {method!r} cannot be trained with `benchmark train`; trainable methods: "
                        f"{', '.join(trainable) or '(none)'}")
    reason = cls.unavailable_reason()
    if reason:
        raise UserError(f"method {method!r} is unavailable here: {reason}")
    known = set(cls.param_names())
    unknown = sorted(k for k in given if k not in known)
    options = {"num_parts": "--num-parts", "preset": "--preset", "steps": "--steps", "batch_size": "--train-batch-size",
               "image_size": "--image-size", "init": "--init", "amp": "--amp", "compile": "--compile",
               "ablate": "--ablate"}
    unsupported = [options[k] for k in unknown if k in options]
    if unsupported:
        raise UserError(f"method {method!r} does not take {', '.join(unsupported)} (it has no parameter "
                        f"{', '.join(k for k in unknown if k in options)}); its parameters: {', '.join(sorted(known))}")
    if unknown:
        raise UserError(f"method {method!r} has no parameter(s) {', '.join(unknown)}; its parameters: "
                        f"{', '.join(sorted(known))}")
    import inspect

    opt.check_value_types(f"method {method!r}: parameter", inspect.signature(cls.__init__).parameters.values(), given)
    opt.check_ranges(f"method {method!r}: parameter", cls.param_ranges, given)
    # Counts given as -p (steps, checkpoint_every, ...) are checked here, not deep inside the trainer.
    opt.check_positive(f"method {method!r}: parameter", given,
                       ("steps", "batch_size", "image_size", "checkpoint_every", "num_parts"))
    try:
        return cls(**given)
    except (TypeError, ValueError) as exc:
        raise UserError(f"method {method!r}: bad parameters {given}: {exc}") from None


def preset_rows() -> list[tuple[str, str]]:
    """(``method preset``, its steps, batch size, image size and checkpoint interval) for every preset of
    every trainable method, read through the method contract (``train_presets``)."""
    rows = []
    for name, cls in {**trainable_methods(), **trainable_mask_models()}.items():
        for preset, values in cls.train_presets().items():
            parts = []
            if "steps" in values:
                parts.append(f"{values['steps']:,} steps")
            if "batch_size" in values:
                parts.append(f"batch {values['batch_size']}")
            if "image_size" in values:
                parts.append(f"{values['image_size']} px")
            if "checkpoint_every" in values:
                parts.append(f"checkpoint every {values['checkpoint_every']:,} steps")
            rows.append((f"{name} {preset}", ", ".join(parts) or "(see the method's documentation)"))
    return rows


@click.command("train", cls=_TrainCommand,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--method", "-m", "method_name", default="ours", show_default=True,
              help="A registered method with the training capability, or the fg/bg mask model fgbg (listed at "
                   "the end).")
@click.option("--dataset", "-d", "dataset_name", required=True,
              help="Dataset name (cub, deepfashion, pascal-part, synthetic).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None, help="Root of the dataset tree.")
@click.option("--option", "-o", "dataset_options", multiple=True, metavar="KEY=VALUE",
              help="Dataset option, e.g. -o num_train=64 (repeatable).")
@click.option("--category", default=None, help="Shortcut for -o category=NAME (PASCAL-Part).")
@opt.num_parts_option(None)
@click.option("--preset", default=None,
              help="Training preset of the method (listed at the end), e.g. paper (the reference exactly) or "
                   "tiny (a CPU demo) [method default: paper].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Number of training steps [preset].")
@opt.train_batch_size_option()
@click.option("--image-size", type=click.IntRange(min=16), default=None, help="Training image side [preset].")
@click.option("--init", default=None, help="Segmenter init: caffe:PATH | torchvision | random.")
@click.option("--ablate", multiple=True, metavar="TERM",
              help="Drop a loss term (repeatable; methods with an `ablate` parameter, e.g. ours: feature, "
                   "contrastive, color, equivariance): the paper's loss ablation.")
@click.option("--amp", type=click.Choice(["bf16"]), default=None, help="bf16 autocast (default float32).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network.")
@click.option("--masks", default="gt", show_default=True, metavar="gt|predicted:DIR|model:CKPT|unsupervised:NAME",
              help="Foreground masks of the training images (the paper trains with GT masks).")
@opt.out_option(None, "Output directory [train_runs/METHOD-DATASET-seedS].")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out (exactly).")
@opt.single_seed_option()
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
# Up to 4 loader processes, never more than the machine's cores (more only contend with the training step).
@opt.num_workers_option(min(4, os.cpu_count() or 1))
@opt.quiet_option()
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Any other method parameter, e.g. -p legacy_positive=false -p lambda_equivariance=5.7e4.")
def train_command(method_name, dataset_name, data_root, dataset_options, category, num_parts, preset, steps,
                  train_batch_size,
                  image_size, init, ablate, amp, compile_, masks, out_dir, resume, seed, device, num_workers, quiet,
                  params):
    """Train a part-discovery method and write its checkpoints and loss log.

    \b
    Examples:
      # the paper's training of `ours` on CUB (100k steps, batch 6, 256 px, Caffe init)
      benchmark train --method ours --dataset cub --data-root /data/CUB_200_2011 \\
          --init caffe:/weights/resnet50-caffe-22edcc82.pth --out runs/ours-cub
      # continue it after an interruption, exactly where it stopped
      benchmark train --method ours --dataset cub --data-root /data/CUB_200_2011 \\
          --init caffe:/weights/resnet50-caffe-22edcc82.pth --out runs/ours-cub --resume
      # loss ablation without the contrastive term, bf16 + torch.compile
      benchmark train --dataset cub --data-root /data/CUB_200_2011 --ablate contrastive --amp bf16 --compile
      # fix the reference quirks: batch-mean L_f, positives from all other images, RGB means,
      # poly schedule over the steps actually run (max_iter=0) instead of the hard-coded 100000
      benchmark train --dataset cub --data-root D -p feature_reduction=mean -p legacy_positive=false \\
          -p mean_order=rgb -p max_iter=0
      # PASCAL-Part (lambda_e = 5.7e4 automatically), one category
      benchmark train --dataset pascal-part --data-root /data/VOCdevkit_2010 --category car
      # the fg/bg mask model for the paper's predicted test masks (then `benchmark masks predict`)
      benchmark train --method fgbg --dataset cub --data-root /data/CUB_200_2011 --out runs/fgbg-cub
      # tiny CPU run on the built-in synthetic data
      benchmark train --dataset synthetic --preset tiny --init random -p vgg_weights=random
      # 4 GPUs with DDP (global batch 6 must divide by the processes: use --train-batch-size 8)
      torchrun --nproc_per_node 4 -m benchmark train --dataset cub --data-root D --train-batch-size 8

    Then evaluate the result:  benchmark run --method ours --checkpoint OUT/model.pt --dataset cub ...
    """
    from benchmark.core.method import RunContext
    from benchmark.runner import build_dataset

    given = opt.parse_params(params, "-p")
    for key, value in (("num_parts", num_parts), ("preset", preset), ("steps", steps), ("batch_size", train_batch_size),
                       ("image_size", image_size), ("init", init), ("amp", amp)):
        if value is not None:
            given[key] = value
    if ablate:
        given["ablate"] = tuple(ablate)
    if compile_:
        given["compile"] = True
    # Weights checked before any data is read (missing on synthetic: random, loudly).
    given = opt.synthetic_weights(method_name, dataset_name, given, mask_models=True)
    method = build_method(method_name, given)
    randoms = [f"{key}=random" for key in ("init", "vgg_weights") if getattr(method, key, None) == "random"]
    if randoms:
        # The same loud warning as `run`: random weights must never pass unnoticed.
        click.echo(f"warning: training with RANDOM weights ({', '.join(randoms)}), recorded in the checkpoint; "
                   "such a model says nothing about the method beyond a smoke test", err=True)
    options = opt.parse_params(dataset_options, "-o")
    if category is not None:
        options["category"] = category
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    # build_dataset names an unknown option or a value of the wrong type in one line (as `run` does).
    from benchmark.core.protocol import MaskSource
    from benchmark.core.registry import DATASETS
    from benchmark.maskgen import prepared

    source = MaskSource.parse(masks)
    if source.dataset_reads is None:
        raise UserError(f"--masks {masks}: training needs foreground masks; use gt, predicted:DIR, model:CKPT or "
                        f"unsupervised:NAME")
    if source.needs_preparation:  # model:/unsupervised: predict the training split's masks into their cache
        images = build_dataset(dataset_name, data_root=data_root, split="train",
                               view=DATASETS.get(dataset_name).full_view, masks="none", options=options)
        source = prepared(source, [images], device=_device(device), progress=not quiet)
    # Mask models train on whole images (the images they predict on); part methods on the augmented crops.
    view = type(method).train_view
    data = build_dataset(dataset_name, data_root=data_root, split="train", view=view, masks=source,
                         options=options)
    out_dir = Path(out_dir) if out_dir is not None else Path("train_runs") / f"{method_name}-{dataset_name}-seed{seed}"
    rank = int(os.environ.get("RANK", "0"))
    method.context = RunContext(cache_dir=None, work_dir=out_dir, num_workers=num_workers,
                                progress=not quiet and rank == 0, data_root=data_root)
    from benchmark.core.atomic import output_dir

    with output_dir(out_dir):  # a failed training leaves no empty --out folder
        result = method.train(data, out_dir=out_dir, resume=resume, seed=seed, device=_device(device))
    if rank == 0:
        click.echo(f"trained {method_name} on {dataset_name} ({len(data)} images) for {result.steps} steps"
                   + (f" (resumed at step {result.resumed_from})" if result.resumed_from else ""))
        if result.last_losses:
            click.echo("last losses: " + ", ".join(f"{k}={v:.5g}" for k, v in result.last_losses.items()))
        click.echo(f"weights: {result.model_path}\nlog: {out_dir / 'train_log.csv'}\n"
                   + (f"predict masks: benchmark masks predict --checkpoint {result.model_path} -d {dataset_name}"
                      + (f" --data-root {data_root}" if data_root else "") + " --split test --out MASK_DIR"
                      if method_name in _mask_models() else
                   f"evaluate: benchmark run --method {method_name} --checkpoint {result.model_path} "
                   f"--dataset {dataset_name}" + (f" --data-root {data_root}" if data_root else "")
                   + "".join(f" -o {shlex.quote(f'{k}={v}')}" for k, v in options.items())
                   + (f" -k {num_parts}" if num_parts is not None else "")))


def _mask_models() -> list[str]:
    from benchmark.core.registry import MASK_MODELS

    return MASK_MODELS.names()


commands = [train_command]
