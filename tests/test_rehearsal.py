"""The real path, rehearsed offline (issue 19): weights present, released checkpoints, real-size trees.

The kit (tests/rehearsal.py) writes every file a real machine has, in its real name, keys, shapes and
layout, with random values; these tests run the commands a user runs on it.
"""

from __future__ import annotations

import collections
import csv
import itertools
import json
import math

import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.reproduce.plan import load_plan, shipped_plans

# One torch thread: on a shared 2-core machine these real-size forward passes ran ~10x slower with two.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
        steps = [line for line in lines if f"evaluate/{method}/cub/" in line]
        assert steps and all(line.split()[0] == "to" for line in steps), "\n".join(steps)
    assert "weights file missing" not in result.output and "pretrained" not in result.output


def _paper_checkpoints(kit) -> list[str]:
    """The released checkpoints as `reproduce --checkpoint` takes them (the K = 4 models; fgbg for CUB)."""
    return ["--checkpoint", f"ours:cub:K=4={kit.ours}", "--checkpoint", f"scops:cub:K=4={kit.scops}",
            "--checkpoint", f"fgbg:cub={kit.fgbg}"]


def test_paper_dry_run_with_every_root_and_the_released_checkpoints_blocks_no_step(with_kit_weights, tmp_path):
    kit = with_kit_weights
    result = invoke("reproduce", "paper", "--dry-run", *kit.data_roots(), *_paper_checkpoints(kit),
                    "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    summary = result.output.splitlines()[1]
    assert ", 0 blocked" in summary and "blocked because" not in result.output, result.output[-3000:]
    steps = [line.split()[2] for line in result.output.splitlines() if line.startswith("  to do")]
    for kind in ("fgbg-train/", "masks-predict/", "masks-score/", "train/", "evaluate/", "tables/", "figures/"):
        assert any(kind in step for step in steps), kind  # every kind of step is planned, none blocked


def _plan_roots(kit, plan: str) -> list[str]:
    """``--data-root`` for every dataset of the plan that reads a tree (a dataset the kit has no tree of fails
    here with its name: add its tree to tests/rehearsal.py)."""
    from benchmark.core.registry import DATASETS

    used = {d for e in load_plan(plan).experiments for d in e.datasets if DATASETS.get(d).needs_data_root}
    return kit.data_roots(sorted(used))


def _step_states(output: str) -> dict[str, str]:
    """Step -> ``blocked`` or ``to do``, from the dry run's step lines."""
    return {line.split()[1]: "blocked" for line in output.splitlines() if line.startswith("  blocked  ")} | {
        line.split()[2]: "to do" for line in output.splitlines() if line.startswith("  to do  ")}


def _blocked_reasons(output: str) -> list[str]:
    """The reasons of the dry run's ``blocked because:`` list (``[n] (k steps) REASON``)."""
    if "blocked because:" not in output:
        return []
    return [line.split(") ", 1)[1] for line in output.split("blocked because:")[1].splitlines()
            if line.strip().startswith("[")]


# The kit's CUB has 4 training images at real size (the full rehearsal evaluates on them), the training part of
# its PartImageNet OOD re-split 1 annotated image; pdiscoformer's paper preset trains with batches of 32 and
# 128. Such trainings are blocked for that reason alone (their weights are checked first), and the evaluations
# of their models wait on them; any other reason is listed too, and fails the test.
_MINIATURE_TREE = ("fewer than one batch of", "needs train/")


@pytest.mark.parametrize("plan", sorted(shipped_plans()))
def test_every_shipped_plan_dry_run_with_the_kit_blocks_no_step_for_a_missing_input(plan, with_kit_weights,
                                                                                    tmp_path):
    # The plans are read from the shipped folder: a new plan is rehearsed here without a change to this test.
    result = invoke("reproduce", plan, "--dry-run", *_plan_roots(with_kit_weights, plan),
                    "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output[-3000:]
    summary = result.output.splitlines()[1]
    assert " 0 done, " in summary and " to do, " in summary and " 0 to do," not in summary, summary
    reasons = _blocked_reasons(result.output)
    assert all(any(allowed in reason for allowed in _MINIATURE_TREE) for reason in reasons), reasons
    if not reasons:
        assert ", 0 blocked " in summary, summary


def test_pdiscoformer_training_reads_the_kits_timm_file_through_its_strict_check(with_kit_weights):
    # The file the dry runs above find is also one the training loads: timm's names and shapes, position
    # embeddings resampled from its 37x37 grid to PartImageNet's 224 px (16x16).
    from benchmark.methods.pdiscoformer.checkpoint import load_backbone_weights
    from benchmark.methods.pdiscoformer.network import build_network
    from benchmark.methods.pdiscoformer.presets import PRESETS

    from safetensors import safe_open

    from benchmark.methods.pretrained import hf_hub_file, timm_repo

    backbone = PRESETS["paper"].backbone
    network = build_network(backbone, 224, 8, 3)
    assert load_backbone_weights(network, "pretrained", backbone).startswith("file:")
    with safe_open(str(hf_hub_file(timm_repo(backbone))), "pt") as stored:
        assert torch.equal(network.blocks[11].mlp.fc2.weight.detach(), stored.get_tensor("blocks.11.mlp.fc2.weight"))


def test_a_training_the_tree_cannot_feed_is_blocked_by_name_and_the_rest_of_the_plan_is_checked(
        with_kit_weights, tmp_path):
    # Real-path bug: the dry run of newer-methods (or whole-image) stopped at the first pdiscoformer training
    # whose training view is smaller than one batch, with "error: pdiscoformer: the training view has 4 images,
    # ..." naming neither the step nor the dataset, and hiding every later problem of the plan.
    kit = with_kit_weights
    result = invoke("reproduce", "newer-methods", "--dry-run", *kit.data_roots(["cub", "partimagenet"]),
                    "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    states = _step_states(result.output)
    assert states["train/pdiscoformer/cub/K4/seed0"] == states["train/pdiscoformer/partimagenet/K8/seed0"] == "blocked"
    assert "  blocked  train/pdiscoformer/cub/K4/seed0  [1]" in result.output.splitlines()
    reasons = _blocked_reasons(result.output)
    assert "pdiscoformer: the training view has 4 images, fewer than one batch of 32" in reasons[0]
    assert any("fewer than one batch of 128" in reason for reason in reasons)
    assert states["evaluate/dino-coseg/partimagenet/K8/seed0/whole-image:224-crop/method"] == "to do"


def test_without_the_weights_every_step_that_reads_them_is_blocked_with_the_fix(rehearsal_kit, tmp_path,
                                                                               monkeypatch):
    # The same declaration answers for every step: no weights here, so the feature baselines, the trainings
    # and the fg/bg model's training are blocked, each naming the file and how to get it; the evaluations of
    # the released checkpoints are not.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    kit = rehearsal_kit
    result = invoke("reproduce", "baselines", "--dry-run", "--data-root", f"cub={kit.cub}",
                    "--checkpoint", f"ours:cub:K=4={kit.ours}", "--out", tmp_path / "out",
                    "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    states = {line.split()[1] if line.startswith("  blocked") else line.split()[2]: line.split()[0]
              for line in result.output.splitlines() if line.startswith(("  blocked", "  to do"))}
    cub = {step: state for step, state in states.items() if "/cub/" in step or step.endswith("/cub")}
    for step, state in cub.items():
        expected = "to" if step.startswith("evaluate/ours/") and step.endswith("/gt") else "blocked"
        assert state == expected, (step, state)
    reasons = result.output.split("blocked because:")[1]
    assert "ImageNet weights for vgg19 missing" in reasons and "-p weights=PATH|random" in reasons
    assert "ImageNet weights for resnet50 missing" in reasons and "--init caffe:PATH|random" in reasons
    assert "needs fgbg-train/cub" in reasons or "needs masks-predict/cub" in reasons


def test_without_the_vit_weights_the_newer_methods_steps_that_read_them_are_blocked_with_the_fix(
        rehearsal_kit, tmp_path, monkeypatch):
    # pdiscoformer's training reads timm's DINOv2 ViT-B/14 with registers, pdisconet's the ImageNet ResNet-101,
    # dino-coseg's evaluations the DINO ViT-S/8 release: with empty caches each such step names its file and
    # how to get it.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    result = invoke("reproduce", "newer-methods", "--dry-run", *rehearsal_kit.data_roots(["cub", "partimagenet"]),
                    "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    states = _step_states(result.output)
    reads = {step: state for step, state in states.items() if step.startswith(("train/", "evaluate/"))}
    # pdiscoformer and pdisconet: 6 trainings and 9 evaluations each; dino-coseg: 9 evaluations
    assert len(reads) == 2 * (6 + 9) + 9 and set(reads.values()) == {"blocked"}, reads
    reasons = " ".join(_blocked_reasons(result.output))
    assert "timm's pretrained weights of vit_base_patch14_reg4_dinov2 (timm/vit_base_patch14_reg4_dinov2.lvd142m)" \
        " missing" in reasons and "-p backbone_weights=PATH" in reasons, reasons
    assert "DINO weights for dino_vits8 missing" in reasons and "-p weights=PATH" in reasons, reasons
    assert "ImageNet weights for resnet101 missing" in reasons, reasons  # pdisconet's trainings


def test_list_says_ok_with_the_kits_weights_and_needs_weights_without_them(rehearsal_kit, monkeypatch, tmp_path):
    def status(output: str, name: str) -> str:
        lines = output.splitlines()
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(name + " "))
        return lines[index] + lines[index + 1] if name != "fgbg" else lines[index]

    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    for name, value in rehearsal_kit.env().items():
        monkeypatch.setenv(name, value)
    present = invoke("list")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    absent = invoke("list")
    assert present.exit_code == absent.exit_code == 0
    for name in ("dff", "kmeans", "ours", "scops", "fgbg"):
        assert " ok" in status(present.output, name) and "needs weights" not in status(present.output, name)
        assert "needs weights" in status(absent.output, name), status(absent.output, name)
    assert "ImageNet weights for resnet50" in status(absent.output, "fgbg")  # as `train -m fgbg` would say


def test_train_fgbg_without_the_resnet50_file_stops_before_reading_data_with_the_list_message(
        rehearsal_kit, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    result = invoke("train", "-m", "fgbg", "-d", "cub", "--data-root", rehearsal_kit.cub, "--out", tmp_path / "m")
    assert result.exit_code == 2 and "ImageNet weights for resnet50 missing" in result.output, result.output
    assert "--init caffe:PATH|random" in result.output and not (tmp_path / "m").exists()


def test_readme_run_of_the_released_ours_checkpoint_with_supervisedlabels(with_kit_weights, tmp_path):
    # The README's command, as written, on the kit's CUB tree, released model_60000.pth and supervisedlabels.
    kit = with_kit_weights
    result = invoke("run", "-m", "ours", "-d", "cub", "--data-root", kit.cub, "--checkpoint", kit.ours,
                    "--masks", f"predicted:{kit.supervisedlabels}", "--protocol", "legacy",
                    "--out", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(next((tmp_path / "runs").rglob("*.csv")))))
    metrics = {row["metric"] for row in rows}
    assert {"fg_nmi", "fg_ari", "nmi", "ari", "landmark_error"} <= metrics, metrics
    assert all(math.isfinite(float(row["value"])) for row in rows)
    assert {row["protocol"] for row in rows} == {"legacy"} and {row["weights"] for row in rows} != {"none"}


def test_run_on_a_real_tree_without_the_weights_stops_before_reading_data(rehearsal_kit, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("PARTBENCH_ALLOW_DOWNLOAD", raising=False)
    result = invoke("run", "-m", "kmeans", "-d", "cub", "--data-root", rehearsal_kit.cub, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "ImageNet weights for vgg19 missing" in result.output and "-p weights=PATH|random" in result.output
    assert not (tmp_path / "runs").exists()


def _paper_cells(plan) -> dict[tuple, int]:
    """Every cell the plan's tables have, ``(experiment, dataset label, masks, method, K, metric, protocol)``,
    with the number of seeds behind it. Read from the plan itself, not from what ran: a cell whose evaluation
    silently dropped out of the graph is still expected."""
    from benchmark.reproduce.graph import dataset_label

    applies = {"cub": ("fg_nmi", "fg_ari", "nmi", "ari", "landmark_error"),  # what a metric-less experiment
               "deepfashion": ("fg_nmi", "fg_ari", "nmi", "ari"),            # scores on each dataset
               "pascal-part": ("fg_nmi", "fg_ari", "nmi", "ari")}
    cells = {}
    for experiment in plan.experiments:
        for dataset in experiment.datasets:
            variants = experiment.variants(dataset)
            for options in variants:
                shown = dataset_label(dataset, options) if len(variants) > 1 else dataset
                for masks, label, k, metric, protocol in itertools.product(
                        experiment.masks, experiment.methods, experiment.num_parts,
                        experiment.metrics or applies[dataset], experiment.protocols):
                    cells[(experiment.name, shown, masks, label, str(k), metric, protocol)] = len(experiment.seeds)
    return cells


@pytest.mark.rehearsal
def test_paper_with_released_checkpoints_runs_every_step_on_the_miniature_trees_and_fills_every_table_cell(
        with_kit_weights, tmp_path):
    # `reproduce paper` with a released-format checkpoint for every trained model it evaluates (ours at K = 4,
    # 6 and 8, SCOPS, the fg/bg model) on every dataset: every step that needs no training -- the ~280
    # evaluations, the mask predictions and mask quality, tables, figures, the report -- on real-size images.
    # Deselected by default (pytest -m rehearsal; .ci/run runs it).
    from rehearsal import write_ours_release

    from benchmark.reproduce.plan import load_plan

    kit = with_kit_weights
    releases = {4: kit.ours, **{k: write_ours_release(tmp_path / "released" / f"K{k}" / "model_60000.pth", k, 20 + k)
                                for k in (6, 8)}}
    checkpoints = []
    for dataset in ("cub", "deepfashion", "pascal-part"):
        checkpoints += ["--checkpoint", f"scops:{dataset}:K=4={kit.scops}",
                        "--checkpoint", f"fgbg:{dataset}={kit.fgbg}"]
        checkpoints += [a for k, path in releases.items() for a in ("--checkpoint", f"ours:{dataset}:K={k}={path}")]
    out = tmp_path / "out"
    command = ["reproduce", "paper", *kit.data_roots(), *checkpoints, "--out", out, "--cache-dir", tmp_path / "cache"]
    result = invoke(*command, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output[-3000:]
    summary = invoke(*command, "--dry-run").output.splitlines()[1]
    assert ", 0 to do, 0 blocked" in summary, summary  # every step of the plan ran, the report included
    ledgers = [json.loads(p.read_text()) for p in (out / "steps").glob("*.json")]
    kinds = collections.Counter(ledger["kind"] for ledger in ledgers)
    assert kinds["evaluate"] >= 270 and not kinds["train"] and not kinds["fgbg-train"], kinds
    assert kinds["masks-score"] and kinds["figures"] and (out / "report.html").is_file(), kinds

    plan = load_plan("paper")
    filled = {}
    for experiment in plan.experiments:
        with open(out / "tables" / f"{experiment.name}.csv") as handle:
            for row in csv.DictReader(handle):
                key = (row["experiment"], row["dataset"], row["masks"], row["method"], row["num_parts"],
                       row["metric"], row["protocol"])
                filled[key] = (row["mean"], row["seeds"])
    expected = _paper_cells(plan)
    missing = [cell for cell in expected if cell not in filled or not filled[cell][0]
               or not math.isfinite(float(filled[cell][0]))]
    assert not missing, f"{len(missing)} of {len(expected)} table cells are not filled, e.g. " + "; ".join(
        "/".join(cell) for cell in missing[:5])
    short = [cell for cell, seeds in expected.items() if int(filled[cell][1]) != seeds]
    assert not short, f"cells over fewer seeds than the plan has, e.g. {short[:3]}"
