"""Contract checks run for every registered method, dataset and metric (check_estimator-style).

A new plug-in is picked up automatically. A dataset that needs a data root must have a miniature-tree
builder in ``dataset_fixtures.FIXTURES``; a method that cannot run here is skipped with its reason.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from benchmark.core.dataset import Dataset
from benchmark.core.method import Method
from benchmark.core.metric import Metric
from benchmark.core.registry import DATASETS, METHODS, METRICS
from benchmark.core.types import PartMaps
from benchmark.runner import RunConfig, run

from helpers import SYNTHETIC_TINY

# Methods that train get a handful of steps here; the contract is about shapes and determinism.
FAST_OVERRIDES = {"steps": 2}


def _method_params(cls) -> dict | None:
    params = cls.demo_params()
    if params is None:
        return None
    params = dict(params)
    for key, value in FAST_OVERRIDES.items():
        if key in cls.param_names():
            params[key] = value
    return params


# ----------------------------------------------------------------------------------------- methods
@pytest.mark.parametrize("name", METHODS.names())
def test_method_parameters_follow_the_estimator_rules(name):
    cls = METHODS.get(name)
    assert issubclass(cls, Method) and cls.name == name
    assert cls.description(), f"{name}: give the class a docstring (its first line is shown by `benchmark list`)"
    sig = inspect.signature(cls.__init__)
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        assert p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD), f"{name}: no *args/**kwargs in __init__"
        assert p.default is not p.empty, f"{name}: parameter {p.name} needs a default"
    assert "num_parts" in cls.param_names()
    defaults = cls.param_defaults()
    if cls.unavailable_reason() is None:
        instance = cls(**defaults)
        assert instance.get_params() == defaults, f"{name}: __init__ must store every parameter unchanged"


@pytest.mark.parametrize("name", METHODS.names())
def test_method_predicts_normalised_maps_deterministically(name, tmp_path):
    cls = METHODS.get(name)
    reason = cls.unavailable_reason()
    if reason:
        pytest.skip(f"{name} unavailable here: {reason}")
    params = _method_params(cls)
    if params is None:
        pytest.skip(f"{name} needs user input (tested in its own test file)")
    config = RunConfig(method=name, dataset="synthetic", seed=0, num_parts=3, params=params,
                       dataset_options=SYNTHETIC_TINY, metrics=("fg_nmi", "nmi"), device="cpu", batch_size=4)
    first = run(config, out_dir=None, examples=2)
    second = run(config, out_dir=None)
    assert [r["value"] for r in first.rows] == [r["value"] for r in second.rows], "same seed -> identical rows"
    for row in first.rows:
        assert np.isfinite(row["value"]) and row["n"] > 0

    # The raw PartMaps contract, on one batch.
    from benchmark.runner import build_dataset, build_method, fit_method

    data = build_dataset("synthetic", split="test", view="fg", options=SYNTHETIC_TINY)
    method = build_method(name, num_parts=3, params=params)
    fit_method(method, data, seed=0, device="cpu")
    batch = next(data.batches(4))
    with torch.inference_mode():
        maps = method.predict(batch)
    assert isinstance(maps, PartMaps) and len(maps) == len(batch) and maps.num_parts == 3
    assert maps.has_background == cls.provides_background
    assert tuple(maps.image_size) == batch.size
    probs = maps.resized().probabilities()
    assert torch.isfinite(probs).all() and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_views_honour_the_sample_contract(name, tmp_path):
    from dataset_fixtures import FIXTURES

    cls = DATASETS.get(name)
    assert issubclass(cls, Dataset) and cls.name == name and cls.description()
    assert cls.ground_truth in ("keypoints", "pixels")
    assert {cls.fg_view, cls.full_view} <= set(cls.views)
    from benchmark.metrics.landmarks import PROTOCOLS

    assert cls.landmark_protocol is None or cls.landmark_protocol in PROTOCOLS
    assert name in FIXTURES, f"add a miniature-tree builder for {name!r} to tests/dataset_fixtures.py"
    root, options = FIXTURES[name](tmp_path)
    for split in cls.splits:
        for view in dict.fromkeys((cls.fg_view, cls.full_view, "train")):
            if view not in cls.views:
                continue
            data = cls(root, split=split, view=view, **options)
            assert len(data) > 0, f"{name}/{split}/{view} is empty"
            ids = set()
            for i in range(min(len(data), 3)):
                sample = data[i]
                sample.validate()
                ids.add(sample.id)
                size = data.image_size(i)
                assert size is None or tuple(size) == sample.size
                if data.ground_truth == "keypoints":
                    assert sample.keypoints is not None and len(sample.keypoints) == data.num_keypoints
                else:
                    assert sample.part_labels is not None
            assert len(ids) == min(len(data), 3), "sample ids must be unique"
            assert data.identity()["dataset"] == name


# ----------------------------------------------------------------------------------------- metrics
@pytest.mark.parametrize("name", METRICS.names())
def test_metric_accumulators_merge_and_reset(name):
    cls = METRICS.get(name)
    assert issubclass(cls, Metric) and cls.name == name and cls.description()
    assert cls.role in ("fg", "full", "landmarks")
    if cls.kind != "clustering":
        pytest.skip("landmark metric: covered by tests/test_metrics_* with part maps")
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 5, 1000), rng.integers(0, 4, 1000)
    whole = cls(protocol="corrected", ground_truth="pixels")
    whole.update(torch.from_numpy(true), torch.from_numpy(pred))
    halves = [cls(protocol="corrected", ground_truth="pixels") for _ in range(2)]
    halves[0].update(torch.from_numpy(true[:400]), torch.from_numpy(pred[:400]))
    halves[1].update(torch.from_numpy(true[400:]), torch.from_numpy(pred[400:]))
    halves[0].merge(halves[1])
    assert halves[0].compute() == pytest.approx(whole.compute(), abs=1e-12) and whole.count == 1000
    whole.reset()
    whole.update(torch.from_numpy(true), torch.from_numpy(true))
    assert whole.compute() == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------- training capability
TRAINABLE = [name for name in METHODS.names() if METHODS.get(name).trainable()]


def test_trainable_methods_are_found_through_the_contract():
    assert {"ours", "scops"} <= set(TRAINABLE)
    assert not METHODS.get("kmeans").trainable() and METHODS.get("kmeans").train_presets() == {}


@pytest.mark.parametrize("name", TRAINABLE)
def test_trainable_method_trains_one_step_resumes_and_reloads(name, tmp_path, one_torch_thread):
    from benchmark.core.method import RunContext, TrainResult
    from benchmark.datasets import load

    cls = METHODS.get(name)
    reason = cls.unavailable_reason()
    if reason:
        pytest.skip(f"{name} unavailable here: {reason}")
    presets = cls.train_presets()
    assert presets and all(isinstance(v, dict) and v for v in presets.values()), f"{name}: list its presets"
    assert {"preset", "checkpoint"} <= set(cls.param_names()), f"{name}: needs `preset` and `checkpoint` parameters"
    assert cls.param_defaults()["preset"] in presets
    params = dict(cls.demo_params() or {}, num_parts=3, steps=1)
    if "image_size" in cls.param_names():
        params["image_size"] = SYNTHETIC_TINY["image_size"]
    data = load("synthetic", split="train", view="train", masks="gt", **SYNTHETIC_TINY)
    out = tmp_path / "run"

    first = cls(**params)
    first.context = RunContext()
    result = first.train(data, out_dir=out, seed=0, device="cpu")
    assert isinstance(result, TrainResult) and result.steps == 1 and result.resumed_from == 0
    assert result.model_path == out / "model.pt" and result.model_path.is_file()
    assert all(np.isfinite(v) for v in (result.last_losses or {}).values())

    resumed = cls(**dict(params, steps=2))
    resumed.context = RunContext()
    again = resumed.train(data, out_dir=out, resume=True, seed=0, device="cpu")
    assert again.resumed_from == 1 and again.steps == 2
    assert len((out / "train_log.csv").read_text().splitlines()) == 1 + 2

    # `benchmark run --checkpoint OUT/model.pt` evaluates what was trained.
    batch = next(load("synthetic", split="test", view="fg", **SYNTHETIC_TINY).batches(2))
    reloaded = cls(**dict(params, checkpoint=str(again.model_path))).fit(None, seed=0, device="cpu")
    with torch.inference_mode():
        torch.testing.assert_close(reloaded.predict(batch).scores, resumed.predict(batch).scores)
    assert reloaded.weights_id() != resumed.weights_id()
