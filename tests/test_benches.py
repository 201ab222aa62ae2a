"""The speed-benchmark convention (benchmark/benches.py): one ``bench.py`` module per package. Every
benchmark runs at tiny sizes in tests/test_gpu_check.py (the --quick dry run)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.benches import bench_modules
from benchmark.core.registry import BENCHES

ROOT = Path(__file__).resolve().parents[1]


def test_every_bench_lives_in_a_bench_module():
    modules = set(bench_modules())
    assert {"benchmark.methods.bench", "benchmark.metrics.bench", "benchmark.datasets.bench",
            "benchmark.methods.ours.bench"} <= modules
    names = BENCHES.names()
    assert {"features", "kmeans", "dff", "metrics", "synthetic", "cub-index", "train-step"} <= set(names)
    for name, fn in BENCHES.items():
        assert fn.__module__ in modules, f"bench {name!r} is registered in {fn.__module__}, not a bench module"
        assert (inspect.getdoc(fn) or "").strip(), f"bench {name!r} has no docstring for `benchmark list`"
        for param in inspect.signature(fn).parameters.values():
            assert param.default is not inspect.Parameter.empty, f"bench {name!r}: option {param.name} has no default"


def test_register_bench_only_in_bench_modules():
    offenders = []
    for folder in ("methods", "metrics", "datasets", "benchmark"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "bench.py" and "@register_bench(" in path.read_text(encoding="utf-8"):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"speed benchmarks outside a bench.py module: {offenders}"


def test_importing_the_packages_loads_no_bench_module():
    code = ("import sys, benchmark.methods, benchmark.metrics, benchmark.datasets; "
            "print(sorted(m for m in sys.modules if m.split('.')[-1] == 'bench'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_kmeans_bench_without_faiss_names_it(monkeypatch):
    from benchmark.core.errors import UserError

    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    with pytest.raises(UserError, match="kmeans benchmark needs faiss"):
        BENCHES.get("kmeans")(images=2)


def test_the_cpu_step_peak_is_the_most_a_step_holds_beyond_its_start(capfd):
    """Known answer: 4 MiB + 4 MiB held together, the first freed, then 16 MiB beside the second: 20 MiB at the
    peak. A tensor that exists before the step does not count, and the profiler prints nothing."""
    from benchmark.methods.step_timing import cpu_step_peak, time_steps

    held = torch.ones(4096, 4096)  # 64 MiB allocated before the step: not part of its peak

    def step():
        a = torch.ones(1024, 1024)
        b = a * 2
        del a
        c = torch.ones(2048, 2048)
        return float(b.sum() + c.sum() + held[0, 0])

    mib = 2**20  # plus the few bytes of the scalar sums
    assert 20 * mib <= cpu_step_peak(step) < 20 * mib + 1024
    ms, peak = time_steps(step, torch.device("cpu"), warmup=1, steps=2)
    assert ms > 0 and 20 * mib <= peak < 20 * mib + 1024
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_the_cpu_step_peak_sees_frees_of_the_previous_step():
    """A training-like step: last step's 8 MiB "gradient" is freed (-8), then a 4 MiB temporary, an 8 MiB
    tensor of ones and their 8 MiB product are held together (+20): 12 MiB beyond the start at the peak, the
    same on every call and after other profiled steps (an unseen free would read 20)."""
    from benchmark.methods.step_timing import cpu_step_peak

    state = {"grad": torch.ones(2048, 1024)}

    def step():
        state["grad"] = None
        temporary = torch.ones(1024, 1024)
        state["grad"] = torch.ones(2048, 1024) * temporary[0, 0]
        del temporary

    step()
    mib = 2**20
    peaks = [cpu_step_peak(step) for _ in range(3)]
    assert all(12 * mib <= peak < 12 * mib + 1024 for peak in peaks), [p / mib for p in peaks]
