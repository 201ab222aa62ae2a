"""Doing one step: :func:`execute` runs a :class:`~benchmark.reproduce.graph.Step` and writes its ledger
record (outputs, wall time, device, GPU-hours, code version) to ``<out>/steps/``. It is a plain top-level
function of picklable arguments, so the local process pool and submitit jobs call it the same way.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmark.core.atomic import atomic_write_text
from benchmark.core.errors import UserError
from benchmark.core.protocol import MaskSource
from benchmark.reproduce.graph import Settings, Step, estimate_class, ledger_dir, read_ledger


def execute(step: Step, settings: Settings) -> dict[str, Any]:
    """Run ``step`` (its dependencies are done) and record it; returns the ledger record.

    The step holds ``<out>/steps/<ledger name>.lock`` while it works (the lease of
    :func:`~benchmark.core.atomic.exclusive_lock`): a second ``reproduce`` into the same ``--out`` waits for
    it and then takes its record instead of doing the step (a training of hours) again."""
    from benchmark.core.atomic import exclusive_lock
    from benchmark.runner import lock_messages

    lock = ledger_dir(settings) / f"{step.ledger_name}.lock"
    with exclusive_lock(lock, **lock_messages(f"step {step.id}", "then using its result")):
        done = read_ledger(settings, step)
        if done is not None:
            return done
        return _execute(step, settings)


def _execute(step: Step, settings: Settings) -> dict[str, Any]:
    from benchmark.provenance import device_description, git_state
    from benchmark.runner import resolve_device

    device = resolve_device(settings.device)
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    outputs, extra = _KINDS[step.kind](step, settings, device)
    wall = time.perf_counter() - t0
    uses_gpu = step.kind in ("fgbg-train", "masks-predict", "masks-score", "train", "evaluate") and device.startswith("cuda")
    sha, dirty = git_state()
    record = {"id": step.id, "kind": step.kind, "key": step.key, "estimate_class": estimate_class(step),
              "outputs": outputs, "started_at": started.isoformat(timespec="seconds"), "wall_s": round(wall, 3),
              "device": device_description(device), "gpu_hours": round(wall / 3600, 5) if uses_gpu else 0.0,
              "git_sha": sha, "git_dirty": dirty, **extra}
    atomic_write_text(ledger_dir(settings) / step.ledger_name, json.dumps(record, indent=1, sort_keys=True))
    return record


# --------------------------------------------------------------------------------------------------
# kinds
# --------------------------------------------------------------------------------------------------
def _train(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    """Train a part method into the cache ``benchmark run`` reads (an interrupted training resumes); with
    generated training masks (``unsupervised:NAME``) into the plan's own training folder."""
    from benchmark.core.method import RunContext
    from benchmark.methods.training.cache import train_or_reuse
    from benchmark.methods.training.checkpoint import latest_checkpoint
    from benchmark.runner import build_dataset, build_method

    spec = step.spec
    method = build_method(spec["method"], num_parts=spec["num_parts"], params=spec["params"])
    method.context = RunContext(cache_dir=Path(settings.cache_dir), num_workers=0, progress=not settings.quiet,
                                data_root=Path(spec["root"]) if spec["root"] else None)
    model = Path(spec["model"])
    if not MaskSource.kind_of(spec["masks"], in_plans=True).needs_gt_masks:
        data = build_dataset(spec["dataset"], data_root=spec["root"], split="train", view="train",
                             protocol=spec["protocol"], masks=_training_masks(spec, settings, device),
                             options=spec["options"])
        method.train(data, out_dir=model.parent, resume=latest_checkpoint(model.parent) is not None,
                     seed=spec["seed"], device=device, keep_checkpoints=1)
    else:
        data = build_dataset(spec["dataset"], data_root=spec["root"], split="train", view="train",
                             protocol=spec["protocol"], masks=spec["masks"], options=spec["options"])
        key = method.cache_key(data, spec["seed"])
        if key != step.key:  # the data or weights changed since the graph was built
            raise UserError(f"{step.id}: its inputs changed while the plan ran (key {key} != {step.key}); rerun")
        train_or_reuse(method, data, name=spec["method"], seed=spec["seed"], device=device, load=lambda _: None)
    if not model.is_file():
        raise RuntimeError(f"{step.id}: training finished without writing {model}")
    return {"model": str(model)}, {"weights": method.weights_id(), "method": spec["method"],
                                   "dataset": spec["dataset"], "protocol": spec["protocol"], "masks": spec["masks"],
                                   "num_parts": spec["num_parts"], "seed": spec["seed"]}


def _evaluate(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    import torch

    from benchmark.core.atomic import atomic_torch_save
    from benchmark.runner import RunConfig, run

    config = dict(step.spec["config"])
    config["metrics"] = tuple(config["metrics"]) if config["metrics"] else None
    config["device"] = settings.device
    result = run(RunConfig(**config), out_dir=Path(settings.out_dir) / "runs", cache_dir=settings.cache_dir,
                 progress=not settings.quiet, examples=step.spec["examples"])
    outputs: dict[str, Any] = {"result": str(result.path)}
    if step.spec["examples"]:
        if result.examples is None:
            raise RuntimeError(f"{step.id}: no example predictions were kept")
        path = Path(settings.out_dir) / "examples" / f"{step.key}.pt"
        atomic_torch_save({k: v for k, v in result.examples.items() if v is not None}, path)
        outputs["examples"] = str(path)
    first = result.rows[0] if result.rows else {}
    return outputs, {"label": step.spec["label"], "experiment": step.spec["experiment"],
                     "mask_source": step.spec["mask_source"], "weights": first.get("weights", ""),
                     "protocol": config["protocol"], "masks": first.get("masks", config["masks"]),
                     "method": config["method"], "dataset": config["dataset"], "num_parts": config["num_parts"],
                     "seed": config["seed"], "run_wall_s": first.get("wall_time_s")}


def _training_masks(spec: dict, settings: Settings, device: str):
    """The generated source (``unsupervised:NAME``) prepared for the training split's images in the plan's
    cache, as ``benchmark train --masks`` prepares it."""
    from benchmark.core.registry import DATASETS
    from benchmark.maskgen import prepared
    from benchmark.runner import build_dataset

    images = build_dataset(spec["dataset"], data_root=spec["root"], split="train",
                           view=DATASETS.get(spec["dataset"]).full_view, masks="none", options=spec["options"])
    return prepared(spec["masks"], [images], device=device, cache_dir=settings.cache_dir,
                    progress=not settings.quiet)


def _cli(args: list[str]) -> None:
    """Run a ``benchmark`` sub-command in a child process (the fg/bg commands belong to their own area)."""
    done = subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"`benchmark {' '.join(args)}` failed: {tail[0]}")


def _option_args(spec: dict) -> list[str]:
    args = ["-d", spec["dataset"]]
    if spec.get("root"):
        args += ["--data-root", spec["root"]]
    for key, value in (spec.get("options") or {}).items():
        args += ["-o", f"{key}={value}"]
    return args


def _fgbg_train(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    spec = step.spec
    model = Path(spec["model"])
    args = ["train", "-m", "fgbg", *_option_args(spec), "--out", str(model.parent), "--device", device,
            "--seed", str(spec["seed"])]
    for key, value in spec["params"].items():
        args += ["-p", f"{key}={value}"]
    _cli(args + (["--resume"] if (model.parent / "checkpoints").is_dir() else []) + (["-q"] if settings.quiet else []))
    if not model.is_file():
        raise RuntimeError(f"{step.id}: `benchmark train -m fgbg` wrote no {model}")
    return {"model": str(model)}, {"dataset": spec["dataset"], "method": "fgbg"}


def _masks_predict(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    spec = step.spec
    for split in spec["splits"]:
        _cli(["masks", "predict", "--checkpoint", spec["checkpoint"], *_option_args(spec), "--split", split,
              "--out", spec["out"], "--device", device])
    return {"masks": spec["out"]}, {"dataset": spec["dataset"], "weights": spec["checkpoint"]}


def _masks_score(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    """IoU, precision and recall of the predicted masks: result rows the report shows as mask quality."""
    spec = step.spec
    _cli(["masks", "score", "--masks", spec["masks"], *_option_args(spec), "--split", "test",
          "--out", str(Path(settings.out_dir) / "runs"), "--device", device, "--cache-dir", settings.cache_dir]
         + (["-q"] if settings.quiet else []))
    return {}, {"dataset": spec["dataset"], "masks": spec["masks"]}


def _tables(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    from benchmark.reproduce.tables import write_experiment_tables

    written = write_experiment_tables(step, settings)
    return {"tables": [str(p) for p in written]}, {"experiment": step.spec["experiment"]}


def _figures(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    from benchmark.reproduce.figures import write_experiment_figure

    path = write_experiment_figure(step, settings)
    return {"figure": str(path)}, {"experiment": step.spec["experiment"]}


def _report(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    from benchmark.html_report import write_html_report

    path = write_html_report([settings.out_dir], Path(settings.out_dir) / "report.html",
                             title=f"partbench reproduce {settings.plan_name}")
    return {"report": str(path)}, {}


_KINDS = {"train": _train, "evaluate": _evaluate, "fgbg-train": _fgbg_train, "masks-predict": _masks_predict,
          "masks-score": _masks_score, "tables": _tables, "figures": _figures, "report": _report}
