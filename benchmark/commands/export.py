"""``benchmark export``: save any registered method's part maps in the ``predictions`` format.

``benchmark export -m kmeans -d cub --data-root ... --out exported/`` writes one ``.npz`` per image and
evaluation view (``exported/<split>/<view>/<sample id>.npz``, format in
:mod:`benchmark.methods.predictions`) plus ``exported/predictions.json``. Then
``benchmark run -m predictions -p dir=exported/ -d cub ...`` reproduces the direct run's numbers exactly:
the scores are stored bit for bit as predicted (before any resizing), with their kind, background flag and
upsampling convention, and the method is fitted and run by the very traversal a run uses
(:func:`benchmark.runner.traverse`: once for trained/inductive methods, per view for transductive ones,
in the same order and seed).
Use the run's ``--eval-batch-size`` (default 16 for both): a network's float results can differ in the last bits
with the batch composition, which moves some metrics in their ninth digit.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable

import click
import torch

from benchmark import options as opt
from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, MaskSource

VIEW_CHOICES = ("fg", "full", "all")


def export_predictions(method: str, dataset: str, *, to: str | Path, num_parts: int = 4,
                       params: dict[str, Any] | None = None, dataset_options: dict[str, Any] | None = None,
                       data_root: str | None = None, split: str = "test", protocol: str = DEFAULT_PROTOCOL,
                       masks: str = "gt", seed: int = 0, view: str = "all", device: str = "auto",
                       batch_size: int = 16, cache_dir: str | Path | None = None, num_workers: int = 0,
                       progress: bool = False, echo: Callable[[str], None] = lambda _: None) -> Path:
    """Fit ``method`` as a run would and write its part maps for the chosen evaluation views."""
    from benchmark.core.atomic import output_dir
    from benchmark.core.registry import METHODS
    from benchmark.runner import RunConfig, build_method, resolve_device

    if view not in VIEW_CHOICES:
        raise UserError(f"--view must be one of {', '.join(VIEW_CHOICES)}, got {view!r}")
    if METHODS.get(method).reads_saved_maps:
        raise UserError(f"method {method!r} reads saved part maps: exporting it would only copy its folder; "
                        "export the method that produced the maps instead")
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    device = resolve_device(device)
    config = RunConfig(method=method, dataset=dataset, seed=seed, num_parts=num_parts, params=dict(params or {}),
                       dataset_options=dict(dataset_options or {}), data_root=data_root, split=split,
                       protocol=protocol, masks=masks, batch_size=batch_size)
    build_method(method, num_parts=num_parts, params=config.params)  # bad parameters: named before --out exists
    with output_dir(to) as out:  # a failed export leaves no empty --out folder
        return _export(config, out, view=view, device=device, cache_dir=cache_dir, num_workers=num_workers,
                       progress=progress, echo=echo)


def _export(config, out: Path, *, view: str, device: str, cache_dir, num_workers: int, progress: bool,
            echo: Callable[[str], None]) -> Path:
    from benchmark.methods.predictions import write_sidecar
    from benchmark.runner import first_view, resolve_protocol, traverse

    method, dataset, seed, split, num_parts, batch_size = (config.method, config.dataset, config.seed, config.split,
                                                           config.num_parts, config.batch_size)
    model = _build_model(config, out, cache_dir=cache_dir, num_workers=num_workers, progress=progress)
    evaluation = resolve_protocol(config, device=device, progress=progress, cache_dir=model.context.cache_dir)
    first = first_view(config, evaluation)
    views = exported_views(first, view)
    landmark_fit = view == "all" and first.landmark_protocol is not None
    folders: list[str] = []
    for step in traverse(model, first, views, landmark_fit=landmark_fit, seed=seed, device=device,
                         batch_size=batch_size, num_workers=num_workers, progress=progress, label="export"):
        if step.folder in folders:  # a landmark fit split that is also the evaluation split: written once
            continue
        count = _write_pass(out, step)
        folders.append(step.folder)
        echo(f"{step.folder}: {count} images")
    write_sidecar(out, {"folders": folders, "num_parts": num_parts, "method": method,
                        "method_params": {k: _jsonable(v) for k, v in model.get_params().items()},
                        "weights_id": model.weights_id(), "supervision": model.supervision_track(),
                        "dataset": dataset, "split": split,
                        "protocol": evaluation.spec, "masks": evaluation.masks.spec, "seed": seed})
    return out


def exported_views(first, view: str) -> list[str]:
    """The evaluation views ``--view`` names, in the order a run predicts them (``all``: FG, full, landmark)."""
    wanted = {"fg": [first.fg_view], "full": [first.full_view],
              "all": [first.fg_view, first.full_view, first.landmark_view]}[view]
    return list(dict.fromkeys(wanted))


def _build_model(config, out: Path, *, cache_dir, num_workers: int, progress: bool):
    from benchmark.core.method import RunContext
    from benchmark.runner import build_method

    model = build_method(config.method, num_parts=config.num_parts, params=config.params)
    model.context = RunContext(cache_dir=Path(cache_dir) if cache_dir else None, work_dir=out / ".work",
                               num_workers=num_workers, progress=progress,
                               data_root=Path(config.data_root) if config.data_root else None)
    return model


def _write_pass(out: Path, step) -> int:
    """Save every batch of one traversal pass under ``out/<split>/<view>``; the number of images."""
    from benchmark.methods.predictions import save_part_maps

    count = 0
    for batch, maps in step.batches:
        save_part_maps(out / step.folder, batch, maps)
        count += len(batch)
    return count


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


@click.command("export")
@opt.method_option()
@opt.dataset_option()
@opt.out_option(None, "Output folder.", required=True)
@opt.data_root_option()
@opt.num_parts_option()
@opt.param_option("Method parameter. Repeatable.")
@opt.dataset_options_option()
@opt.category_option()
@opt.checkpoint_option()
@opt.single_seed_option()
@opt.split_option()
@opt.protocol_option()
@click.option("--masks", default="gt", show_default=True, metavar=opt.MASKS_METAVAR,
              help="Mask source the views are loaded with (use the one the evaluation run will use).")
@click.option("--view", type=click.Choice(VIEW_CHOICES), default="all", show_default=True,
              help="Which evaluation views to export (all = fg, full and the landmark splits).")
@opt.device_option()
@opt.eval_batch_size_option()
@opt.cache_dir_option()
@opt.num_workers_option()
@opt.train_if_missing_option()
@opt.quiet_option()
def export_command(method, dataset, out_dir, data_root, num_parts, params, options, category, checkpoint, seed, split,
                   protocol, masks, view, device, eval_batch_size, cache_dir, num_workers, train_if_missing, quiet):
    """Write a method's part maps in the `predictions` format (one .npz per image and view).

    \b
    Example:
      benchmark export -m kmeans -d synthetic --out exported/
      benchmark run -m predictions -p dir=exported/ -d synthetic     # the same numbers as `run -m kmeans`
    """
    from benchmark.training_cost import check_training_cost

    method_params, dataset_options = opt.command_line_inputs(params, options, category=category,
                                                             checkpoint=checkpoint)
    method_params = opt.synthetic_weights(method, dataset, method_params)
    # The same rule as `run` for a method that would train first.
    check_training_cost(method, num_parts, method_params, device, train_if_missing,
                        lambda text: click.echo(text, err=True))
    out = export_predictions(method, dataset, to=out_dir, num_parts=num_parts, params=method_params,
                             dataset_options=dataset_options, data_root=data_root, split=split, protocol=protocol,
                             masks=masks, seed=seed, view=view, device=device, batch_size=eval_batch_size,
                             cache_dir=cache_dir, num_workers=num_workers, progress=not quiet, echo=click.echo)
    # The hint repeats every setting that changes which images are evaluated, so that it can be pasted.
    extra = [f"--data-root {shlex.quote(str(data_root))}"] if data_root is not None else []
    extra += [f"-o {shlex.quote(f'{key}={value}')}" for key, value in dataset_options.items()]
    extra += [f"-k {num_parts}"] if num_parts != 4 else []
    extra += [f"--split {split}"] if split != "test" else []
    extra += [f"--protocol {protocol}"] if protocol != DEFAULT_PROTOCOL else []
    extra += [f"--masks {shlex.quote(masks)}"] if MaskSource.parse(masks) != MaskSource.parse(None) else []
    extra += [f"--eval-batch-size {eval_batch_size}"] if eval_batch_size != 16 else []
    # Only the exported views can be evaluated: the metrics that read them.
    extra += {"fg": ["--metric fg_nmi --metric fg_ari"], "full": ["--metric nmi --metric ari"]}.get(view, [])
    click.echo(f"wrote {out}; evaluate with: benchmark run -m predictions -p dir={shlex.quote(str(out))} "
               f"-d {dataset}" + "".join(f" {e}" for e in extra))


commands = [export_command]
