"""Driver of ``tools/gpu-check.sh``: install the project, run the CUDA tests, run every speed benchmark at the
paper's sizes on the GPU, print one table and write a JSON file. Documented in ``docs/performance.md``.

Each step has its own timeout and the whole run a time budget (default 470 s), so the script finishes in
under 8 minutes on a GPU; a step that would not fit is reported as skipped, never silently dropped.
``--quick`` is a dry run on the CPU at tiny sizes (it checks that every step works, not how fast it is:
its figures are CPU figures, not GPU figures).

Exit status: 0 when every step that ran passed, 1 when a test or a benchmark failed or timed out, 2 for
a usage error (e.g. no CUDA device without ``--quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET_S = 470  # the 8-minute promise, less a margin for start-up and the table
QUICK_BUDGET_S = 600
INSTALL = ["-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT)]
PAPER = dict(batch_size=6, size=256, steps=20, warmup=5)  # the train-step target of the paper's schedule
TINY_STEP = dict(batch_size=3, size=32, steps=1, warmup=0, device="cpu")


@dataclass(frozen=True)
class BenchRow:
    """One ``benchmark bench`` invocation: ``params`` on the GPU at paper sizes, ``quick`` on the CPU at
    tiny sizes (``None``: not run by ``--quick``, for the reason ``why_not_quick``)."""

    bench: str
    label: str
    params: dict
    timeout_s: int
    quick: dict | None
    why_not_quick: str = ""
    needs: str | None = None  # an optional module without which the row is skipped (named in the table)


COMPILE_ON_CPU = "torch.compile of the whole step takes minutes on a CPU; it is measured on the GPU only"
LEVER_ON_CPU = "bf16 steps are slow on a CPU; the lever's numbers are tested in tests/test_training_levers.py"
ROWS: tuple[BenchRow, ...] = (
    # GPU rows first (eager steps, features, K-means, NMF, then torch.compile), then the CPU-only
    # benchmarks and the levers of methods/training/levers.py: what may not fit the budget comes last.
    BenchRow("train-step", "ours, batch 6 x 256 px: float32 eager vs bf16 eager",
             dict(method="ours", amp="bf16", device="cuda", **PAPER), 90,
             dict(method="ours", amp="none", **TINY_STEP)),
    BenchRow("train-step", "scops, batch 6 x 256 px: float32 eager vs bf16 eager",
             dict(method="scops", amp="bf16", device="cuda", **PAPER), 90,
             dict(method="scops", amp="none", **TINY_STEP)),
    BenchRow("features", "vgg19 relu5_2+relu5_4, 300 images at 256 px, batches of 32",
             dict(images=300, size=256, batch_size=32, device="cuda"), 75,
             dict(images=2, size=32, batch_size=2, device="cpu")),
    BenchRow("kmeans", "16 images' features, K=4 (faiss on the GPU when faiss-gpu is installed)",
             dict(images=16, device="cuda"), 90,
             dict(images=2, map_size=4, feature_size=8, channels=8, niter=2, nredo=1, max_points_per_centroid=8),
             needs="faiss"),
    BenchRow("dff", "NMF of 256 images x 16x16 positions x 512 channels, 50 updates",
             dict(images=256, device="cuda"), 60,
             dict(images=2, map_size=4, channels=8, iterations=3)),
    BenchRow("dino-coseg", "dino-coseg fit + predict, 16 images at 224 px (ViT-S/8 keys at stride 4), release settings",
             dict(images=16, size=224, device="cuda"), 90,
             dict(images=3, size=48, niter=5, nredo=1, max_clusters=4), needs="faiss"),
    BenchRow("pdiscoformer", "pdiscoformer step vs the release's step, batch 8 x 518 px, DINOv2-reg ViT-B/14, K=8 (float32; bf16)",
             dict(batch_size=8, size=518, amp="bf16", device="cuda", steps=10, warmup=3), 150,
             dict(batch_size=2, size=32, backbone="test_vit", patch_size=8, num_parts=2, classes=3, steps=1, warmup=0,
                  device="cpu")),
    BenchRow("pdisconet", "pdisconet train step, CUB paper sizes (ResNet-101, batch 16 x 448 px, K = 8): partbench "
             "(float32; bf16 + channels-last) vs the release's way, ms and peak memory",
             dict(device="cuda", amp="bf16", channels_last=True), 150,
             dict(quick=True, device="cpu", amp="bf16", channels_last=True)),
    BenchRow("output-cache", "network-output cache per evaluation batch (16 x 518 px, DINOv2-reg ViT-B/14): forward "
             "vs cache miss and hit", dict(device="cuda"), 120, dict(quick=True, device="cpu")),
    BenchRow("train-step", "ours, batch 6 x 256 px: float32 eager vs bf16 + torch.compile",
             dict(method="ours", amp="bf16", compile=True, device="cuda", **PAPER), 150, None, COMPILE_ON_CPU),
    BenchRow("train-step", "scops, batch 6 x 256 px: float32 eager vs bf16 + torch.compile",
             dict(method="scops", amp="bf16", compile=True, device="cuda", **PAPER), 150, None, COMPILE_ON_CPU),
    BenchRow("metrics", "contingency table vs scikit-learn on 1e8 labels", dict(n=100_000_000), 90,
             dict(n=10_000)),
    BenchRow("train-step", "ours, batch 6 x 256 px: float32 eager vs bf16 + channels-last",
             dict(method="ours", amp="bf16", channels_last=True, device="cuda", **PAPER), 60, None, LEVER_ON_CPU),
    BenchRow("train-step", "ours, batch 6 x 256 px: float32 eager vs bf16 + fused SGD",
             dict(method="ours", amp="bf16", sgd="fused", device="cuda", **PAPER), 60, None, LEVER_ON_CPU),
    BenchRow("masks-predict", "fg/bg mask folder, 256 images at 256 px: image by image vs batches of 32",
             dict(n=256, image_size=256, batch_size=32, device="cuda"), 60,
             dict(n=2, image_size=32, batch_size=2, device="cpu")),
    BenchRow("synthetic", "synthetic dataset, 300 samples at 64 px", dict(n=300), 45, dict(n=4, image_size=32)),
    BenchRow("cub-index", "indexing an 11,788-image CUB annotation tree", dict(images=11788), 45,
             dict(images=300, repeats=1)),
)


@dataclass
class Result:
    step: str
    what: str
    status: str  # ok | failed | timeout | skipped
    seconds: float = 0.0
    command: str = ""
    headline: str = ""
    figures: dict = field(default_factory=dict)
    output: str = ""


# -- headline figures ------------------------------------------------------------------------------------
_STEP_LINE = re.compile(r"^\s+(\S.*?)\s+([\d.]+) ms/step.*?x([\d.]+) vs float32 eager", re.M)
_SPEED_UP = re.compile(r"speed-up[^:\d]*:?\s*x?([\d.]+)x?")
_CACHED = re.compile(r"cached.*?\s([\d.]+)x\s*$", re.M)
_CACHE_HIT_MISS = re.compile(r"speed-up of a cache hit: x([\d.]+) .*?a cache miss: x([\d.]+)")


def figures_of(bench: str, report: str) -> tuple[str, dict]:
    """The table's one-line result and the JSON's figures, read from a benchmark's report."""
    if bench == "train-step":
        figures = {label: {"ms_per_step": float(ms), "speed_up_vs_float32_eager": float(ratio)}
                   for label, ms, ratio in _STEP_LINE.findall(report)}
        text = "; ".join(f"{label} {v['ms_per_step']:.2f} ms" + (f" (x{v['speed_up_vs_float32_eager']:.2f})"
                                                                 if label != "float32 eager" else "")
                         for label, v in figures.items())
        return text, figures
    if bench == "output-cache":
        found = _CACHE_HIT_MISS.search(report)
        if found is None:
            return "", {}
        hit, miss = float(found.group(1)), float(found.group(2))
        return (f"hit x{hit:.2f}, miss x{miss:.2f} vs the network alone",
                {"hit_speed_up": hit, "miss_speed_up": miss})
    match = (_CACHED if bench == "synthetic" else _SPEED_UP).search(report)
    if match is None:
        return "", {}
    return f"x{float(match.group(1)):.2f} vs the baseline of the same run", {"speed_up": float(match.group(1))}


# -- running steps ---------------------------------------------------------------------------------------
def _command_text(argv: list[str]) -> str:
    return " ".join(argv).replace(sys.executable, "python")


def run_process(argv: list[str], timeout_s: float) -> tuple[str, int | None, str, float]:
    """Run ``argv`` in its own process group; kill the whole group on timeout (torch.compile's workers
    included). Returns ``(status, returncode, output, seconds)``."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        status = "timeout"
    return status, proc.returncode, output or "", time.perf_counter() - start


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _alarm(seconds: float):
    """A soft timeout for in-process runs (fires between Python bytecodes)."""
    def fire(_signum, _frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bench_argv(bench: str, params: dict) -> list[str]:
    argv = [sys.executable, "-m", "benchmark", "bench", bench]
    for key, value in params.items():
        argv += ["-p", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return argv


def run_bench(row: BenchRow, params: dict, timeout_s: float, in_process: bool) -> Result:
    argv = bench_argv(row.bench, params)
    result = Result(f"bench {row.bench}", row.label, "ok", command=_command_text(argv))
    if in_process:  # --quick: one interpreter for every row (a fresh one costs seconds on a small CPU)
        from benchmark.core.registry import BENCHES

        start = time.perf_counter()
        try:
            with _alarm(timeout_s):
                result.output = BENCHES.get(row.bench)(**params)
        except _Timeout:
            result.status = "timeout"
        except Exception as exc:  # noqa: BLE001 -- report and go on: one broken bench must not hide the others
            result.status, result.output = "failed", f"{type(exc).__name__}: {exc}"
        result.seconds = time.perf_counter() - start
    else:
        result.status, _, result.output, result.seconds = run_process(argv, timeout_s)
    if result.status == "ok":
        result.headline, result.figures = figures_of(row.bench, result.output)
    elif result.status == "timeout":
        result.headline = f"no result within {timeout_s:.0f} s"
    else:
        result.headline = _last_line(result.output)
    return result


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def run_install(timeout_s: float) -> Result:
    argv = [sys.executable, *INSTALL]
    build = ROOT / "build"
    existed = build.exists()
    status, _, output, seconds = run_process(argv, timeout_s)
    if not existed and build.is_dir():  # setuptools' scratch folder from this install: leave the tree as found
        import shutil

        shutil.rmtree(build, ignore_errors=True)
    headline = "installed (editable, no dependencies)" if status == "ok" else _last_line(output)
    return Result("install", "pip install --no-deps --no-build-isolation -e .", status, seconds,
                  _command_text(argv), headline, output=output)


def run_cuda_tests(quick: bool, timeout_s: float) -> Result:
    """``pytest -m cuda`` (the whole suite's CUDA tests; ``--quick``: tests/test_cuda.py only, which skips
    on a CPU); without pytest, the ``test_*`` functions of tests/test_cuda.py called directly."""
    target = [str(ROOT / "tests" / "test_cuda.py")] if quick else [str(ROOT / "tests")]
    if importlib.util.find_spec("pytest") is None:
        return _cuda_checks_without_pytest(timeout_s)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "-rfEs", *target]
    status, code, output, seconds = run_process(argv, timeout_s)
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|skipped|deselected|error)", line)]
    headline = summary[-1].strip("= ") if summary else _last_line(output)
    if code == 5:  # pytest: no test collected
        status, headline = "failed", "no CUDA test was collected (-m cuda)"
    return Result("tests", "CUDA tests (pytest -m cuda)", status, seconds, _command_text(argv), headline,
                  output=output)


def _cuda_checks_without_pytest(timeout_s: float) -> Result:
    import torch

    what = "CUDA checks of tests/test_cuda.py (pytest is not installed: the other CUDA tests need it)"
    spec = importlib.util.spec_from_file_location("partbench_cuda_checks", ROOT / "tests" / "test_cuda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checks = sorted(n for n in vars(module) if n.startswith("test_"))
    if not torch.cuda.is_available():
        return Result("tests", what, "skipped", headline=f"no CUDA device ({len(checks)} checks not run)")
    start = time.perf_counter()
    failures, passed, lines = [], 0, []
    for name in checks:
        remaining = timeout_s - (time.perf_counter() - start)
        try:
            with _alarm(remaining):
                getattr(module, name)()
            passed += 1
            lines.append(f"PASSED {name}")
        except _Timeout:
            failures.append(name)
            lines.append(f"TIMEOUT {name}")
            break
        except Exception as exc:  # noqa: BLE001 -- each check reports its own failure
            failures.append(name)
            lines.append(f"FAILED {name}: {type(exc).__name__}: {exc}")
    status = "failed" if failures else "ok"
    return Result("tests", what, status, time.perf_counter() - start, "(direct calls)",
                  f"{passed} passed, {len(failures)} failed", output="\n".join(lines))


# -- the run ---------------------------------------------------------------------------------------------
def environment(quick: bool) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads(),
           "mode": "quick (CPU, tiny sizes: not GPU figures)" if quick else "full (GPU, paper sizes)"}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(device=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2 ** 30, 1), cudnn=torch.backends.cudnn.version())
    try:
        import faiss

        env["faiss"] = getattr(faiss, "__version__", "?")
        env["faiss_gpus"] = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        env["faiss"] = None
    with contextlib.suppress(Exception):
        env["git_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                           text=True, timeout=10).stdout.strip() or None
    return env


def missing_module(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        __import__(name)
    except ImportError as exc:
        return f"{name} is not installed ({exc}); install it to run this benchmark"
    return None


def json_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu-check.json"
    return Path.cwd() / f"gpu-check-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}.json"


def table(results: list[Result]) -> str:
    rows = [(r.step, r.what, r.status, f"{r.seconds:.1f}", r.headline) for r in results]
    headers = ("step", "what", "status", "s", "result")
    try:
        from tabulate import tabulate

        return tabulate(rows, headers=headers, tablefmt="github")
    except ImportError:
        return "\n".join(" | ".join(map(str, row)) for row in (headers, *rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/gpu-check.sh",
        description="Install partbench, run its CUDA tests and every `benchmark bench` at paper sizes on the GPU; "
                    "print one table and write a JSON file (into $OUT when set).",
        epilog="Examples:\n  tools/gpu-check.sh\n  tools/gpu-check.sh --quick --no-install   # CPU dry run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="dry run on the CPU at tiny sizes (not GPU figures)")
    parser.add_argument("--no-install", action="store_true", help="skip `pip install --no-deps -e .`")
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"time budget of the whole run in seconds (default {DEFAULT_BUDGET_S}; --quick {QUICK_BUDGET_S})")
    parser.add_argument("--json", dest="json_file", default=None,
                        help="where to write the JSON (default $OUT/gpu-check.json, else ./gpu-check-<UTC time>.json)")
    parser.add_argument("--only", action="append", default=[], metavar="BENCH",
                        help="only this benchmark (repeatable), e.g. --only train-step")
    args = parser.parse_args(argv)

    import torch

    if not args.quick and not torch.cuda.is_available():
        print("error: no CUDA device is visible (torch.cuda.is_available() is False); run "
              "tools/gpu-check.sh --quick for a dry run on the CPU", file=sys.stderr)
        return 2
    known = {row.bench for row in ROWS}
    unknown = sorted(set(args.only) - known)
    if unknown:
        print(f"error: --only {', '.join(unknown)}: not a benchmark of this check; choose from "
              f"{', '.join(sorted(known))}", file=sys.stderr)
        return 2
    budget = args.budget if args.budget is not None else (QUICK_BUDGET_S if args.quick else DEFAULT_BUDGET_S)
    out = json_path(args.json_file)
    began = time.perf_counter()

    def remaining() -> float:
        return budget - (time.perf_counter() - began)

    def log(message: str) -> None:
        print(f"[gpu-check {time.perf_counter() - began:6.1f} s] {message}", file=sys.stderr, flush=True)

    results: list[Result] = []
    if not args.no_install:
        log("installing the project: pip " + " ".join(INSTALL[2:]))
        results.append(run_install(min(120.0, remaining())))
    if not args.no_tests:
        log("running the CUDA tests")
        results.append(run_cuda_tests(args.quick, min(150.0, remaining())))
    rows = [row for row in ROWS if not args.only or row.bench in args.only]
    for i, row in enumerate(rows, 1):
        params = row.quick if args.quick else row.params
        what = row.label if not args.quick else (
            "quick, CPU: " + " ".join(f"{k}={v}" for k, v in params.items() if k != "device") if params else row.label)
        if params is None:
            results.append(Result(f"bench {row.bench}", row.label, "skipped", headline=f"not in --quick: {row.why_not_quick}"))
            continue
        reason = missing_module(row.needs)
        if reason:
            results.append(Result(f"bench {row.bench}", what, "skipped", headline=reason))
            continue
        timeout_s = min(row.timeout_s, remaining())
        if timeout_s < 5:
            results.append(Result(f"bench {row.bench}", what, "skipped",
                                  headline=f"out of the time budget ({budget:.0f} s)"))
            continue
        log(f"[{i}/{len(rows)}] benchmark bench {row.bench}: {what} (timeout {timeout_s:.0f} s)")
        result = run_bench(row, params, timeout_s, in_process=args.quick)
        result.what = what
        results.append(result)

    report = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "environment": environment(args.quick), "budget_s": budget,
              "total_s": round(time.perf_counter() - began, 1),
              "steps": [vars(r) | {"seconds": round(r.seconds, 2)} for r in results]}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(table(results))
    if args.quick:
        print("(--quick: a dry run on the CPU at tiny sizes; these are not GPU figures)")
    print(f"total {report['total_s']:.0f} s; JSON written to {out}")
    return 1 if any(r.status in ("failed", "timeout") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
