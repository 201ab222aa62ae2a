"""The speed-benchmark convention (benchmark/benches.py): one ``bench.py`` module per package. Every
benchmark runs at tiny sizes in tests/test_gpu_check.py (the --quick dry run)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

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
