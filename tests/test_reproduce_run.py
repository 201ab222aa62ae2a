"""`benchmark reproduce` end to end: tables beside published numbers, a rerun recomputes nothing, the local
process pool and the submitit path give the same tables, and a killed synthetic run resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmark.cli import cli

TINY = """\
description = "two fast methods on tiny synthetic data"

[methods.rnd]
method = "random"

[methods.km]
method = "kmeans"
params = { weights = "random", niter = 5, nredo = 1, batch_size = 8 }

[[experiment]]
name = "tiny"
title = "Tiny"
methods = ["rnd", "km"]
datasets = ["synthetic"]
seeds = "0-1"
protocols = ["legacy", "corrected"]

[experiment.dataset_options]
synthetic = { num_train = 8, num_test = 8, image_size = 32 }

[[published]]
method = "km"
dataset = "synthetic"
num_parts = 4
metric = "nmi"
mean = 50.0
std = 1.5
"""


def invoke(*args):
    return CliRunner().invoke(cli, ["reproduce", *map(str, args)])


def ledger_state(out: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in sorted((out / "steps").glob("*.json"))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    plan = base / "tiny.toml"
    plan.write_text(TINY)
    out, cache = base / "out", base / "cache"
    result = invoke(plan, "--out", out, "--cache-dir", cache, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return plan, out, cache, result.output


def test_tables_put_each_cell_beside_the_published_one(tiny):
    import pandas as pd

    _, out, _, output = tiny
    assert "done  report" in output
    markdown = (out / "tables" / "tiny.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert "NMI legacy" in header and "NMI paper" in header and "Δ" in header and "NMI corrected" in header
    assert header.index("NMI legacy") < header.index("NMI paper") < header.index("NMI corrected")
    long = pd.read_csv(out / "tables" / "tiny.csv")
    cell = long[(long.method == "km") & (long.metric == "nmi") & (long.protocol == "legacy")].iloc[0]
    assert cell.seeds == 2 and cell.published_mean == 50.0 and cell.published_std == 1.5
    assert cell.difference == pytest.approx(cell["mean"] - 50.0, abs=1e-3)
    # The mean is the mean of the two seeds' result rows, x100.
    from benchmark.results import load_results

    rows = load_results([out / "runs"])
    values = rows[(rows.method == "kmeans") & (rows.metric == "nmi") & (rows.protocol == "legacy")]["value"]
    assert len(values) == 2 and cell["mean"] == pytest.approx(100 * values.mean(), abs=1e-3)
    row = next(line for line in markdown.splitlines() if line.startswith("| km"))
    assert row.split("|")[2].strip() == "fg-masks"  # the supervision track, beside the method
    assert f"{cell['mean'] - 50.0:+.2f}" in row and "50.0 ± 1.5" in row and " ± " in row.split("|")[3]
    assert "–" not in markdown.split("| rnd")[1].split("|")[2]  # rnd has its own cells; only paper/Δ are empty
    latex = (out / "tables" / "tiny.tex").read_text()
    assert r"$\Delta$" in latex and r"\begin{table}" in latex


def test_rerun_recomputes_nothing_and_dry_run_estimates_from_measured_times(tiny, tmp_path):
    plan, out, cache, _ = tiny
    before = ledger_state(out)
    runs_before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.csv")}
    result = invoke(plan, "--out", out, "--cache-dir", cache, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "0 to do" in result.output and "start " not in result.output
    assert ledger_state(out) == before
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.csv")} == runs_before
    # A third seed: its steps are to do, with an estimate measured on the finished ones.
    bigger = tmp_path / "bigger.toml"
    bigger.write_text(TINY.replace('seeds = "0-1"', 'seeds = "0-2"'))
    result = invoke(bigger, "--dry-run", "--out", out, "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert "  done     evaluate/km/synthetic/K4/seed1/legacy/gt" in result.output
    assert "  to do    evaluate/km/synthetic/K4/seed2/legacy/gt  ~" in result.output and "(measured)" in result.output


def test_html_report_is_self_contained_with_every_table_and_image(tiny, tmp_path):
    from html.parser import HTMLParser

    _, out, _, _ = tiny

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.images, self.links, self.external = 0, [], [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            self.tables += tag == "table"
            if tag == "img":
                self.images.append(attrs.get("src", ""))
            if tag in ("link", "script", "iframe", "object", "embed", "source", "video", "audio"):
                self.links.append(tag)
            for name in ("src", "href", "srcset", "data", "poster", "action"):
                value = attrs.get(name)
                if value is not None and not value.startswith(("data:", "#")):
                    self.external.append((tag, name, value[:60]))

    def check(path: Path, tables: int, images: int) -> None:
        text = path.read_text()
        page = Page()
        page.feed(text)
        assert page.tables == tables
        assert len(page.images) == images and all(s.startswith("data:image/png;base64,") for s in page.images)
        assert not page.links and not page.external
        lowered = text.lower()
        assert "url(" not in lowered and "@import" not in lowered and "http://" not in lowered
        assert "https://" not in lowered

    # The reproduce folder: its reproduction tables, one figure, provenance of every step.
    tables = json.loads((out / "tables" / "tiny.json").read_text())["tables"]
    figures = list((out / "figures").glob("*.png"))
    steps = list((out / "steps").glob("*.json"))
    text = (out / "report.html").read_text()
    assert "Provenance" in text and "GPU-h" in text and "Mask quality" in text
    check(out / "report.html", tables=len(tables) + 2, images=len(figures))  # + steps and runs provenance
    assert len(figures) == 1 and len(steps) >= 10
    # `benchmark report --format html` on any folder of results (here: plain `benchmark run` output).
    runs = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["run", "-m", "random", "-d", "synthetic", "-o", "num_test=8", "-o", "num_train=8", "-o",
                                      "image_size=32", "--seed", "0", "--seed", "1", "--out", str(runs), "-q"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["report", str(runs), "--format", "html", "--out", str(tmp_path), "--name", "page"])
    assert result.exit_code == 0, result.output
    check(tmp_path / "page.html", tables=2, images=0)  # one result table + the runs' provenance
    assert "random" in (tmp_path / "page.html").read_text()


def test_process_pool_and_submitit_local_give_the_same_tables(tmp_path):
    # One method, seed and protocol: every step is a fresh process here, so keep their number small.
    plan = tmp_path / "one.toml"
    plan.write_text(TINY.replace('["rnd", "km"]', '["rnd"]').replace('"0-1"', '"0"')
                    .replace('["legacy", "corrected"]', '["corrected"]\nfigures = false'))
    cache = tmp_path / "cache"
    result = invoke(plan, "--out", tmp_path / "local", "--cache-dir", cache, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    expected = (tmp_path / "local" / "tables" / "tiny.csv").read_text()
    pool = tmp_path / "pool"
    result = invoke(plan, "--out", pool, "--cache-dir", cache, "-q", "--device", "cpu", "--num-workers", "2")
    assert result.exit_code == 0, result.output
    assert (pool / "tables" / "tiny.csv").read_text() == expected
    slurm = tmp_path / "slurm"
    result = invoke(plan, "--out", slurm, "--cache-dir", cache, "-q", "--device", "cpu", "--executor", "slurm",
                    "--slurm", "cluster=local", "--slurm", "timeout_min=10")
    assert result.exit_code == 0, result.output
    assert "submitted evaluate/rnd/synthetic/K4/seed0/corrected/gt as job" in result.output
    assert (slurm / "tables" / "tiny.csv").read_text() == expected
    assert (slurm / "report.html").is_file() and (slurm / "submitit").is_dir()


def test_slurm_submission_has_dependencies_and_resources_per_step_kind(tmp_path):
    from benchmark.reproduce.executors import submission_plan
    from benchmark.reproduce.graph import Settings, build_graph
    from benchmark.reproduce.plan import load_plan

    settings = Settings(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    steps = build_graph(load_plan("synthetic"), settings)
    plan = {step.id: (params, waits) for step, params, waits in
            submission_plan(steps, {"train": {"slurm_partition": "gpu"}}, {"slurm_account": "lab"})}
    params, waits = plan["evaluate/ours/synthetic/K4/seed0/legacy/gt"]
    assert waits == ["train/ours/synthetic/K4/seed0"] and params["gpus_per_node"] == 1
    params, waits = plan["train/ours/synthetic/K4/seed0"]
    assert waits == [] and params["gpus_per_node"] == 1 and params["slurm_partition"] == "gpu"
    assert params["slurm_account"] == "lab" and params["name"] == "partbench-train"
    params, waits = plan["tables/synthetic-methods"]
    assert params["gpus_per_node"] == 0 and "slurm_partition" not in params
    methods = next(e.methods for e in load_plan("synthetic").experiments if e.name == "synthetic-methods")
    assert len(waits) == len(methods) * 2 and all(w.startswith("evaluate/") for w in waits)  # x 2 protocols
    assert plan["report"][1] and all(w.startswith(("tables/", "figures/", "masks-score/")) for w in plan["report"][1])
    assert {"masks-score/synthetic", "masks-score/unsupervised-spectral-random/synthetic"} <= set(plan["report"][1])
    # The mask steps: the fg/bg model trains on a GPU, its masks are predicted after it, evaluations wait for both.
    params, waits = plan["fgbg-train/synthetic"]
    assert waits == [] and params["gpus_per_node"] == 1 and params["name"] == "partbench-fgbg-train"
    assert plan["masks-predict/synthetic"][1] == ["fgbg-train/synthetic"]
    assert sorted(plan["evaluate/ours/synthetic/K4/seed0/legacy/fgbg"][1]) == ["masks-predict/synthetic",
                                                                             "train/ours/synthetic/K4/seed0"]
    # Without Slurm on this machine the slurm cluster is a clear error, before anything is submitted.
    result = invoke("synthetic", "--executor", "slurm", "--out", tmp_path / "x", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 2 and "sbatch is not available" in result.output and "cluster=local" in result.output


@pytest.mark.slow
def test_synthetic_plan_fills_every_cell_and_a_killed_run_resumes(tmp_path):
    """The shipped synthetic plan: killed after a few steps, rerun, nothing finished is recomputed, and every
    table cell is filled."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    command = [sys.executable, "-m", "benchmark", "reproduce", "synthetic", "--out", str(out), "--cache-dir",
               str(cache), "-q", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while len(list((out / "steps").glob("train-*.json"))) < 2 and process.poll() is None:
            assert time.monotonic() < deadline, "the synthetic plan made no progress"
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished = ledger_state(out)
    assert len(finished) >= 2
    models = {p: p.stat().st_mtime_ns for p in cache.rglob("model.pt")}
    result = invoke("synthetic", "--out", out, "--cache-dir", cache, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    after = ledger_state(out)
    assert all(after[name] == state for name, state in finished.items())  # finished steps untouched
    assert all(p.stat().st_mtime_ns == t for p, t in models.items())  # trained models reused, not retrained
    for name in [n for n in finished if n.startswith("train-")]:
        step_id = json.loads(finished[name][1])["id"]
        assert f"start {step_id}\n" not in result.output
    tables = [t for path in sorted((out / "tables").glob("*.json")) for t in json.loads(path.read_text())["tables"]]
    assert {t["experiment"] for t in tables} == {"synthetic-methods", "synthetic-k", "synthetic-seeds",
                                                 "synthetic-ablation", "synthetic-masks", "synthetic-unsup-masks"}
    for table in tables:
        assert table["rows"] and all(cell not in ("", "–") for row in table["rows"] for cell in row), table
    # Every mask source of the plan was evaluated with, and its quality is in the report.
    sources = {t["masks"] for t in tables if t["experiment"] == "synthetic-masks"}
    assert sources == {"gt", "fgbg", "unsupervised:spectral-random"}, sources
    scored = {r["masks"].split(":")[0] + ":" + r["metric"] for path in (out / "runs" / "synthetic" / "masks").glob("*.csv")
              for r in csv.DictReader(open(path))}
    assert scored == {f"{s}:{m}" for s in ("predicted", "unsupervised")
                      for m in ("mask_iou", "mask_precision", "mask_recall")}
    html = (out / "report.html").read_text()
    assert "Mask quality" in html and "unsupervised:spectral-random" in html
    assert "train/ours/synthetic/K4/seed0/trained-on-unsupervised-spectral-random" in html
    assert (out / "report.html").is_file() and len(list((out / "figures").glob("*.png"))) == 2


def test_generated_mask_sources(tmp_path):
    plan = tmp_path / "masks.toml"
    plan.write_text(TINY.replace('["rnd", "km"]', '["rnd"]').replace('"0-1"', '"0"')
                    .replace('["legacy", "corrected"]', '["corrected"]\nmasks = ["unsupervised:spectral-random"]'))
    result = invoke(plan, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "out" / "tables" / "tiny.md").read_text()
    assert "masks=unsupervised:spectral-random" in text


SHARED = """\
description = "two tables asking the same evaluations for different metrics (as paper's baselines and landmarks)"

[methods.rnd]
method = "random"

[[experiment]]
name = "all-metrics"
methods = ["rnd"]
datasets = ["synthetic"]
protocols = ["corrected"]
figures = false
[experiment.dataset_options]
synthetic = [{ num_train = 8, num_test = 8, image_size = 32 }]

[[experiment]]
name = "one-metric"
methods = ["rnd"]
datasets = ["synthetic"]
protocols = ["corrected"]
metrics = ["nmi"]
figures = false
[experiment.dataset_options]
synthetic = [{ num_train = 8, num_test = 8, image_size = 32, difficulty = 0.5 }, { num_train = 4 }]
"""


def test_an_evaluation_two_tables_ask_for_different_metrics_runs_once_and_the_report_counts_it_once(tmp_path):
    # `reproduce paper`'s report step failed after every evaluation had run: the landmarks table asks
    # landmark_error of a cell baselines scores with every metric, two runs wrote the same number, and the
    # report refused to count it twice. The shared measurement is now one evaluation with both tables' metrics;
    # each table shows its own, under its own name of the dataset variant (here with a default spelt out).
    plan = tmp_path / "shared.toml"
    plan.write_text(SHARED)
    out = tmp_path / "out"
    result = invoke(plan, "--out", out, "--cache-dir", tmp_path / "cache", "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    evaluations = [json.loads(p.read_text()) for p in (out / "steps").glob("evaluate-*.json")]
    assert len(evaluations) == 2, [e["id"] for e in evaluations]  # the shared cell once, the num_train=4 one
    with open(out / "tables" / "one-metric.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["metric"] for r in rows} == {"nmi"} and all(r["mean"] for r in rows)
    assert len({r["dataset"] for r in rows}) == 2  # both variants, under the names of this table
    with open(out / "tables" / "all-metrics.csv") as handle:
        assert {"fg_nmi", "fg_ari", "nmi", "ari"} <= {r["metric"] for r in csv.DictReader(handle)}
    assert (out / "report.html").is_file()


FGBG_SHARED = """\
description = "one fg/bg model whose masks three tables read, for different metrics and splits"

[methods.rnd]
method = "random"

[methods.other]
method = "random"
params = { resolution = 8 }

[defaults]
datasets = ["synthetic"]
protocols = ["corrected"]
masks = ["fgbg"]
figures = false
fgbg_params = { preset = "tiny", init = "random", steps = 1, image_size = 32, batch_size = 2 }
dataset_options = { synthetic = [{ num_train = 4, num_test = 4, image_size = 32 }] }

[[experiment]]
name = "a"
methods = ["rnd"]
metrics = ["nmi"]

[[experiment]]
name = "b"
methods = ["rnd"]
metrics = ["fg_nmi"]

[[experiment]]
name = "c"
methods = ["other"]
metrics = ["landmark_error"]
"""


def test_one_fgbg_model_predicts_one_mask_folder_and_each_measurement_on_it_is_one_evaluation(tmp_path):
    # Tables a and b ask different metrics of the same cell with fg/bg masks (test split only); table c's
    # landmark regression needs the model's masks of the training split as well. One mask folder holds both
    # splits, and a and b share one evaluation on it (it was two, once the folder had been widened).
    from benchmark.reproduce.graph import Settings, build_graph
    from benchmark.reproduce.plan import load_plan

    plan = tmp_path / "fgbg.toml"
    plan.write_text(FGBG_SHARED)
    steps = build_graph(load_plan(str(plan)), Settings(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "c")))
    predictions = [s for s in steps if s.kind == "masks-predict"]
    assert len(predictions) == 1 and predictions[0].spec["splits"] == ["test", "train"], predictions
    evaluations = [s for s in steps if s.kind == "evaluate"]
    assert sorted(s.spec["label"] for s in evaluations) == ["other", "rnd"], [s.id for s in evaluations]
    rnd = next(s for s in evaluations if s.spec["label"] == "rnd")
    assert set(rnd.spec["config"]["metrics"]) == {"nmi", "fg_nmi"}
