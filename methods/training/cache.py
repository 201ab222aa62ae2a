"""Reuse of trained models across runs: ``benchmark run`` without ``--checkpoint`` trains once per training
configuration and then loads the cached model (an interrupted cached training resumes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from benchmark.methods.training.checkpoint import latest_checkpoint


def train_or_reuse(method: Any, data: Any, *, name: str, seed: int, device: Any,
                   load: Callable[[Path], None]) -> None:
    """Train ``method`` on ``data`` unless ``<cache_dir>/<name>/<method.cache_key(data, seed)>/model.pt``
    exists, in which case ``load(path)`` restores it. Without a cache directory nothing is written or
    reused. Only the latest checkpoint is kept in the cache: enough to resume an interrupted training."""
    cache_dir = method.context.cache_dir
    if cache_dir is None:
        method.train(data, out_dir=None, seed=seed, device=device)
        return
    out_dir = Path(cache_dir) / name / method.cache_key(data, seed)
    model_file = out_dir / "model.pt"
    if model_file.is_file():
        load(model_file)
        method.trained_from_cache_ = str(model_file)
        return
    method.train(data, out_dir=out_dir, resume=latest_checkpoint(out_dir) is not None, seed=seed, device=device,
                 keep_checkpoints=1)
