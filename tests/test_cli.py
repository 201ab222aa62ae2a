import csv

import pytest
from click.testing import CliRunner

from benchmark.cli import cli

TINY = ["-o", "num_train=12", "-o", "num_test=8", "-o", "image_size=32"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_then_report(tmp_path):
    out = tmp_path / "runs"
    result = invoke("run", "-m", "random", "-d", "synthetic", *TINY, "--seed", "0", "--seed", "1",
                    "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    files = sorted(out.rglob("*.csv"))
    assert len(files) == 2
    rows = list(csv.DictReader(open(files[0])))
    assert {"method", "metric", "value", "protocol", "masks", "seed", "git_sha"} <= set(rows[0])
    tables = tmp_path / "tables"
    for fmt, marker in (("markdown", "| Method"), ("latex", "\\toprule"), ("csv", "mean")):
        report = invoke("report", str(out), "--format", fmt, "--to", str(tables))
        assert report.exit_code == 0 and marker in report.output
    assert {p.suffix for p in tables.iterdir()} == {".csv", ".md", ".tex"}
    assert "±" in (tables / "results.md").read_text()  # two seeds -> mean ± std


@pytest.mark.parametrize("args, message", [
    (("run", "-m", "nope", "-d", "synthetic"), "unknown method 'nope'; known methods:"),
    (("run", "-m", "random", "-d", "nope"), "unknown dataset 'nope'"),
    (("run", "-m", "random", "-d", "synthetic", "-p", "oops"), "malformed parameter 'oops'"),
    (("run", "-m", "random", "-d", "synthetic", "-p", "zzz=1"), "has no parameter 'zzz'"),
    (("run", "-m", "random", "-d", "synthetic", "--data-root", "/no/such/dir"), "does not exist"),
    (("report", "/no/such/runs"), "does not exist"),
    (("bench", "nope"), "unknown benchmark 'nope'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli, ["run", "-m", "random", "-d", "synthetic", *TINY, "--out", str(blocker / "x")])
    assert result.exit_code == 2 and "not writable" in result.output
    assert not list(tmp_path.rglob("*.csv"))


def test_list_shows_everything():
    result = invoke("list")
    assert result.exit_code == 0
    for name in ("random", "synthetic", "fg_nmi", "landmark_error"):
        assert name in result.output


def test_help_explains_with_examples():
    for command in ("run", "report", "demo", "bench", "list"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_demo_subset_writes_tables_and_figure(tmp_path):
    result = invoke("demo", "--method", "random", "--out", str(tmp_path / "demo"), "-q")
    assert result.exit_code == 0, result.output
    for name in ("demo.md", "demo.tex", "demo.csv", "overlays.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0


def test_sweep_runs_the_grid_and_resumes(tmp_path):
    args = ["sweep", "-m", "random", "-d", "synthetic", *TINY, "--seeds", "0-1", "-k", "2", "-k", "3",
            "--out", str(tmp_path)]
    first = invoke(*args)
    assert first.exit_code == 0 and "4 to do" in first.output
    assert len(list(tmp_path.rglob("*.csv"))) == 4
    again = invoke(*args)
    assert "4 already finished, 0 to do" in again.output
