"""``benchmark export``: save any registered method's part maps in the ``predictions`` format.

``benchmark export -m kmeans -d cub --data-root ... --out exported/`` writes one ``.npz`` per image and
evaluation view (``exported/<split>/<view>/<sample id>.npz``, format in
:mod:`benchmark.methods.predictions`) plus ``exported/predictions.json``. An export owns its folder: a
non-empty ``--out`` is refused, unless it holds an earlier export and ``--overwrite`` is given; the new
export is then written beside the old one inside the folder and replaces it only once complete. Then
``benchmark run -m predictions -p dir=exported/ -d cub ...`` reproduces the direct run's numbers exactly:
the scores are stored bit for bit as predicted (before any resizing), with their kind, background flag and
upsampling convention, and the method is fitted and run by the very traversal a run uses
(:func:`benchmark.runner.traverse`: once for trained/inductive methods, per view for transductive ones,
in the same order and seed).
Use the run's ``--eval-batch-size`` (default 16 for both): a network's float results can differ in the last bits
with the batch composition, which moves some metrics in their ninth digit.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
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
                       progress: bool = False, echo: Callable[[str], None] = lambda _: None,
                       overwrite: bool = False) -> Path:
    """Fit ``method`` as a run would and write its part maps for the chosen evaluation views into ``to``,
    which must be empty, or hold an earlier export and ``overwrite`` be set: the export then replaces it
    once it is complete."""
    from benchmark.core.atomic import output_dir
    from benchmark.core.registry import METHODS
    from benchmark.factories import build_method

    if view not in VIEW_CHOICES:
        raise UserError(f"--view must be one of {', '.join(VIEW_CHOICES)}, got {view!r}")
    if METHODS.get(method).reads_saved_maps:
        raise UserError(f"method {method!r} reads saved part maps: exporting it would only copy its folder; "
                        "export the method that produced the maps instead")
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    build_method(method, num_parts=num_parts, params=dict(params or {}))  # bad parameters: named before --out exists
    _check_out_folder(Path(to), overwrite)
    with output_dir(to) as out:  # a failed export leaves no empty --out folder
        # Written into a fresh folder inside --out and moved into place only once complete: a failure at any
        # point leaves --out as it was (an older export intact), and a killed export only a STAGING folder.
        target = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
        try:
            _export_into(target, method, dataset, num_parts=num_parts, params=params,
                         dataset_options=dataset_options, data_root=data_root, split=split, protocol=protocol,
                         masks=masks, seed=seed, view=view, device=device, batch_size=batch_size,
                         cache_dir=cache_dir, num_workers=num_workers, progress=progress, echo=echo)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        _replace_contents(out, target)
    return out


STAGING = ".export-new."  # prefix of the folder an export is written into before it replaces --out's contents


def _check_out_folder(out: Path, overwrite: bool) -> None:
    """``out`` must be empty (but for the staging folders of killed exports), or hold an earlier export and
    ``overwrite`` be set: an export owns its folder, since stale maps mixed with new ones would be read as
    one export."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    entries = sorted(p for p in out.iterdir() if not p.name.startswith(STAGING))
    if not entries:
        return
    from benchmark.methods.predictions import SIDECAR

    if not overwrite:
        raise UserError(f"--out {out} is not empty ({len(entries)} entries, e.g. {entries[0].name}); pass "
                        "--overwrite to replace an earlier export, or choose an empty folder")
    if not (out / SIDECAR).is_file():
        raise UserError(f"--out {out} is not empty and holds no {SIDECAR}, so it is not an earlier export; "
                        "--overwrite replaces only an export: choose an empty folder or empty it yourself")


def _replace_contents(out: Path, new: Path) -> None:
    """Delete everything in ``out`` but ``new`` (an earlier export, staging folders of killed exports), then
    move the contents of ``new`` up into ``out``."""
    for entry in out.iterdir():
        if entry == new:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in new.iterdir():
        os.replace(entry, out / entry.name)
    new.rmdir()


def _export_into(out: Path, method: str, dataset: str, *, num_parts, params, dataset_options, data_root, split,
                 protocol, masks, seed, view, device, batch_size, cache_dir, num_workers, progress, echo) -> None:
    from benchmark.factories import resolve_device
    from benchmark.maskgen import mask_cache
    from benchmark.methods.predictions import write_sidecar
    from benchmark.runner import RunConfig, first_view, resolve_protocol, traverse

    device = resolve_device(device)
    config = RunConfig(method=method, dataset=dataset, seed=seed, num_parts=num_parts, params=dict(params or {}),
                       dataset_options=dict(dataset_options or {}), data_root=data_root, split=split,
                       protocol=protocol, masks=masks, batch_size=batch_size)
    model = _build_model(config, out, cache_dir=cache_dir, num_workers=num_workers, progress=progress)
    folders: list[str] = []
    # Without a cache, generated masks live in a folder of the export's own, as in a run.
    with mask_cache(model.context.cache_dir) as masks_dir:
        evaluation = resolve_protocol(config, device=device, progress=progress, cache_dir=masks_dir, method=model)
        first = first_view(config, evaluation)
        views = exported_views(first, view)
        landmark_fit = view == "all" and first.landmark_protocol is not None
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


def exported_views(first, view: str) -> list[str]:
    """The evaluation views ``--view`` names, in the order a run predicts them (``all``: FG, full, landmark)."""
    wanted = {"fg": [first.fg_view], "full": [first.full_view],
              "all": [first.fg_view, first.full_view, first.landmark_view]}[view]
    return list(dict.fromkeys(wanted))


def _build_model(config, out: Path, *, cache_dir, num_workers: int, progress: bool):
    from benchmark.core.method import RunContext
    from benchmark.factories import build_method

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
@opt.out_option(None, "Output folder: empty, or an earlier export with --overwrite.", required=True)
@click.option("--overwrite", is_flag=True,
              help="Replace the earlier export in --out (once the new one is complete).")
@opt.data_root_option()
@opt.num_parts_option()
@opt.param_option("Method parameter. Repeatable.")
@opt.dataset_options_option()
@opt.category_option()
@opt.checkpoint_option()
@opt.single_seed_option()
@opt.split_option()
@opt.protocol_option()
@opt.masks_option("Mask source the views are loaded with (use the one the evaluation run will use).")
@click.option("--view", type=click.Choice(VIEW_CHOICES), default="all", show_default=True,
              help="Which evaluation views to export (all = fg, full and the landmark splits).")
@opt.device_option()
@opt.eval_batch_size_option()
@opt.cache_dir_option()
@opt.num_workers_option()
@opt.train_if_missing_option()
@opt.quiet_option()
def export_command(method, dataset, out_dir, overwrite, data_root, num_parts, params, options, category, checkpoint,
                   seed, split, protocol, masks, view, device, eval_batch_size, cache_dir, num_workers,
                   train_if_missing, quiet):
    """Write a method's part maps in the `predictions` format (one .npz per image and view).

    \b
    Example:
      benchmark export -m kmeans -d synthetic --out exported/
      benchmark export -m dff -d synthetic --out exported/ --overwrite   # replaces the kmeans export
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
                             cache_dir=cache_dir, num_workers=num_workers, progress=not quiet, echo=click.echo,
                             overwrite=overwrite)
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
