"""Timing of a training step for the ``bench`` rows that compare a method's step with its reference's:
the median wall time of device-synchronised steps after warm-up, and the peak memory of the timed steps (the
warm-up's one-off allocations, e.g. a lazily built optimizer state or cuDNN's autotuning, left out).

Peak memory means two things, one per device, never compared across devices:

* CUDA: the allocator's peak of the timed steps (weights, optimizer state and batch included);
* CPU: the most memory an extra step holds at any moment beyond what was held when it began (activations,
  gradients, temporaries), read from the profiler's allocation trace. torch keeps no CPU allocator statistics,
  so two extra steps run under ``torch.profiler`` after the timed ones, the second measured, and their
  time is not counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from typing import Callable

import torch


#: batch x height x width up to which a method times a step of its configuration for the training-time estimate
#: (the ``tiny`` presets); one step at paper sizes would itself take minutes on a CPU.
CHEAP_STEP_PIXELS = 8 * 128 * 128


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.4 h`` or ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, steps: int, *,
               cpu_peak: bool = True) -> tuple[float, int | None]:
    """(median milliseconds of ``steps`` calls of ``step`` after ``warmup`` calls, peak bytes: on a CUDA
    ``device`` allocated during the timed calls, on the CPU held by an extra call beyond its start, or ``None``
    when ``cpu_peak`` is false)."""
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
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = cpu_step_peak(step) if cpu_peak else None
    return statistics.median(times) * 1000.0, peak


def cpu_step_peak(step: Callable[[], object]) -> int:
    """Bytes that one call of ``step`` holds at its peak beyond what was allocated when it began (CPU tensors).

    The profiler's running total counts only memory allocated while some profiler was recording, so a free of
    an older tensor (last step's gradients, say) would go unseen: two steps are profiled and the second is
    measured from the total at its start, with everything the first allocated known to the count."""
    from torch.profiler import ProfilerActivity, profile, record_function

    with tempfile.TemporaryDirectory() as folder, _quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
            with record_function(_MEASURED):
                step()
        trace = os.path.join(folder, "trace.json")
        prof.export_chrome_trace(trace)
        with open(trace) as handle:
            events = json.load(handle)["traceEvents"]
    (span,) = [e for e in events if e.get("name") == _MEASURED and e.get("ph") == "X"]
    begin, finish = span["ts"], span["ts"] + span["dur"]
    memory = sorted((e["ts"], e["args"]["Total Allocated"], e["args"]["Bytes"]) for e in events
                    if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0)  # 0: CPU
    inside = [(total, size) for ts, total, size in memory if begin <= ts <= finish]
    if not inside:
        return 0
    before = [total for ts, total, _ in memory if ts < begin]
    base = before[-1] if before else inside[0][0] - inside[0][1]
    return max(0, max(total for total, _ in inside) - base)


_MEASURED = "partbench::measured_step"


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side writes start/stop lines to the process's stderr, which a bench table must not
    carry; Python-level errors still propagate as exceptions."""
    try:
        fd = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)
