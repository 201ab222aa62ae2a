"""Fan many runs out: locally (one after the other, or a process pool) or on a Slurm cluster via submitit.

A sweep is the cartesian product of methods x datasets x K x seeds with shared settings. Each job is an
ordinary :func:`benchmark.runner.run`, so finished runs are skipped and a killed sweep resumes by
resubmitting it: only the missing result files are computed.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmark.core.errors import UserError
from benchmark.runner import RunConfig, result_path


def expand(base: RunConfig, *, methods: Iterable[str], datasets: Iterable[str], num_parts: Iterable[int],
           seeds: Iterable[int]) -> list[RunConfig]:
    return [replace(base, method=m, dataset=d, num_parts=k, seed=s)
            for m, d, k, s in itertools.product(methods, datasets, num_parts, seeds)]


def _job(config: RunConfig, out_dir: str, cache_dir: str | None) -> list[dict[str, Any]]:
    from benchmark.tasks import EvaluateConfig, evaluate

    return evaluate(EvaluateConfig(config, out_dir=out_dir, cache_dir=cache_dir)).rows


def require_slurm() -> None:
    """``--executor slurm`` needs submitit and a Slurm installation (``sbatch``) here: one line naming what is
    missing, before anything is written or submitted."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("submitit") is None:
        raise UserError("--executor slurm needs submitit: pip install 'partbench[cluster]'")
    if shutil.which("sbatch") is None:
        raise UserError("--executor slurm: Slurm's sbatch is not available here; run on a Slurm login node, or use "
                        "--executor local")


def launch(configs: list[RunConfig], *, out_dir: str | Path, executor: str = "local", workers: int = 1,
           cache_dir: str | None = None, slurm: dict[str, Any] | None = None,
           echo: Callable[[str], None] = print, progress: bool = False) -> int:
    """Run every configuration whose result file is missing; returns how many were launched."""
    todo = [c for c in configs if not result_path(out_dir, c).exists()]
    echo(f"{len(configs)} runs, {len(configs) - len(todo)} already finished, {len(todo)} to do ({executor})")
    if not todo:
        return 0
    if executor == "slurm":
        require_slurm()
        import submitit

        log_dir = Path(out_dir) / "slurm-logs"
        ex = submitit.AutoExecutor(folder=str(log_dir))
        ex.update_parameters(**(slurm or {}))
        jobs = ex.map_array(_job, todo, [str(out_dir)] * len(todo), [cache_dir] * len(todo))
        echo(f"submitted {len(jobs)} jobs (array {jobs[0].job_id.split('_')[0]}); logs in {log_dir}")
        return len(jobs)
    if executor != "local":
        raise UserError(f"unknown --executor {executor!r}; use local or slurm")
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            for config, _ in zip(todo, pool.map(_job, todo, [str(out_dir)] * len(todo), [cache_dir] * len(todo))):
                echo(f"done: {config.method} {config.dataset} K={config.num_parts} seed={config.seed}")
    else:
        if progress:
            from tqdm import tqdm

            todo = tqdm(todo, desc="sweep", unit="run", leave=False)
        for config in todo:
            _job(config, str(out_dir), cache_dir)
            echo(f"done: {config.method} {config.dataset} K={config.num_parts} seed={config.seed}")
    return len(todo)
