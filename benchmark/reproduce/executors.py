"""Running the to-do steps of a graph: locally (one after another, or ``--num-workers N`` processes at a
time) or through submitit (``--executor slurm``) with job dependencies and resources per step kind.

Every executor calls :func:`benchmark.reproduce.steps.execute`, which writes the step's ledger record only
when the step finished, so a killed run leaves finished steps done and the rest to do.

Slurm: all to-do steps are submitted at once; a job waits for the jobs of its dependencies
(``--dependency=afterok:...``), and each step kind asks for its own resources (its row of
:data:`benchmark.reproduce.steps.STEP_KINDS`, overridden per kind by the plan's ``[resources.KIND]`` tables
and for every kind by ``--slurm KEY=VALUE``). The command
returns after submitting; ``--dry-run`` later shows what is done. ``--slurm cluster=local`` runs the same
submission through submitit's local executor (no Slurm needed), which cannot hold jobs on dependencies, so
there the steps are submitted in waves, each after the previous one finished.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from benchmark.core.errors import UserError
from benchmark.reproduce.graph import Settings, Step
from benchmark.reproduce.steps import STEP_KINDS, execute

Echo = Callable[[str], None]


class StepFailures(UserError):
    """Some steps failed; finished steps stay done, and a rerun retries the rest."""

    exit_code = 1


def _describe(step: Step, record: dict[str, Any]) -> str:
    return f"done  {step.id}  [{record['wall_s']:.1f}s]"


def _failure(step: Step, exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{step.id}: {text}"


def run_local(steps: list[Step], settings: Settings, *, num_workers: int = 1, echo: Echo = print) -> None:
    """Run ``steps`` (dependencies first) on this machine; failures skip what depends on them, the rest goes on."""
    todo = {s.id: s for s in steps if s.state == "todo"}
    finished: set[str] = {s.id for s in steps if s.state == "done"}
    failed: dict[str, str] = {}
    if num_workers <= 1:
        for step in todo.values():
            if any(d in failed for d in step.deps):
                failed[step.id] = f"{step.id}: skipped, it needs a failed step"
                continue
            echo(f"start {step.id}")
            try:
                record = execute(step, settings)
            except (Exception, UserError) as exc:  # noqa: PERF203 -- one step's failure must not stop the others
                failed[step.id] = _failure(step, exc)
                echo(f"FAILED {failed[step.id]}")
                continue
            finished.add(step.id)
            echo(_describe(step, record))
    else:
        _run_pool(todo, finished, failed, settings, num_workers, echo)
    if failed:
        raise StepFailures(f"{len(failed)} step(s) did not finish: " + "; ".join(list(failed.values())[:5])
                           + (" ..." if len(failed) > 5 else "") + ". Finished steps are kept; fix the cause and "
                           "rerun the same command")


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_pool(todo: dict[str, Step], finished: set[str], failed: dict[str, str], settings: Settings,
              num_workers: int, echo: Echo) -> None:
    threads = max(1, (os.cpu_count() or 1) // num_workers)
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    pending = dict(todo)
    running: dict[Any, Step] = {}
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        while pending or running:
            for step in list(pending.values()):
                if any(d in failed for d in step.deps):
                    failed[step.id] = f"{step.id}: skipped, it needs a failed step"
                    del pending[step.id]
                elif all(d in finished for d in step.deps) and len(running) < num_workers:
                    echo(f"start {step.id}")
                    running[pool.submit(execute, step, settings)] = step
                    del pending[step.id]
            if not running:
                if pending:  # cannot happen in a valid graph, but never spin forever
                    raise RuntimeError(f"steps wait for unknown dependencies: {', '.join(pending)}")
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                try:
                    record = future.result()
                except Exception as exc:  # noqa: BLE001 -- reported per step below
                    failed[step.id] = _failure(step, exc)
                    echo(f"FAILED {failed[step.id]}")
                    continue
                finished.add(step.id)
                echo(_describe(step, record))


def resources_for(kind: str, plan_resources: dict[str, dict[str, Any]], overrides: dict[str, Any]) -> dict[str, Any]:
    return {**STEP_KINDS[kind].resources, **plan_resources.get(kind, {}), **overrides}


def submission_plan(steps: list[Step], plan_resources: dict[str, dict[str, Any]],
                    overrides: dict[str, Any]) -> list[tuple[Step, dict[str, Any], list[str]]]:
    """(step, submitit parameters, ids of to-do steps it must wait for) for every to-do step, in order."""
    todo = {s.id for s in steps if s.state == "todo"}
    return [(s, {**resources_for(s.kind, plan_resources, overrides), "name": f"partbench-{s.kind}"},
             [d for d in s.deps if d in todo]) for s in steps if s.state == "todo"]


def run_submitit(steps: list[Step], settings: Settings, *, plan_resources: dict[str, dict[str, Any]],
                 options: dict[str, Any], echo: Echo = print) -> None:
    try:
        import submitit
    except ImportError:
        raise UserError("--executor slurm needs submitit: pip install 'partbench[cluster]'") from None
    options = dict(options)
    cluster = options.pop("cluster", "slurm")
    if cluster not in ("slurm", "local"):
        raise UserError(f"--slurm cluster={cluster}: use slurm, or local to try the submission on this machine")
    if cluster == "slurm" and not _has_sbatch():
        raise UserError("--executor slurm: sbatch is not available here; run on a Slurm login node, or add "
                        "--slurm cluster=local to run the same jobs through submitit's local executor")
    folder = Path(settings.out_dir) / "submitit"
    plan = submission_plan(steps, plan_resources, options)
    if not plan:
        echo("nothing to submit: every step is done")
        return
    executors: dict[str, Any] = {}

    def executor_for(step: Step, params: dict[str, Any]):
        # One executor per step kind: submitit keeps parameters between calls, and a CPU step must not
        # inherit the GPU request of a training step submitted before it.
        if step.kind not in executors:
            executors[step.kind] = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
            wanted = {k: v for k, v in params.items() if not (k == "gpus_per_node" and not v)}
            if cluster != "slurm":
                wanted = {k: v for k, v in wanted.items() if not k.startswith("slurm_")}
            executors[step.kind].update_parameters(**wanted)
        return executors[step.kind]

    if cluster == "slurm":
        jobs: dict[str, Any] = {}
        for step, params, waits in plan:
            executor = executor_for(step, params)
            dependency = ":".join(jobs[w].job_id for w in waits)
            executor.update_parameters(slurm_dependency=f"afterok:{dependency}" if dependency else None)
            jobs[step.id] = executor.submit(execute, step, settings)
            echo(f"submitted {step.id} as job {jobs[step.id].job_id}"
                 + (f" (after {', '.join(jobs[w].job_id for w in waits)})" if waits else ""))
        echo(f"{len(jobs)} jobs submitted; logs in {folder}. `benchmark reproduce ... --dry-run` shows progress; "
             "rerunning the command resubmits only what is not done.")
        return
    _run_in_waves(executor_for, plan, settings, echo, folder)


def _run_in_waves(executor_for, plan, settings: Settings, echo: Echo, folder: Path) -> None:
    finished: set[str] = set()
    failed: dict[str, str] = {}
    remaining = list(plan)
    while remaining:
        wave = [(s, p, w) for s, p, w in remaining if all(d in finished for d in w)]
        blocked = [(s, p, w) for s, p, w in remaining if any(d in failed for d in w)]
        for step, _, _ in blocked:
            failed[step.id] = f"{step.id}: skipped, it needs a failed step"
        if not wave:
            break
        jobs = []
        for step, params, _ in wave:
            jobs.append((step, executor_for(step, params).submit(execute, step, settings)))
            echo(f"submitted {step.id} as job {jobs[-1][1].job_id}")
        for step, job in jobs:
            try:
                record = job.result()
            except Exception as exc:  # noqa: BLE001
                failed[step.id] = _failure(step, exc)
                echo(f"FAILED {failed[step.id]} (log: {folder})")
                continue
            finished.add(step.id)
            echo(_describe(step, record))
        done_ids = {s.id for s, _, _ in wave} | {s.id for s, _, _ in blocked}
        remaining = [entry for entry in remaining if entry[0].id not in done_ids]
    if failed:
        raise StepFailures(f"{len(failed)} job(s) did not finish: " + "; ".join(list(failed.values())[:5])
                           + f". Logs in {folder}; rerun the same command to retry them")


def _has_sbatch() -> bool:
    import shutil

    return shutil.which("sbatch") is not None
