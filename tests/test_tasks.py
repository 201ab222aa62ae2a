"""The task layer (`benchmark.tasks`) under the CLI and `reproduce`, and the decisions that have one home:
one factory per kind, one device resolver, one row builder, one declaration per option, one table of step
kinds. The greps guard against a second copy creeping back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CODE = ("benchmark", "methods", "datasets", "metrics")
TINY = {"num_train": 4, "num_test": 4, "image_size": 32}


def _files_matching(pattern: str, folders=CODE) -> list[str]:
    regex = re.compile(pattern)
    return sorted(str(path.relative_to(ROOT)) for folder in folders for path in (ROOT / folder).rglob("*.py")
                  if regex.search(path.read_text()))


def test_reproduce_never_starts_the_command_line():
    """Steps call the task functions in their worker process or submitit job."""
    assert _files_matching(r"\bsubprocess\b|sys\.executable|\"-m\",\s*\"benchmark\"", ("benchmark/reproduce",)) == []


def test_one_factory_per_kind_and_one_device_resolver():
    for definition in (r"def build_method\(", r"def build_dataset\(", r"def check_dataset_options\(",
                       r"def resolve_device\(", r"def build_mask_source\("):
        assert _files_matching(definition) == ["benchmark/factories.py"], definition
    assert _files_matching(r"cuda\"? if .*torch\.cuda\.is_available\(\)") == ["benchmark/factories.py"]


def test_the_library_dataset_loader_validates_like_the_cli():
    import benchmark.datasets as D

    with pytest.raises(UserError, match="has no option 'colour'"):
        D.load("synthetic", colour=1, **TINY)
    assert len(D.load("synthetic", split="test", view="full", **TINY)) == TINY["num_test"]


def test_one_builder_of_result_rows():
    assert _files_matching(r"RESULT_COLUMNS") == ["benchmark/results.py"]


def test_the_shared_options_are_declared_once():
    """--data-root, -o, --category, --device and --masks come from benchmark/options.py in every command."""
    shared = r"click\.option\(\s*\"(--data-root|--option|-o|--category|--device|--masks)\""
    declared = _files_matching(shared, ("benchmark",))
    assert declared == ["benchmark/commands/reproduce.py", "benchmark/options.py"], declared
    # reproduce's --data-root NAME=PATH (one root per dataset of a plan, repeatable) is another option.
    reproduce = (ROOT / "benchmark/commands/reproduce.py").read_text()
    assert re.findall(shared, reproduce) == ["--data-root"] and '"--data-root", "data_roots"' in reproduce


def test_step_kinds_are_one_table():
    from benchmark.reproduce.graph import Step
    from benchmark.reproduce.steps import STEP_KINDS

    assert list(STEP_KINDS) == ["fgbg-train", "masks-predict", "masks-score", "train", "evaluate", "tables",
                                "figures", "report"]
    assert all(callable(kind.run) and "gpus_per_node" in kind.resources for kind in STEP_KINDS.values())
    # No second list of kind names (a tuple or list opening with two kinds) anywhere else: what a kind is
    # (it makes a model, its product is intermediate) is a column of the table.
    kind_name = "\"(" + "|".join(map(re.escape, STEP_KINDS)) + ")\""
    assert _files_matching(r"(?<!Step)[(\[{]\s*" + kind_name + r",\s*" + kind_name) == []
    assert [k for k, kind in STEP_KINDS.items() if kind.makes_model] == ["fgbg-train", "train"]
    kinds_made = set(re.findall(r"Step\([^,]+,\s*\"([a-z-]+)\"", (ROOT / "benchmark/reproduce/graph.py").read_text()))
    assert kinds_made and kinds_made <= set(STEP_KINDS), kinds_made - set(STEP_KINDS)
    assert Step  # the graph's steps are what the table runs


def test_mask_tasks_run_without_the_cli(tmp_path):
    """predict_masks writes a folder that score_masks reads; scoring the source itself gives the same
    numbers (the task layer as a library)."""
    from benchmark.tasks import PredictMasksConfig, ScoreMasksConfig, predict_masks, score_masks

    source = "unsupervised:spectral-random"
    made = predict_masks(PredictMasksConfig(source=source, dataset="synthetic", out_dir=tmp_path / "masks",
                                            options=TINY, device="cpu"))
    assert (made.written, made.skipped, made.images) == (TINY["num_test"], 0, TINY["num_test"])
    again = predict_masks(PredictMasksConfig(source=source, dataset="synthetic", out_dir=tmp_path / "masks",
                                             options=TINY, device="cpu"))
    assert (again.written, again.skipped) == (0, TINY["num_test"])
    folder = score_masks(ScoreMasksConfig(masks=f"predicted:{tmp_path / 'masks'}", dataset="synthetic",
                                          options=TINY, out_dir=tmp_path / "runs", device="cpu"))
    direct = score_masks(ScoreMasksConfig(masks=source, dataset="synthetic", options=TINY,
                                          out_dir=tmp_path / "runs", cache_dir=tmp_path / "cache", device="cpu"))
    assert folder.values == direct.values and folder.path.is_file() and direct.path.is_file()
    assert {row["metric"] for row in folder.rows} == set(folder.values)
    with pytest.raises(UserError, match="model:CKPT"):
        predict_masks(PredictMasksConfig(source="gt", dataset="synthetic", out_dir=tmp_path / "x", options=TINY))


def test_one_default_cache():
    assert _files_matching(r"environ\.get\(\"PARTBENCH_CACHE\"") == ["benchmark/core/cache.py"]


def test_every_training_goes_through_the_task_layer(tmp_path):
    """`benchmark train` and the plans' train steps call benchmark.tasks.train; nothing else in the harness
    calls a method's `train` or the run cache's train_or_reuse (the conformance checks aside)."""
    harness = ("benchmark",)
    assert _files_matching(r"train_or_reuse\(", harness) == ["benchmark/tasks/train.py"]
    assert _files_matching(r"\.train\(data", harness) == ["benchmark/tasks/train.py", "benchmark/testing.py"]
    from benchmark.tasks import TrainConfig, train

    # A plan's step names the key it planned with: changed inputs are refused before anything trains.
    config = TrainConfig(method="scops", dataset="synthetic", params={"num_parts": 2, "preset": "tiny"},
                         options=TINY, cache_dir=tmp_path / "cache", into_run_cache=True, expected_key="0" * 16)
    with pytest.raises(UserError, match="inputs changed since they were planned .* != 0000000000000000"):
        train(config)
    assert not (tmp_path / "cache").exists()


def test_mask_spellings_are_not_compared_by_hand():
    """What a --masks spelling means is asked of its kind (MaskSource.kind_of / parse), never read from the
    text: `source == "method"` misses a plug-in kind with the method's background."""
    assert _files_matching(r"\b(source|mask_source|masks|spec) [!=]= \"(gt|method|none|fgbg)\"") == []
