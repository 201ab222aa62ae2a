"""The real path, rehearsed offline (issue 19): weights present, released checkpoints, real-size trees.

The kit (tests/rehearsal.py) writes every file a real machine has, in its real name, keys, shapes and
layout, with random values; these tests run the commands a user runs on it.
"""

from __future__ import annotations

from click.testing import CliRunner

from benchmark.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_baselines_dry_run_does_not_block_dff_and_kmeans_when_their_weights_are_present(with_kit_weights, tmp_path):
    # Bug 1 of issue 19: the plan's weights check read the default weights="pretrained" as a file path and
    # blocked the 8 dff/kmeans steps on a CUB tree although `list` said ok and `run` worked.
    kit = with_kit_weights
    result = invoke("reproduce", "baselines", "--dry-run", "--data-root", f"cub={kit.cub}",
                    "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for method in ("dff", "kmeans"):
        steps = [line for line in lines if line.strip().split()[-1:] and f"evaluate/{method}/cub/" in line]
        assert steps and all(line.split()[0] == "to" for line in steps), "\n".join(steps)
    assert "weights file missing" not in result.output and "pretrained" not in result.output
