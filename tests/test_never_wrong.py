"""Issue "never a wrong number": each case printed a number (or took bad input) and exited 0 before.

Empty evaluations, a missing per-view predictions file, a truncated result file, impossible keypoints,
file modes, stale temporaries, concurrent runs, leftovers of failed commands and where `report` writes.
"""

from __future__ import annotations

import csv
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.core.errors import EmptyEvaluationError, UserError
from helpers import invoke, one_error_line

TINY = ["-o", "num_train=8", "-o", "num_test=8", "-o", "image_size=32"]


# -- 1. zero items / fewer items than labels ---------------------------------------------------------
def test_contingency_table_refuses_to_score_nothing():
    from benchmark.metrics.clustering import ContingencyTable

    table = ContingencyTable()
    assert table.nmi() == 1.0  # the pure function still follows scikit-learn ...
    with pytest.raises(EmptyEvaluationError, match="0 items"):
        table.require_items()  # ... but a reported metric asks first
    table.update([0, 1, 1], [0, 0, 1])
    with pytest.raises(EmptyEvaluationError, match="only 3 .* fewer than the 4 labels"):
        table.require_items(4)
    table.require_items(3)


@pytest.mark.parametrize("name", ["fg_nmi", "fg_ari", "nmi", "ari"])
def test_registered_metrics_raise_on_empty_and_too_few(name):
    from benchmark.core.registry import METRICS

    metric = METRICS.get(name)(num_parts=4)
    with pytest.raises(EmptyEvaluationError):
        metric.compute()
    metric.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    with pytest.raises(EmptyEvaluationError, match="fewer than"):
        metric.compute()
    metric.update(torch.arange(5) % 3, torch.arange(5) % 2)
    assert np.isfinite(metric.compute())


def test_run_over_zero_images_is_an_error_naming_the_view(tmp_path):
    out = tmp_path / "runs"
    result = invoke("run", "-m", "random", "-d", "synthetic", "-o", "num_test=0", "--metric", "nmi", "--out", out,
                    "-q")
    one_error_line(result, "nmi", "view 'full'", "no full pixels to score")
    assert not out.exists()  # a failed run leaves no (empty) output folder


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_part_scores_are_refused_not_scored(tmp_path, monkeypatch, bad):
    """NaN (a diverged training, a damaged checkpoint) used to go through the argmax into FG-NMI/NMI numbers."""
    import dataclasses

    from benchmark.core.registry import METHODS

    cls = METHODS.get("random")
    predict = cls.predict

    def broken(self, batch):
        maps = predict(self, batch)
        scores = maps.scores.clone()
        scores[1, 0, 0, 0] = bad  # one value of the second image
        return dataclasses.replace(maps, scores=scores)

    monkeypatch.setattr(cls, "predict", broken)
    out = tmp_path / "runs"
    result = invoke("run", "-m", "random", "-d", "synthetic", *TINY, "--metric", "fg_nmi", "--metric", "nmi",
                    "--out", out, "-q")
    one_error_line(result, "method 'random' predicted NaN or infinite part scores for test/000001 ", "view 'fg'",
                   "check the model")
    assert not out.exists()


def test_batch_size_minus_one_is_refused_at_the_cli_edge(tmp_path):
    result = invoke("run", "-m", "random", "-d", "synthetic", "--eval-batch-size", "-1", "--metric", "fg_nmi",
                    "--out", tmp_path / "r")
    one_error_line(result, "--eval-batch-size", "-1")
    result = invoke("run", "-m", "random", "-d", "synthetic", "--batch-size", "0", "--out", tmp_path / "r")
    one_error_line(result, "--eval-batch-size")  # the old spelling is still checked
    assert not (tmp_path / "r").exists()


# -- 2. a missing predictions file is never replaced by another view's ------------------------------
def test_missing_per_view_prediction_is_an_error_or_a_counted_skip(tmp_path):
    exported = tmp_path / "E"
    assert invoke("export", "-m", "random", "-d", "synthetic", *TINY, "--out", exported, "-q").exit_code == 0
    (exported / "test" / "fg" / "test" / "000003.npz").unlink()
    assert (exported / "test" / "full" / "test" / "000003.npz").is_file()  # the stand-in of the old lookup
    result = invoke("run", "-m", "predictions", "-p", f"dir={exported}", "-d", "synthetic", *TINY,
                    "--out", tmp_path / "runs", "-q")
    one_error_line(result, "missing part maps for image 'test/000003'", "on_missing=skip")
    result = invoke("run", "-m", "predictions", "-p", f"dir={exported}", "-p", "on_missing=skip", "-d", "synthetic",
                    *TINY, "--out", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(next((tmp_path / "runs").rglob("*.csv")))))
    assert {r["skipped_images"] for r in rows} == {"1"}


# -- 3. a truncated or edited result file is refused by name -----------------------------------------
def _one_run(tmp_path) -> Path:
    out = tmp_path / "runs"
    assert invoke("run", "-m", "random", "-d", "synthetic", *TINY, "--out", out, "-q").exit_code == 0
    return next(out.rglob("*.csv"))


@pytest.mark.parametrize("damage", ["cut_mid_row", "drop_last_row", "drop_first_row", "no_check_column"])
def test_report_refuses_a_damaged_result_file(tmp_path, damage):
    path = _one_run(tmp_path)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if damage == "cut_mid_row":
        damaged = text[: len(text) - len(lines[-1]) // 2]
    elif damage == "drop_last_row":
        damaged = "".join(lines[:-1])
    elif damage == "drop_first_row":
        damaged = "".join(lines[:1] + lines[2:])
    else:
        damaged = "".join(",".join(line.rstrip("\n").split(",")[:-1]) + "\n" for line in lines)
    path.write_text(damaged)
    tables = tmp_path / "tables"
    result = invoke("report", tmp_path / "runs", "--out", tables)
    one_error_line(result, "damaged result file", str(path))
    assert not tables.exists()


def test_a_damaged_result_is_recomputed_not_reused(tmp_path):
    path = _one_run(tmp_path)
    path.write_text(path.read_text()[:-40])
    result = invoke("run", "-m", "random", "-d", "synthetic", *TINY, "--out", tmp_path / "runs", "-q")
    assert result.exit_code == 0 and "[reused]" not in result.output
    from benchmark.results import read_rows

    assert len(read_rows(path)) == 5


# -- 4. impossible keypoints --------------------------------------------------------------------------
def _cub_with(tmp_path, edits: dict[int, str]) -> Path:
    from test_datasets_cub import write_tree

    root = write_tree(tmp_path / "CUB_200_2011")
    path = root / "parts" / "part_locs.txt"
    lines = path.read_text().splitlines()
    for number, line in edits.items():
        lines[number - 1] = line
    path.write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("line, expected", [
    ("1 1 99999.0 -5000.0 1", "line 1: keypoint 1 of image 1 is a visible keypoint at (99999, -5000)"),
    ("1 1 nan 20.0 1", "line 1: keypoint value is not a finite number"),
    ("1 1 30.0 20.0 7", "line 1: keypoint 1 of image 1 has visibility 7"),
])
def test_impossible_keypoint_is_an_error_naming_file_and_line(tmp_path, line, expected):
    import benchmark.datasets as D

    root = _cub_with(tmp_path, {1: line})
    with pytest.raises(UserError) as info:
        D.load("cub", root, split="test", view="fg")
    assert "part_locs.txt" in str(info.value) and expected in str(info.value)


def test_keypoint_beyond_the_far_edge_is_an_error_when_loaded(tmp_path):
    import benchmark.datasets as D

    root = _cub_with(tmp_path, {1: "1 1 81.5 20.0 1"})  # image 1 is 80 px wide: 1.5 px outside
    data = D.load("cub", root, split="test", view="fg")
    with pytest.raises(UserError, match=r"part_locs.txt, line 1: visible keypoint 1 .* outside the 80x60 image"):
        data[0]
    inside = _cub_with(tmp_path / "ok", {1: "1 1 80.9 20.0 1"})  # within a pixel of the edge: fine
    D.load("cub", inside, split="test", view="fg")[0]


def test_data_check_lists_every_impossible_keypoint(tmp_path):
    root = _cub_with(tmp_path, {1: "1 1 81.5 20.0 1", 2: "1 2 30.0 99.0 1", 17: "2 2 -9.0 4.0 1"})
    result = invoke("data", "check", "-d", "cub", "--data-root", root, "-q")
    assert result.exit_code == 2
    for line in ("line 1:", "line 2:", "line 17:"):
        assert f"part_locs.txt, {line}" in result.output, result.output
    nan = _cub_with(tmp_path / "nan", {3: "1 3 nan 4.0 1", 20: "2 5 1.0 inf 1"})
    result = invoke("data", "check", "-d", "cub", "--data-root", nan, "-q")
    assert result.exit_code == 2
    assert "line 3: keypoint value is not a finite number" in result.output
    assert "line 20: keypoint value is not a finite number" in result.output


# -- files a team can share ---------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path, umask):
    from benchmark.core.atomic import atomic_torch_save, atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.csv", "x\n")
        atomic_torch_save({"w": torch.zeros(1)}, tmp_path / "m.pt")
        with open(tmp_path / "plain", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    want = stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.csv", "m.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == want


def test_result_files_of_a_run_are_readable_by_the_group(tmp_path):
    old = os.umask(0o022)
    try:
        path = _one_run(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    from benchmark.core import atomic

    host = atomic._HOST
    dead = tmp_path / f".step_000005.pt.pb-{host}-{_dead_pid()}.abc123.tmp"
    alive = tmp_path / f".results.csv.pb-{host}-{os.getpid()}.def456.tmp"
    other_host = tmp_path / f".results.csv.pb-otherhost-{_dead_pid()}.ghi789.tmp"
    for p in (dead, alive, other_host):
        p.write_bytes(b"")
    atomic.atomic_torch_save({"w": torch.zeros(1)}, tmp_path / "step_000010.pt")  # a checkpoint write
    assert not dead.exists() and alive.exists() and other_host.exists()


def test_run_waits_for_another_process_computing_the_same_key_then_reuses(tmp_path):
    from benchmark.core.atomic import exclusive_lock
    from benchmark.runner import RunConfig, result_path, run

    config = RunConfig(method="random", dataset="synthetic",
                       dataset_options={"num_train": 8, "num_test": 8, "image_size": 32})
    out = tmp_path / "runs"
    path = result_path(out, config)
    held = threading.Event()

    def other_process():  # holds the lock while it computes and writes the run, as a concurrent run would
        from benchmark.results import write_rows

        with exclusive_lock(path.with_name(path.name + ".lock")):
            held.set()
            rows = run(config, out_dir=None).rows
            time.sleep(1.0)
            write_rows(path, rows)

    thread = threading.Thread(target=other_process)
    thread.start()
    held.wait()
    with pytest.warns(UserWarning, match="another process .* is computing this run"):
        result = run(config, out_dir=out)
    thread.join()
    assert result.reused


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    import json

    from benchmark.runner import RunConfig, result_path, run

    config = RunConfig(method="random", dataset="synthetic",
                       dataset_options={"num_train": 8, "num_test": 8, "image_size": 32})
    path = result_path(tmp_path, config)
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    assert not run(config, out_dir=tmp_path).reused
    assert not lock.exists()


def test_two_identical_runs_at_once_compute_once(tmp_path):
    args = [sys.executable, "-m", "benchmark", "run", "-m", "random", "-d", "synthetic", *TINY, "--out",
            str(tmp_path / "runs"), "-q"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum("[reused]" in o for o in outputs) == 1, outputs
    assert len(list((tmp_path / "runs").rglob("*.csv"))) == 1
    assert not list((tmp_path / "runs").rglob("*.lock"))


# -- report ----------------------------------------------------------------------------------------------
def test_report_writes_next_to_its_input_or_to_out(tmp_path, monkeypatch):
    _one_run(tmp_path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke("report", tmp_path / "runs").exit_code == 0
    assert {p.name for p in (tmp_path / "runs").glob("results.*")} == {"results.csv", "results.md", "results.tex"}
    assert not list(elsewhere.iterdir())
    again = invoke("report", tmp_path / "runs")  # its own tables are not mistaken for result files
    assert again.exit_code == 0, again.output
    assert invoke("report", tmp_path / "runs", "--out", tmp_path / "t", "--name", "x").exit_code == 0
    assert (tmp_path / "t" / "x.tex").is_file()


def test_report_bad_decimals_leaves_nothing(tmp_path):
    _one_run(tmp_path)
    result = invoke("report", tmp_path / "runs", "--decimals", "-3", "--out", tmp_path / "t")
    one_error_line(result, "--decimals")
    assert not (tmp_path / "t").exists()


def test_latex_right_aligns_numbers(tmp_path):
    _one_run(tmp_path)
    result = invoke("report", tmp_path / "runs", "--format", "latex", "--out", tmp_path / "t")
    # method and supervision left-aligned, then the numbers
    assert "\\begin{tabular}{llrrrrrr}" in result.output and "\\toprule" in result.output


# -- the README tour as a new user meets it -------------------------------------------------------------
def test_list_marks_missing_weights_and_keeps_descriptions_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    result = invoke("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    kmeans = lines.index(next(line for line in lines if line.strip().startswith("kmeans")))
    # one short line per method; the fixes with --verbose, which the last line points to
    assert "needs weights: ImageNet weights for vgg19 (vgg19-dcbb9e9d.pth)" in lines[kmeans + 1]
    assert "-p weights=" not in lines[kmeans + 1] and "benchmark list --verbose" in lines[-1]
    verbose = invoke("list", "--verbose").output.splitlines()
    assert "needs weights" in verbose[kmeans + 1] and "-p weights=" in verbose[kmeans + 1]
    assert "--verbose" not in verbose[-1]
    random_line = lines.index(next(line for line in lines if line.strip().startswith("random ")))
    assert lines[random_line + 1].strip() == "-> ok"
    for line in lines:
        if line.startswith("  ") and not line.strip().startswith("->") and "[" in line:
            description = line.split("  [")[0].strip()
            assert description.endswith((".", ")", ":")) or "BROKEN" in description, line


def test_run_on_synthetic_without_weights_uses_random_weights_loudly(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    result = invoke("run", "-m", "kmeans", "-d", "synthetic", *TINY, "--out", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    assert "RANDOM weights" in result.output
    rows = list(csv.DictReader(open(next((tmp_path / "runs").rglob("*.csv")))))
    assert all("random" in r["weights"] for r in rows)


def test_train_help_shows_the_real_preset_values():
    from benchmark.methods.ours.presets import PRESETS

    text = " ".join(invoke("train", "--help").output.split())  # click wraps the preset column at any width
    tiny = PRESETS["tiny"]
    assert f"ours tiny" in text and f"{tiny.steps:,} steps, batch {tiny.batch_size}, {tiny.image_size} px" in text
    assert f"checkpoint every {tiny.checkpoint_every:,} steps" in text
    assert tiny.checkpoint_every < tiny.steps  # a killed tiny run has something to resume from


def test_train_with_random_weights_warns_like_run(tmp_path, one_torch_thread):
    result = invoke("train", "-d", "synthetic", *TINY, "--preset", "tiny", "--init", "random", "-p",
                    "vgg_weights=random", "--steps", "1", "--image-size", "32", "--train-batch-size", "3",
                    "--num-workers", "0", "--out", tmp_path / "t", "-q")
    assert result.exit_code == 0, result.output
    assert "warning: training with RANDOM weights (init=random, vgg_weights=random)" in result.output


def test_export_view_fg_prints_a_command_that_runs(tmp_path):
    import shlex

    result = invoke("export", "-m", "random", "-d", "synthetic", *TINY, "--view", "fg", "--out", tmp_path / "E",
                    "-q")
    assert result.exit_code == 0, result.output
    hint = result.output.split("evaluate with: ", 1)[1].strip()
    args = shlex.split(hint)[1:] + ["--out", str(tmp_path / "runs"), "-q"]
    again = invoke(*args)
    assert again.exit_code == 0, again.output


def test_bench_metrics_prints_its_phases():
    result = invoke("bench", "metrics", "-p", "n=1000")
    assert result.exit_code == 0, result.output
    assert "ContingencyTable: update + nmi + ari" in result.output and "speed-up" in result.output


# -- issue 23: a metric named twice, damaged predictions descriptions and files ----------------------------
def test_a_metric_named_twice_is_scored_and_written_once(tmp_path):
    result = invoke("run", "-m", "random", "-d", "synthetic", *TINY, "--metric", "fg_nmi", "--metric", "fg_nmi",
                    "--out", tmp_path / "r", "-q", "--no-cache")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(next((tmp_path / "r").rglob("*.csv")).open()))
    assert [row["metric"] for row in rows] == ["fg_nmi"]
    again = invoke("run", "-m", "random", "-d", "synthetic", *TINY, "--metric", "fg_nmi", "--out", tmp_path / "r",
                   "-q", "--no-cache")
    assert "[reused]" in again.output  # the same run: the duplicate does not change the run key


@pytest.fixture(scope="module")
def exported_maps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported") / "E"
    assert invoke("export", "-m", "random", "-d", "synthetic", *TINY, "--out", folder, "-q").exit_code == 0
    return folder


@pytest.mark.parametrize("damage, fragment", [
    ({"num_parts": "four"}, "'num_parts' must be a positive integer, got 'four'"),
    ({"num_parts": 0}, "'num_parts' must be a positive integer"),
    ({"folders": 5}, "'folders' must be a list of folder names, got 5"),
    ({"folders": [1, 2]}, "'folders' must be a list of folder names"),
    ({"has_background": "yes"}, "'has_background' must be true or false"),
    ("truncated", "cannot read part maps"),
])
def test_a_damaged_predictions_folder_is_named_in_one_line(damage, fragment, exported_maps, tmp_path):
    import json
    import shutil

    folder = tmp_path / "E"
    shutil.copytree(exported_maps, folder)
    if damage == "truncated":
        for path in folder.rglob("*.npz"):
            path.write_bytes(path.read_bytes()[:100])
    else:
        sidecar = folder / "predictions.json"
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), **damage}))
    result = invoke("run", "-m", "predictions", "-p", f"dir={folder}", "-d", "synthetic", *TINY,
                    "--out", tmp_path / "runs", "-q", "--no-cache")
    one_error_line(result, fragment)
    assert not (tmp_path / "runs").exists()
