"""`benchmark reproduce`: plans parse and validate, shipped plans dry-run against fixture trees, and bad input
is one clear error before any work."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from benchmark.cli import cli
from benchmark.reproduce.plan import PlanError, load_plan, shipped_plans

SHIPPED = ("supp-k", "supp-seeds", "baselines", "landmarks", "ablation", "unsup-masks", "paper", "synthetic",
           "whole-image", "newer-methods")
PASCAL_CATEGORIES = ("sheep", "horse", "cow", "motorbike", "aeroplane", "bus", "car", "bicycle", "dog", "cat")


def invoke(*args):
    return CliRunner().invoke(cli, ["reproduce", *map(str, args)])


@pytest.fixture(scope="module")
def fixture_roots(tmp_path_factory):
    """CUB (with a Kanazawa cachedir), DeepFashion and PASCAL-Part (lists of all 10 categories) fixture trees."""
    from dataset_fixtures import FIXTURES
    from test_datasets_cub import IMAGES, _kanazawa_record

    base = tmp_path_factory.mktemp("trees")
    roots = {}
    for name in ("cub", "deepfashion", "pascal-part", "partimagenet"):
        (base / name).mkdir()
        roots[name], _ = FIXTURES[name](base / name)
    from test_datasets_partimagenet import write_pdisco_split

    write_pdisco_split(roots["partimagenet"] / "train_test_split_pimagenet_ood.txt")
    # The landmarks plan keeps classes 1-3; the fixture's fourth image becomes class 3.
    labels = roots["cub"] / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("4 4", "4 3"))
    folder = roots["cub"] / "cachedir" / "cub" / "data"
    folder.mkdir(parents=True)
    fields = ["id", "rel_path", "train", "test", "bbox", "width", "height", "parts", "mask", "class_id"]
    for split, ids in (("train", (2, 4)), ("test", (1, 3)), ("val", (3,))):
        records = np.zeros((1, len(ids)), dtype=[(f, "O") for f in fields])
        for k, i in enumerate(ids):
            for f, v in _kanazawa_record(i, IMAGES[i][0]).items():
                records[0, k][f] = v
        scipy.io.savemat(str(folder / f"{split}_cub_cleaned.mat"), {"images": records})
    lists = roots["pascal-part"] / "VOC2010" / "ImageSets" / "Main"
    for category in PASCAL_CATEGORIES:
        for split in ("train", "val"):
            path = lists / f"{category}_{split}.txt"
            if not path.exists():
                path.write_text("2008_000001 -1\n2008_000002 -1\n2008_000003 -1\n")
    return roots


def test_every_shipped_plan_is_packaged_and_parses():
    assert set(SHIPPED) <= set(shipped_plans())
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "plans/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["benchmark.reproduce"]
    for name in SHIPPED:
        plan = load_plan(name)
        assert plan.experiments and plan.description
    paper = load_plan("paper")
    assert {e.name for e in paper.experiments} == {"supp-k", "supp-seeds", "baselines", "landmarks", "ablation",
                                                   "unsup-masks"}
    baselines = next(e for e in paper.experiments if e.name == "baselines")
    assert [v["category"] for v in baselines.variants("pascal-part")] == list(PASCAL_CATEGORIES)
    assert load_plan("supp-seeds").experiments[0].seeds == (0, 1, 2, 3, 4)


def test_whole_image_plan_covers_every_method_and_k():
    """Every registered method that runs without a file of the user's (``demo_params`` is not ``None``) is
    in the whole-image plan, at K = 4, 8, 16 on CUB under both protocol families (with the landmark
    regression) and at K = 8, 25, 50 on PartImageNet OOD's PDisco test split under whole-image."""
    from benchmark.core.registry import METHODS

    plan = load_plan("whole-image")
    runnable = {name for name in METHODS.names() if METHODS.get(name).demo_params() is not None}
    cub = [e for e in plan.experiments if e.datasets == ("cub",)]
    pin = [e for e in plan.experiments if e.datasets == ("partimagenet",)]
    labels = {label: spec.method for label, spec in plan.methods.items()}
    for experiments, ks in ((cub, {4, 8, 16}), (pin, {8, 25, 50})):
        covered = {labels.get(m, m) for e in experiments for m in e.methods}
        assert runnable <= covered, runnable - covered
        assert all(set(e.num_parts) == ks for e in experiments)
    assert all({"legacy", "corrected", "whole-image"} <= set(e.protocols) and "landmark_error" in e.metrics
               for e in cub)
    assert all(e.protocols == ("whole-image:224-crop",) and e.variants("partimagenet") == (
        {"release": "ood", "split_source": "pdisco"},) for e in pin)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_plan_dry_runs_against_fixture_trees(name, fixture_roots, tmp_path):
    plan = load_plan(name)
    used = {d for e in plan.experiments for d in e.datasets}
    roots = [f"--data-root={d}={fixture_roots[d]}" for d in sorted(used) if d in fixture_roots]
    result = invoke(name, "--dry-run", "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", *roots)
    assert result.exit_code == 0, result.output
    assert f"plan {name}" in result.output and "steps:" in result.output
    assert "report" in result.output
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    if name != "synthetic":
        # No ImageNet weights here: blocked, naming the input and how to provide it.
        assert "blocked because:" in result.output
        assert "no --data-root" not in result.output
    else:
        assert "blocked" not in result.output.split("steps:")[1].splitlines()[0] or " 0 blocked" in result.output


def test_missing_roots_are_blocked_with_the_command_that_provides_them(tmp_path):
    result = invoke("supp-k", "--dry-run", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "no --data-root for cub: pass --data-root cub=PATH" in result.output
    assert "DeepFashion needs a signed agreement" in result.output
    assert "benchmark data download cub" in result.output
    # A real run refuses before any work and says how to go on.
    result = invoke("supp-k", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "blocked" in result.output and "--skip-blocked" in result.output
    assert not (tmp_path / "out").exists()


def test_unknown_plan_name_and_missing_root_are_clear_errors(tmp_path):
    result = invoke("supp-kk", "--dry-run")
    assert result.exit_code == 2
    assert "unknown plan 'supp-kk'" in result.output and "supp-k" in result.output
    assert "Traceback" not in result.output
    result = invoke("synthetic", "--data-root", f"cub={tmp_path / 'nowhere'}", "--dry-run")
    assert result.exit_code == 2 and "--data-root cub=" in result.output and "no such directory" in result.output
    result = invoke("synthetic", "--data-root", "cub", "--dry-run")
    assert result.exit_code == 2 and "write NAME=PATH" in result.output
    result = invoke("supp-k", "--data-root", f"pascal-part={tmp_path}", "--dry-run")
    assert result.exit_code == 2 and "does not use pascal-part" in result.output


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


GOOD = """\
description = "test"

[methods.rnd]
method = "random"

[[experiment]]
name = "one"
methods = ["rnd"]
datasets = ["synthetic"]
seeds = [0]
"""


@pytest.mark.parametrize("text, line, expected", [
    (GOOD.replace('seeds = [0]', 'seeds = [0]\nseed = 3'), 11, "unknown key 'experiment[0].seed'; valid keys here: name, title"),
    (GOOD.replace('seeds = [0]', 'seeds = "zero"'), 10, "malformed seeds 'zero'"),
    (GOOD.replace('seeds = [0]', 'num_parts = 4'), 10, "'experiment[0].num_parts' must be a list of integers, got int 4"),
    (GOOD.replace('method = "random"', 'method = "randum"'), 4, "unknown method 'randum'; registered methods:"),
    (GOOD.replace('method = "random"', 'method = "random"\nparams = { numparts = 3 }'), 5,
     "method 'random' has no parameter 'numparts'"),
    (GOOD.replace('datasets = ["synthetic"]', 'datasets = ["cubb"]'), 9, "unknown dataset 'cubb'"),
    (GOOD + 'protocols = ["legacy", "fixed"]\n', 11, "unknown protocol 'fixed'"),
    (GOOD + 'masks = ["predicted"]\n', 11, "unknown mask source 'predicted'"),
    (GOOD + '[experiment.dataset_options]\nsynthetic = { num_tests = 3 }\n', 12, "has no option 'num_tests'"),
    (GOOD.replace('description = "test"', 'descripton = "test"'), 1, "unknown key 'descripton'; valid keys here: name, description"),
    (GOOD + '[[published]]\nmethod = "rnd"\ndataset = "synthetic"\nnum_parts = "4"\nmetric = "nmi"\nmean = 1.0\n', 14,
     "'published[0].num_parts' must be an integer"),
    (GOOD + '[resources.training]\ntimeout_min = 5\n', 11, "unknown step kind 'training'"),
    # names become files under --out: nothing may be written outside it, and each experiment is one table
    (GOOD.replace('name = "one"', 'name = "../../x"'), 7, "experiment name '../../x' must be a plain name"),
    (GOOD.replace('name = "one"', 'name = "/tmp/x"'), 7, "experiment name '/tmp/x' must be a plain name"),
    ('name = "../evil"\n' + GOOD, 1, "plan name '../evil' must be a plain name"),
    (GOOD + '\n[[experiment]]\nname = "one"\nmethods = ["rnd"]\ndatasets = ["synthetic"]\n', 13,
     "two experiments are named 'one'"),
])
def test_bad_plan_files_name_the_file_the_line_and_the_valid_keys(tmp_path, text, line, expected):
    path = _write(tmp_path, text)
    with pytest.raises(PlanError) as caught:
        load_plan(str(path))
    assert f"{path}, line {line}:" in str(caught.value)
    assert expected in str(caught.value)
    result = invoke(path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output and expected in result.output
    assert not (tmp_path / "out").exists()


def test_not_toml_and_missing_file_are_clear(tmp_path):
    path = _write(tmp_path, "[[experiment]\nname = 1\n")
    result = invoke(path, "--dry-run")
    assert result.exit_code == 2 and "not valid TOML" in result.output and "line 1" in result.output
    result = invoke(tmp_path / "absent.toml", "--dry-run")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_include_merges_and_rejects_duplicates(tmp_path):
    (tmp_path / "a.toml").write_text(GOOD)
    path = _write(tmp_path, 'include = ["a.toml", "synthetic"]\n')
    plan = load_plan(str(path))
    assert {e.name for e in plan.experiments} >= {"one", "synthetic-methods"}
    (tmp_path / "b.toml").write_text(GOOD)
    path = _write(tmp_path, 'include = ["a.toml", "b.toml"]\n')
    with pytest.raises(PlanError, match="two experiments are named 'one'"):
        load_plan(str(path))


def test_checkpoint_replaces_training_and_only_keeps_what_a_step_needs(tmp_path):
    import torch

    from benchmark.reproduce.graph import Settings, build_graph, parse_checkpoints, select

    weights = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, weights)
    plan = load_plan("synthetic")
    settings = Settings(out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
                        checkpoints=parse_checkpoints([f"ours:synthetic:K=4:seed=0={weights}"]))
    steps = build_graph(plan, settings)
    ids = {s.id for s in steps}
    assert "train/ours/synthetic/K4/seed0" not in ids and "train/ours/synthetic/K4/seed1" in ids
    evaluation = next(s for s in steps if s.id == "evaluate/ours/synthetic/K4/seed0/legacy/gt")
    assert evaluation.spec["config"]["params"]["checkpoint"] == str(weights.resolve()) and not evaluation.deps
    chosen = select(steps, ["evaluate/ours/synthetic/K6/*"])
    assert {s.id for s in chosen} == {"train/ours/synthetic/K6/seed0", "evaluate/ours/synthetic/K6/seed0/legacy/gt",
                                      "evaluate/ours/synthetic/K6/seed0/corrected/gt"}
    with pytest.raises(Exception, match="matches no step"):
        select(steps, ["evaluate/nothing*"])
    result = invoke("synthetic", "--dry-run", "--checkpoint", "ours:synthetic=/no/such/file.pt")
    assert result.exit_code == 2 and "is not a file" in result.output
    result = invoke("synthetic", "--dry-run", "--checkpoint", "ours-synthetic")
    assert result.exit_code == 2 and "METHOD:DATASET" in result.output


def test_published_numbers_sit_only_beside_cells_with_their_kind_of_masks(tmp_path):
    from benchmark.reproduce.published import published_numbers

    sweep = published_numbers("k-sweep")
    assert sweep[("ours", "cub", 4, "fg_nmi")].mean == 46.0 and sweep[("ours", "deepfashion", 8, "ari")].mean == 90.6
    seeds = published_numbers("five-seeds")[("ours", "cub", 4, "fg_nmi")]
    assert (seeds.mean, seeds.std) == (45.3, 2.8)
    # The paper evaluated with predicted fg/bg masks: never compared with ground-truth-mask cells.
    assert seeds.matches("fgbg") and seeds.matches("predicted:/data/masks") and not seeds.matches("gt")
    path = _write(tmp_path, GOOD + '[[published]]\nmethod = "rnd"\ndataset = "synthetic"\nnum_parts = 4\n'
                              'metric = "nmi"\nmean = 1.0\nmasks = "gt"\n')
    number = published_numbers(None, load_plan(str(path)).published)[("rnd", "synthetic", 4, "nmi")]
    assert number.matches("gt") and not number.matches("fgbg")


def test_mask_quality_is_blocked_only_where_the_tree_lacks_ground_truth_masks(tmp_path):
    """A CUB tree without `segmentations/` (a separate download) evaluates with training-free masks, but the
    mask-quality step has nothing to score against: it is blocked with the reason, everything else is to do."""
    from test_datasets_cub import write_tree

    plan = _write(tmp_path, """\
description = "unsupervised masks on CUB"
[[experiment]]
name = "u"
title = "u"
methods = ["random"]
datasets = ["cub"]
protocols = ["corrected"]
masks = ["unsupervised:spectral-random"]
metrics = ["fg_nmi"]
figures = false
""")
    bare = write_tree(tmp_path / "bare" / "CUB_200_2011", segment_ids=())
    result = invoke(plan, "--dry-run", "--data-root", f"cub={bare}", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "blocked  masks-score/unsupervised-spectral-random/cub" in result.output
    assert "to do    evaluate/random/cub/K4/seed0/corrected/unsupervised-spectral-random" in result.output
    assert "mask quality on cub needs its ground-truth masks" in result.output and "--skip-blocked" in result.output
    full = write_tree(tmp_path / "full" / "CUB_200_2011")
    result = invoke(plan, "--dry-run", "--data-root", f"cub={full}", "--out", tmp_path / "out")
    assert result.exit_code == 0 and "to do    masks-score/unsupervised-spectral-random/cub" in result.output, result.output
    # A real run: refused while mask quality is blocked, then --skip-blocked evaluates and reports the rest.
    result = invoke(plan, "--data-root", f"cub={bare}", "--out", tmp_path / "run", "--cache-dir", tmp_path / "c", "-q")
    assert result.exit_code == 2 and "--skip-blocked" in result.output
    result = invoke(plan, "--data-root", f"cub={bare}", "--out", tmp_path / "run", "--cache-dir", tmp_path / "c", "-q",
                    "--skip-blocked", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "tables" / "u.md").is_file() and (tmp_path / "run" / "report.html").is_file()
    # An experiment that evaluates with GT masks still needs them: refused before any work, naming a file.
    gt_plan = _write(tmp_path, plan.read_text().replace('masks = ["unsupervised:spectral-random"]', 'masks = ["gt"]'))
    result = invoke(gt_plan, "--dry-run", "--data-root", f"cub={bare}", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "segmentations" in result.output and "has problems" in result.output
