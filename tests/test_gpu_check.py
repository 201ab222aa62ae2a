"""tools/gpu-check.sh: its --quick dry run on the CPU, the faiss-less skip, timeouts and refusals."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu-check.sh"


def _driver():
    if "gpu_check" not in sys.modules:  # tools/ is not a package: load the driver by path, once
        spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["gpu_check"]


def _run(tmp_path, *args, env_extra=None):
    env = {key: value for key, value in os.environ.items() if key != "OUT"}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="2", **(env_extra or {}))
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=600)


@pytest.mark.slow
def test_quick_dry_run_runs_every_step_and_writes_the_json(tmp_path):
    out = tmp_path / "out"
    proc = _run(tmp_path, "--quick", "--no-install", env_extra={"OUT": str(out)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu-check.json").read_text())
    steps = report["steps"]
    assert report["environment"]["mode"].startswith("quick")
    assert steps[0]["step"] == "tests" and steps[0]["status"] == "ok"
    benches = [s for s in steps if s["step"].startswith("bench ")]
    driver = _driver()
    assert len(benches) == len(driver.ROWS)
    for row, step in zip(driver.ROWS, benches):
        assert step["step"] == f"bench {row.bench}"
        if row.quick is None:  # torch.compile and lever rows: GPU only, and said so
            assert step["status"] == "skipped" and "not in --quick" in step["headline"]
        else:
            assert step["status"] == "ok", step
            assert step["figures"] and step["headline"], step  # the report's figures were read
            assert step["command"].startswith(f"python -m benchmark bench {row.bench} -p ")
    train = [s for s in benches if s["status"] == "ok" and s["step"] == "bench train-step"]
    assert all("float32 eager" in s["figures"] for s in train) and len(train) == 2
    assert "| bench metrics" in proc.stdout and "not GPU figures" in proc.stdout
    assert f"JSON written to {out / 'gpu-check.json'}" in proc.stdout


def test_every_registered_benchmark_is_in_the_check():
    from benchmark.core.registry import BENCHES

    assert set(BENCHES.names()) <= {row.bench for row in _driver().ROWS}


def test_kmeans_is_skipped_not_failed_without_faiss(tmp_path):
    fake = tmp_path / "nofaiss"
    fake.mkdir()
    (fake / "faiss.py").write_text("raise ImportError('faiss hidden by the test')\n")
    proc = _run(tmp_path, "--quick", "--no-install", "--no-tests", "--only", "kmeans", "--json", "k.json",
                env_extra={"PYTHONPATH": str(fake)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (step,) = json.loads((tmp_path / "k.json").read_text())["steps"]
    assert step["status"] == "skipped" and "faiss is not installed" in step["headline"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_full_run_without_cuda_is_refused(capsys):
    assert _driver().main(["--no-install"]) == 2
    assert "--quick" in capsys.readouterr().err


def test_unknown_only_is_refused(capsys):
    assert _driver().main(["--quick", "--only", "nope"]) == 2
    assert "--only nope" in capsys.readouterr().err


def test_a_step_past_its_timeout_is_killed_and_reported():
    status, _, _, seconds = _driver().run_process([sys.executable, "-c", "import time; time.sleep(60)"], 1.0)
    assert status == "timeout" and seconds < 30


def test_figures_are_read_from_the_train_step_report():
    report = ("train-step: method ours, preset paper, batch 6 x 256x256, device cuda (H)\n"
              "median of 20 synchronised steps after 5 warm-up steps; random weights, synthetic batches\n"
              "  float32 eager          40.00 ms/step     2220.00 GFLOP/step    55.500 TFLOP/s   x1.00 vs float32 eager\n"
              "  bf16 compiled          10.00 ms/step     2220.00 GFLOP/step   222.000 TFLOP/s   x4.00 vs float32 eager\n"
              "  100k-step schedule at the float32 eager speed: 1.11 h")
    text, figures = _driver().figures_of("train-step", report)
    assert figures == {"float32 eager": {"ms_per_step": 40.0, "speed_up_vs_float32_eager": 1.0},
                       "bf16 compiled": {"ms_per_step": 10.0, "speed_up_vs_float32_eager": 4.0}}
    assert text == "float32 eager 40.00 ms; bf16 compiled 10.00 ms (x4.00)"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU answer of the pytest-less path")
def test_without_pytest_the_cuda_checks_are_called_directly(monkeypatch):
    driver = _driver()
    real = driver.importlib.util.find_spec
    monkeypatch.setattr(driver.importlib.util, "find_spec", lambda name, *a: None if name == "pytest" else real(name, *a))
    monkeypatch.setitem(sys.modules, "pytest", None)  # tests/test_cuda.py must load without pytest
    result = driver.run_cuda_tests(quick=True, timeout_s=60)
    assert result.status == "skipped" and "pytest is not installed" in result.what
    # every check of tests/test_cuda.py is counted, not run: its test functions, read from the source
    source = (Path(__file__).parent / "test_cuda.py").read_text(encoding="utf-8")
    checks = len(re.findall(r"^def test_", source, flags=re.M))
    assert checks >= 7 and result.headline == f"no CUDA device ({checks} checks not run)"


def test_a_benchmark_in_its_own_process_as_on_the_gpu():
    driver = _driver()
    row = next(row for row in driver.ROWS if row.bench == "metrics")
    result = driver.run_bench(row, dict(row.quick), timeout_s=120, in_process=False)
    assert result.status == "ok", result.output
    assert result.figures["speed_up"] > 0 and result.command == "python -m benchmark bench metrics -p n=10000"
