"""Every command of the README's CLI tour: the first block runs as written (in a fresh folder, without
ImageNet weights); the commands that need real datasets and weights parse, and `data check` runs on a
miniature CUB tree in the official formats."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from benchmark.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_blocks() -> list[list[str]]:
    """The bash blocks of the "CLI tour" section, as command lines (continuations joined, comments cut);
    the two set-up blocks of the README (pip install ...) are in another section and are not run."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## CLI tour", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for body in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        joined = body.replace("\\\n", " ")
        lines = []
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
        blocks.append(lines)
    return blocks


def commands(line: str) -> list[list[str]]:
    """The benchmark invocations of one line (``a && b``), without the program name."""
    out = []
    for part in line.split("&&"):
        words = shlex.split(part)
        if words[:1] == ["torchrun"]:
            words = words[words.index("benchmark") + 1:]
        else:
            assert words[0] == "benchmark", line
            words = words[1:]
        out.append(words)
    return out


def test_the_tour_has_both_blocks():
    runnable, real = tour_blocks()
    assert len(runnable) >= 7 and len(real) >= 5
    assert all("/data" not in line for line in runnable)


def test_every_runnable_tour_command_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))  # a fresh machine: no ImageNet weights
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    runnable, _ = tour_blocks()
    for line in runnable:
        for args in commands(line):
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 0, f"{line}\n{result.output}"
    assert (tmp_path / "runs" / "table1.tex").is_file() and (tmp_path / "ckpt" / "model.pt").is_file()


def _option_names(command: click.Command) -> set[str]:
    return {name for p in command.params if isinstance(p, click.Option) for name in (*p.opts, *p.secondary_opts)}


def test_every_real_data_command_parses_and_data_check_runs_on_a_miniature_tree(tmp_path):
    from test_datasets_cub import write_tree

    _, real = tour_blocks()
    for line in real:
        for args in commands(line):
            command, rest = cli, list(args)
            while isinstance(command, click.Group):
                command = command.commands[rest.pop(0)]
            known = _option_names(command)
            for word in rest:
                if word.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", word):
                    assert word.split("=")[0] in known, f"{line}: {word} is not an option of {command.name}"
            if command.name == "check":
                root = write_tree(tmp_path / "CUB_200_2011")
                words = [str(root) if w == "/data/CUB_200_2011" else w for w in args]
                result = CliRunner().invoke(cli, words + ["-q"])
                assert result.exit_code == 0, result.output


def section_commands(heading: str) -> list[str]:
    """The command lines of the bash blocks under README heading ``heading`` (continuations joined)."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = []
    for body in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def test_every_backbone_command_of_the_readme_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    lines = section_commands("Backbones of kmeans and dff")
    assert len(lines) >= 2
    for line in lines:
        for args in commands(line):
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 0, f"{line}\n{result.output}"
