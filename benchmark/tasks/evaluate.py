"""The evaluation job: one run (method, parameters, dataset, seed, protocol, masks) to result rows
(``benchmark run``, the plans' ``evaluate`` step, ``sweep`` workers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.runner import RunConfig, RunResult, run


@dataclass(frozen=True)
class EvaluateConfig:
    """What to run (:class:`~benchmark.runner.RunConfig`, whose key names the result file) and how: where
    rows go (``None``: nowhere), recomputing a finished identical run, the cache of features, trained
    models and generated masks (``None``: no cache, nothing written under the home folder), loader
    workers, progress bars, and how many example predictions to keep for figures."""

    run: RunConfig
    out_dir: str | Path | None = "runs"
    force: bool = False
    cache_dir: str | Path | None = None
    num_workers: int = 0
    progress: bool = False
    examples: int = 0


def evaluate(config: EvaluateConfig) -> RunResult:
    """Run ``config.run``, or reuse its finished identical run (see :mod:`benchmark.runner`)."""
    return run(config.run, out_dir=config.out_dir, force=config.force, progress=config.progress,
               cache_dir=config.cache_dir, num_workers=config.num_workers, examples=config.examples)
