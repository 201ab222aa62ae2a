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

import click

from benchmark import options as opt
# The trainable classes are listed by the one method factory's module; re-exported for this command's callers.
from benchmark.factories import trainable_mask_models, trainable_methods  # noqa: F401
from benchmark.core.protocol import gives_masks


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


def preset_rows() -> list[tuple[str, str]]:
    """(``method preset``, its steps, batch size, image size and checkpoint interval) for every preset of
    every trainable method, read through the method contract (``train_presets``)."""
    rows = []
    for name, cls in {**trainable_methods(), **trainable_mask_models()}.items():
        for preset, values in cls.train_presets().items():
            parts = []
            if "steps" in values:
                parts.append(_steps(values["steps"]))
            if "batch_size" in values:
                parts.append(f"batch {values['batch_size']}")
            if "image_size" in values:
                parts.append(f"{values['image_size']} px")
            if "checkpoint_every" in values:
                parts.append(f"checkpoint every {_steps(values['checkpoint_every'])}")
            rows.append((f"{name} {preset}", ", ".join(parts) or "(see the method's documentation)"))
    return rows


def _steps(value) -> str:
    """A count of steps, or a method's own wording of it ("28 epochs" for a schedule counted in epochs)."""
    return f"{value:,} steps" if isinstance(value, int) else str(value)


@click.command("train", cls=_TrainCommand,
               context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--method", "-m", "method_name", default="ours", show_default=True,
              help="A registered method with the training capability, or the fg/bg mask model fgbg (listed at "
                   "the end).")
@opt.dataset_option("Dataset name (cub, deepfashion, pascal-part, synthetic).")
@opt.data_root_option(help="Root of the dataset tree.")
@opt.dataset_options_option("Dataset option, e.g. -o num_train=64 (repeatable).")
@opt.category_option()
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
@opt.masks_option("Foreground masks of the training images (the paper trains with GT masks).",
                  accepts=gives_masks)
@opt.out_option(None, "Output directory [train_runs/METHOD-DATASET-seedS].")
@click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in --out (exactly).")
@opt.single_seed_option()
@opt.device_option()
# Up to 4 loader processes, never more than the machine's cores (more only contend with the training step).
@opt.num_workers_option(min(4, os.cpu_count() or 1))
@opt.quiet_option()
@opt.param_option("Any other method parameter, e.g. -p legacy_positive=false -p lambda_equivariance=5.7e4.")
def train_command(method_name, dataset, data_root, options, category, num_parts, preset, steps,
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
    from benchmark.tasks import TrainConfig, train

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
    given = opt.synthetic_weights(method_name, dataset, given, mask_models=True)
    _, dataset_options = opt.command_line_inputs((), options, category=category)
    outcome = train(TrainConfig(method=method_name, dataset=dataset, params=given, data_root=data_root,
                                options=dataset_options, masks=masks, out_dir=out_dir, resume=resume, seed=seed,
                                device=device, num_workers=num_workers, progress=not quiet),
                    echo=lambda line: click.echo(line, err=True))
    if outcome.rank != 0:
        return
    result = outcome.result
    click.echo(f"trained {method_name} on {dataset} ({outcome.images} images) for {result.steps} steps"
               + (f" (resumed at step {result.resumed_from})" if result.resumed_from else ""))
    if result.last_losses:
        click.echo("last losses: " + ", ".join(f"{k}={v:.5g}" for k, v in result.last_losses.items()))
    click.echo(f"weights: {result.model_path}\nlog: {outcome.out_dir / 'train_log.csv'}\n"
               + (f"predict masks: benchmark masks predict --checkpoint {result.model_path} -d {dataset}"
                  + (f" --data-root {data_root}" if data_root else "") + " --split test --out MASK_DIR"
                  if method_name in _mask_models() else
                  f"evaluate: benchmark run --method {method_name} --checkpoint {result.model_path} "
                  f"--dataset {dataset}" + (f" --data-root {data_root}" if data_root else "")
                  + "".join(f" -o {shlex.quote(f'{k}={v}')}" for k, v in dataset_options.items())
                  + (f" -k {num_parts}" if num_parts is not None else "")))


def _mask_models() -> list[str]:
    from benchmark.core.registry import MASK_MODELS

    return MASK_MODELS.names()


commands = [train_command]
