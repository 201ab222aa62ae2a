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
        report = invoke("report", str(out), "--format", fmt, "--out", str(tables))
        assert report.exit_code == 0 and marker in report.output
    assert {p.suffix for p in tables.iterdir()} == {".csv", ".md", ".tex"}
    assert "±" in (tables / "results.md").read_text()  # two seeds -> mean ± std


@pytest.mark.parametrize("args, message", [
    (("run", "-m", "nope", "-d", "synthetic"), "unknown method 'nope'; known methods:"),
    (("run", "-m", "random", "-d", "nope"), "unknown dataset 'nope'"),
    (("run", "-m", "random", "-d", "synthetic", "-p", "oops"), "malformed parameter 'oops'"),
    (("run", "-m", "random", "-d", "synthetic", "-p", "zzz=1"), "has no parameter 'zzz'"),
    (("run", "-m", "random", "-d", "synthetic", "--data-root", "/no/such/dir"), "does not exist"),
    (("run", "-m", "random", "-d", "synthetic", "-p", "resolution=abc"),
     "parameter 'resolution' must be an integer (default 0), got 'abc'"),
    (("run", "-m", "random", "-d", "synthetic", "-o", "foo=1"), "has no option 'foo'; its options are: num_train"),
    (("run", "-m", "random", "-d", "synthetic", "-o", "num_test=abc"), "option 'num_test' must be an integer"),
    (("run", "-m", "random", "-d", "synthetic", "-o", "masks=none"), "give the masks with --masks"),
    (("report", "/no/such/runs"), "does not exist"),
    (("sweep", "-m", "random", "-d", "synthetic", "--seed", "4-1"), "empty --seed range '4-1'"),
    (("sweep", "-m", "random", "-d", "synthetic", "--data-root", "/no/such/dir"), "does not exist"),
    (("bench", "nope"), "unknown benchmark 'nope'"),
    (("bench", "metrics", "-p", "n=abc"), "benchmark 'metrics': option 'n' must be an integer"),
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
    for command in ("run", "report", "demo", "bench", "list", "sweep", "export", "train", "data check",
                    "data download"):
        result = invoke(*command.split(), "--help")
        assert result.exit_code == 0 and "Usage" in result.output
        assert "Example" in result.output and f"benchmark {command} " in result.output, command


def test_demo_subset_writes_tables_and_figure(tmp_path):
    result = invoke("demo", "--method", "random", "--out", str(tmp_path / "demo"), "-q")
    assert result.exit_code == 0, result.output
    for name in ("demo.md", "demo.tex", "demo.csv", "overlays.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0


def test_sweep_runs_the_grid_and_resumes(tmp_path):
    args = ["sweep", "-m", "random", "-d", "synthetic", *TINY, "--seed", "0-1", "-k", "2", "-k", "3",
            "--out", str(tmp_path)]
    first = invoke(*args)
    assert first.exit_code == 0 and "4 to do" in first.output
    assert len(list(tmp_path.rglob("*.csv"))) == 4
    again = invoke(*args)
    assert "4 already finished, 0 to do" in again.output


def test_sweep_help_example_and_run_options(tmp_path):
    text = invoke("sweep", "--help").output
    assert "--seed 0-4 \\\n" in text  # the continuation backslash of the slurm example survives
    for option in ("--category", "--split", "--eval-batch-size", "gt|predicted:DIR|method|none|model:CKPT|unsupervised:NAME"):
        assert option in text
    result = invoke("sweep", "-m", "random", "-d", "synthetic", *TINY, "--split", "train", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(next(tmp_path.rglob("*.csv")))))
    assert {r["split"] for r in rows} == {"train"}


def test_export_hint_is_a_command_that_runs(tmp_path, monkeypatch):
    # The printed `evaluate with:` command must carry the dataset options, else it looks for images never exported.
    import shlex

    monkeypatch.chdir(tmp_path)
    result = invoke("export", "-m", "random", "-d", "synthetic", *TINY, "-k", "3", "--out", "exp", "-q")
    assert result.exit_code == 0, result.output
    hint = result.output.split("evaluate with: ")[1].strip()
    args = shlex.split(hint)
    assert args[0] == "benchmark" and "num_test=8" in hint and "-k 3" in hint
    again = invoke(*args[1:], "-q")
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("extra, message", [
    (("-o", "foo=1"), "dataset 'synthetic' has no option 'foo'"),
    (("-p", "lambda_equivariance=abc"), "parameter 'lambda_equivariance' must be a number"),
    (("--data-root", "/no/such/dir"), "--data-root /no/such/dir does not exist"),
])
def test_train_bad_input_is_one_line_and_exit_2(tmp_path, extra, message):
    result = CliRunner().invoke(cli, ["train", "-d", "synthetic", "--preset", "tiny", "--init", "random",
                                      "-p", "vgg_weights=random", "--steps", "1", "--out", str(tmp_path / "ck"),
                                      *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("args", [("-m", "ours", "--checkpoint", "{bad}"), ("-m", "kmeans", "-p", "weights={bad}")])
def test_unreadable_weights_file_is_one_short_line(tmp_path, args):
    # torch.load's refusal is a paragraph advising weights_only=False; the user gets only its cause.
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint\n")
    result = CliRunner().invoke(cli, ["run", "-d", "synthetic", *TINY, "--out", str(tmp_path / "runs"),
                                      *(a.format(bad=bad) for a in args)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and str(bad) in result.output
    assert "Unsupported operand" in result.output and "weights_only=False" not in result.output


@pytest.mark.parametrize("method, hint", [("scops", "-p vgg_weights=PATH"), ("ours", "-p init=caffe:PATH")])
def test_missing_imagenet_weights_hint_names_an_option_of_run(tmp_path, monkeypatch, method, hint):
    # The fix printed when ImageNet weights are missing must be a -p option this method really has.
    from benchmark.core.registry import METHODS

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    missing = METHODS.get(method).missing_weights()
    assert hint in missing and hint.split()[1].split("=")[0] in METHODS.get(method).param_names()
    # On the synthetic data the run falls back to random weights, loudly, and being a method that trains
    # it refuses to start a long training on the CPU (the tiny preset's step, 100,000 times).
    result = CliRunner().invoke(cli, ["run", "-m", method, "-d", "synthetic", "-p", "preset=tiny",
                                      "-p", "steps=100000", *TINY, "--no-cache", "--device", "cpu",
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "--train-if-missing" in result.output
    assert "s/step here" in result.output and "Traceback" not in result.output


def test_too_small_training_set_names_the_run_option(tmp_path):
    # In `run`, --eval-batch-size is the evaluation batch: the fix for the training batch is -p batch_size=N.
    result = CliRunner().invoke(cli, ["run", "-m", "ours", "-p", "preset=tiny", "-p", "init=random",
                                      "-p", "vgg_weights=random", "-p", "steps=1", "-d", "synthetic",
                                      "-o", "num_train=2", "-o", "num_test=2", "-o", "image_size=32",
                                      "--no-cache", "--device", "cpu", "--out", str(tmp_path), "-q",
                                      "--train-if-missing"])
    assert result.exit_code == 2, result.output
    assert "fewer than one batch" in result.output and "-p batch_size=N with `benchmark run`" in result.output


def test_sweep_gives_each_parameter_to_the_methods_that_have_it(tmp_path):
    # -p resolution=3 belongs to `random` only; `predictions` lacks it and must still run without it.
    exported = tmp_path / "exp"
    assert invoke("export", "-m", "random", "-d", "synthetic", *TINY, "--out", str(exported), "-q").exit_code == 0
    result = invoke("sweep", "-m", "random", "-m", "predictions", "-d", "synthetic", *TINY, "-p", "resolution=3",
                    "-p", f"dir={exported}", "--out", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for f in (tmp_path / "runs").rglob("*.csv") for r in csv.DictReader(open(f))}
    assert '"resolution": 3' in rows["random"]["method_params"] and "resolution" not in rows["predictions"]["method_params"]
    typo = CliRunner().invoke(cli, ["sweep", "-m", "random", "-m", "predictions", "-d", "synthetic", "-p", "resolutoin=3",
                                    "--out", str(tmp_path / "runs")])
    assert typo.exit_code == 2 and "has a parameter 'resolutoin'; their parameters are:" in typo.output


def test_data_root_given_to_the_built_in_dataset_is_ignored_and_the_run_reused(tmp_path):
    out = str(tmp_path / "runs")
    first = invoke("run", "-m", "random", "-d", "synthetic", *TINY, "--out", out, "-q")
    again = CliRunner().invoke(cli, ["run", "-m", "random", "-d", "synthetic", *TINY, "--out", out, "-q",
                                     "--data-root", str(tmp_path)])
    assert first.exit_code == 0 and again.exit_code == 0, again.output
    assert "ignores --data-root" in again.output and "[reused]" in again.output
    assert len(list((tmp_path / "runs").rglob("*.csv"))) == 1
