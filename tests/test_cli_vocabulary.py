"""One CLI vocabulary: one declaration per option (benchmark/options.py), one name per concept."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

from benchmark.cli import cli

ROOT = Path(__file__).resolve().parents[1]
OLD_SPELLINGS = ("--to", "--seeds", "--workers", "--batch-size", "--no-progress")


def command(path: str) -> click.Command:
    target = cli
    for part in path.split():
        target = target.commands[part]
    return target


def help_text(path: str) -> str:
    return command(path).get_help(click.Context(command(path), info_name=path))


def names(path: str) -> set[str]:
    return {n for p in command(path).params for n in getattr(p, "opts", [])}


WRITERS = ("run", "sweep", "train", "report", "export", "demo", "data download")
PROGRESS = ("run", "sweep", "train", "export", "demo", "data check", "data download")


@pytest.mark.parametrize("path", WRITERS)
def test_the_output_folder_is_out_everywhere(path):
    assert "--out" in names(path)
    assert "--out" in help_text(path)


@pytest.mark.parametrize("path", PROGRESS)
def test_quiet_everywhere_a_progress_bar_is_shown(path):
    assert {"-q", "--quiet"} <= names(path)


@pytest.mark.parametrize("path", ["run", "sweep", "train", "export"])
def test_num_workers_everywhere(path):
    assert "--num-workers" in names(path)


def test_evaluation_and_training_batch_sizes_have_distinct_names():
    for path in ("run", "sweep", "export"):
        assert "--eval-batch-size" in names(path) and "--train-batch-size" not in names(path)
    assert "--train-batch-size" in names("train") and "--eval-batch-size" not in names("train")


@pytest.mark.parametrize("path", sorted({*WRITERS, *PROGRESS, "bench", "list"}))
def test_old_spellings_are_accepted_but_not_shown_or_used_in_examples(path):
    text = help_text(path)
    for old in OLD_SPELLINGS:
        assert f"{old} " not in text and f"{old}," not in text, (path, old)


def test_old_spellings_still_work():
    ctx = command("report").make_context("report", ["runs", "--to", "t"])
    assert ctx.params["out_dir"] == "t"
    ctx = command("sweep").make_context("sweep", ["-m", "random", "-d", "synthetic", "--seeds", "0-2", "--workers", "2"])
    assert ctx.params["seeds"] == (0, 1, 2) and ctx.params["num_workers"] == 2
    ctx = command("data download").make_context("download", ["cub", "--no-progress"])
    assert ctx.params["quiet"] is True


@pytest.mark.parametrize("path", ["run", "sweep"])
def test_seed_repeats_and_takes_ranges_and_lists(path):
    ctx = command(path).make_context(path, ["-m", "random", "-d", "synthetic", "--seed", "0-2", "--seed", "5",
                                            "--seed", "7,8", "--seed", "1"])
    assert ctx.params["seeds"] == (0, 1, 2, 5, 7, 8)


def test_parameter_parsing_lives_in_the_cli_helper_module():
    runner = ast.parse((ROOT / "benchmark" / "runner.py").read_text())
    defined = {node.name for node in ast.walk(runner) if isinstance(node, ast.FunctionDef)}
    assert not defined & {"parse_value", "parse_param", "parse_params", "command_line_inputs", "check_value_types",
                          "_check_value_types", "_expected_kind"}
    import benchmark.options as options

    for name in ("parse_value", "parse_params", "check_value_types", "parse_seeds", "command_line_inputs"):
        assert callable(getattr(options, name))


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for folder in ("benchmark", "methods", "metrics", "datasets"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    for alias in node.names:
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            offenders.append(f"{path.relative_to(ROOT)}: {node.module}.{alias.name}")
    assert not offenders, offenders
