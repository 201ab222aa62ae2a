"""Timing of a training step for the ``bench`` rows that compare a method's step with its reference's:
the median wall time of device-synchronised steps after warm-up, and the peak device memory of the timed
steps (the warm-up's one-off allocations, e.g. a lazily built optimizer state or cuDNN's autotuning, left out)."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], device: torch.device, warmup: int,
               steps: int) -> tuple[float, int | None]:
    """(median milliseconds of ``steps`` calls of ``step`` after ``warmup`` calls, peak bytes allocated on a
    CUDA ``device`` during the timed calls; ``None`` on the CPU)."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return statistics.median(times) * 1000.0, peak
