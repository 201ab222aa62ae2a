"""Doing one step: :func:`execute` runs a :class:`~benchmark.reproduce.graph.Step` and writes its ledger
record (outputs, wall time, device, GPU-hours, code version) to ``<out>/steps/``. It is a plain top-level
function of picklable arguments, so the local process pool and submitit jobs call it the same way.

Each step kind is one row of :data:`STEP_KINDS`: the function that does it, whether it runs on the device
(its wall time counts as GPU-hours on CUDA) and the submitit resources it asks for. The functions call the
task layer (:mod:`benchmark.tasks`) in this process: a step never starts the ``benchmark`` command line.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from benchmark.core.atomic import atomic_write_text
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
    from benchmark.factories import resolve_device
    from benchmark.provenance import device_description, git_state

    device = resolve_device(settings.device)
    kind = STEP_KINDS[step.kind]
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    outputs, extra = kind.run(step, settings, device)
    wall = time.perf_counter() - t0
    uses_gpu = kind.uses_device and device.startswith("cuda")
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
    from benchmark.methods.training.checkpoint import latest_checkpoint
    from benchmark.tasks import TrainConfig, train

    spec = step.spec
    model = Path(spec["model"])
    common = dict(method=spec["method"], dataset=spec["dataset"],
                  params={**spec["params"], "num_parts": spec["num_parts"]}, data_root=spec["root"] or None,
                  options=spec["options"], masks=spec["masks"], protocol=spec["protocol"], seed=spec["seed"],
                  device=device, progress=not settings.quiet, cache_dir=settings.cache_dir, keep_checkpoints=1)
    if not MaskSource.kind_of(spec["masks"], in_plans=True).needs_gt_masks:
        # Generated masks (prepared for the training split in the plan's cache, as `benchmark train` does):
        # the model goes to the plan's folder, not to the run cache keyed on annotated masks.
        config = TrainConfig(**common, out_dir=model.parent, resume=latest_checkpoint(model.parent) is not None)
    else:
        config = TrainConfig(**common, into_run_cache=True, expected_key=step.key)
    outcome = train(config)
    if not model.is_file():
        raise RuntimeError(f"{step.id}: training finished without writing {model}")
    return {"model": str(model)}, {"weights": outcome.method.weights_id(), "method": spec["method"],
                                   "dataset": spec["dataset"], "protocol": spec["protocol"], "masks": spec["masks"],
                                   "num_parts": spec["num_parts"], "seed": spec["seed"]}


def _evaluate(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    from benchmark.core.atomic import atomic_torch_save
    from benchmark.runner import RunConfig
    from benchmark.tasks import EvaluateConfig, evaluate

    config = dict(step.spec["config"])
    config["metrics"] = tuple(config["metrics"]) if config["metrics"] else None
    config["device"] = settings.device
    result = evaluate(EvaluateConfig(RunConfig(**config), out_dir=Path(settings.out_dir) / "runs",
                                     cache_dir=settings.cache_dir, progress=not settings.quiet,
                                     examples=step.spec["examples"]))
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


def _fgbg_train(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    """Train the dataset's fg/bg mask model (resuming from its checkpoints after an interruption)."""
    from benchmark.tasks import TrainConfig, train_mask_model

    spec = step.spec
    model = Path(spec["model"])
    # Up to 4 loader processes, never more than the machine's cores, as `benchmark train` by default.
    train_mask_model(TrainConfig(method="fgbg", dataset=spec["dataset"], params=dict(spec["params"]),
                                 data_root=spec.get("root") or None, options=dict(spec.get("options") or {}),
                                 out_dir=model.parent, resume=(model.parent / "checkpoints").is_dir(),
                                 seed=spec["seed"], device=device, num_workers=min(4, os.cpu_count() or 1),
                                 progress=not settings.quiet))
    if not model.is_file():
        raise RuntimeError(f"{step.id}: training the fg/bg model wrote no {model}")
    return {"model": str(model)}, {"dataset": spec["dataset"], "method": "fgbg"}


def _masks_predict(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    from benchmark.mask_sources import ModelMasks
    from benchmark.tasks import PredictMasksConfig, predict_masks

    spec = step.spec
    for split in spec["splits"]:
        predict_masks(PredictMasksConfig(source=ModelMasks.spell(spec["checkpoint"]), dataset=spec["dataset"],
                                         out_dir=spec["out"], data_root=spec.get("root") or None, split=split,
                                         options=dict(spec.get("options") or {}), device=device,
                                         progress=not settings.quiet))
    return {"masks": spec["out"]}, {"dataset": spec["dataset"], "weights": spec["checkpoint"]}


def _masks_score(step: Step, settings: Settings, device: str) -> tuple[Any, dict]:
    """IoU, precision and recall of the predicted masks: result rows the report shows as mask quality."""
    from benchmark.tasks import ScoreMasksConfig, score_masks

    spec = step.spec
    score_masks(ScoreMasksConfig(masks=spec["masks"], dataset=spec["dataset"], data_root=spec.get("root") or None,
                                 split="test", options=dict(spec.get("options") or {}),
                                 out_dir=Path(settings.out_dir) / "runs", cache_dir=settings.cache_dir,
                                 device=device, progress=not settings.quiet))
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


# --------------------------------------------------------------------------------------------------
# the one table of step kinds
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepKind:
    """A kind of plan step: the function that does it, whether it computes on the device (its wall time
    counts as GPU-hours when that is CUDA) and the submitit parameters it asks for (a plan's
    ``[resources.KIND]`` table and ``--slurm`` override them)."""

    name: str
    run: Callable[[Step, Settings, str], tuple[Any, dict]]
    uses_device: bool
    resources: dict[str, Any] = field(default_factory=dict)
    #: the step trains a model into its spec's ``model`` file: done when that file exists (a training
    #: interrupted in another run, or one reused from the cache, is not done twice)
    makes_model: bool = False
    #: the step's product only feeds later steps: once every step using it is done it is not needed again
    #: (e.g. its cache was cleaned)
    intermediate: bool = False


_GPU = {"gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 32}
#: every step kind, in the order they feed each other (see :mod:`benchmark.reproduce.graph`)
STEP_KINDS: dict[str, StepKind] = {kind.name: kind for kind in (
    StepKind("fgbg-train", _fgbg_train, True, {**_GPU, "timeout_min": 24 * 60}, makes_model=True, intermediate=True),
    StepKind("masks-predict", _masks_predict, True, {**_GPU, "timeout_min": 4 * 60}, intermediate=True),
    StepKind("masks-score", _masks_score, True, {"gpus_per_node": 0, "cpus_per_task": 4, "mem_gb": 16,
                                                 "timeout_min": 60}),
    StepKind("train", _train, True, {**_GPU, "timeout_min": 72 * 60}, makes_model=True, intermediate=True),
    StepKind("evaluate", _evaluate, True, {**_GPU, "timeout_min": 6 * 60}),
    StepKind("tables", _tables, False, {"gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 4, "timeout_min": 30}),
    StepKind("figures", _figures, False, {"gpus_per_node": 0, "cpus_per_task": 2, "mem_gb": 8, "timeout_min": 30}),
    StepKind("report", _report, False, {"gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 4, "timeout_min": 30}),
)}
