"""Contract checks run for every registered method, dataset and metric (check_estimator-style), through
the public checks of :mod:`benchmark.testing` that plug-in authors run on their own classes.

A new plug-in is picked up automatically. A dataset that needs a data root must have a miniature-tree
builder in ``dataset_fixtures.FIXTURES``; a method that cannot run here is skipped with its reason.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.core.method import Method
from benchmark.core.registry import DATASETS, METHODS, METRICS
from benchmark.core.types import PartMaps
from benchmark.runner import RunConfig, run
from benchmark.testing import (check_dataset, check_method_params, check_method_predictions, check_method_training,
                               check_metric)

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
    assert cls.name == name
    check_method_params(cls)


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
    for row in run(config, out_dir=None, examples=2).rows:  # through the harness, by its registered name
        assert np.isfinite(row["value"]) and row["n"] > 0
    check_method_predictions(cls, params, num_parts=3)  # the PartMaps contract; same seed -> same maps


# ----------------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_views_honour_the_sample_contract(name, tmp_path):
    from dataset_fixtures import FIXTURES

    cls = DATASETS.get(name)
    assert cls.name == name
    assert name in FIXTURES, f"add a miniature-tree builder for {name!r} to tests/dataset_fixtures.py"
    root, options = FIXTURES[name](tmp_path)
    check_dataset(cls, root, **options)


# ----------------------------------------------------------------------------------------- metrics
@pytest.mark.parametrize("name", METRICS.names())
def test_metric_accumulators_merge_and_reset(name):
    cls = METRICS.get(name)
    assert cls.name == name
    check_metric(cls, protocol="corrected")
    if cls.kind not in ("clustering", "foreground"):
        pytest.skip("landmark metric: covered by tests/test_metrics_* with part maps")
    perfect = cls(protocol="corrected", ground_truth="pixels")
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 5, 1000))
    perfect.update(labels, labels)
    assert perfect.compute() == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------- training capability
TRAINABLE = [name for name in METHODS.names() if METHODS.get(name).trainable()]


def test_trainable_methods_are_found_through_the_contract():
    assert {"ours", "scops"} <= set(TRAINABLE)
    assert not METHODS.get("kmeans").trainable() and METHODS.get("kmeans").train_presets() == {}


@pytest.mark.parametrize("name", TRAINABLE)
def test_trainable_method_trains_one_step_resumes_and_reloads(name, tmp_path, one_torch_thread):
    cls = METHODS.get(name)
    reason = cls.unavailable_reason()
    if reason:
        pytest.skip(f"{name} unavailable here: {reason}")
    check_method_training(cls, cls.demo_params(), out_dir=tmp_path / "run", num_parts=3)


# ----------------------------------------------------------------------------------------- the checks themselves
def test_the_public_checks_name_the_broken_rule():
    """A check that cannot fail checks nothing: each public check refuses a plug-in breaking its rule."""

    class Renamed(Method):
        """Stores its parameter under another name."""

        def __init__(self, num_parts: int = 4):
            self.k = num_parts

    with pytest.raises(AssertionError, match="Renamed: __init__ must store every parameter unchanged"):
        check_method_params(Renamed)

    class Unnormalised(Method):
        """Scores that are not probabilities."""

        def __init__(self, num_parts: int = 4):
            self.num_parts = num_parts

        def predict(self, batch):
            scores = torch.full((len(batch), self.num_parts, *batch.size), 2.0, device=batch.device)
            return PartMaps(scores, image_size=batch.size, kind="probs")

    with pytest.raises(AssertionError, match="Unnormalised: part probabilities must sum to 1"):
        check_method_predictions(Unnormalised)

    class Random(Method):
        """Ignores the seed."""

        def __init__(self, num_parts: int = 4):
            self.num_parts = num_parts

        def predict(self, batch):
            scores = torch.rand(len(batch), self.num_parts, *batch.size).softmax(1)
            return PartMaps(scores, image_size=batch.size, kind="probs")

    with pytest.raises(AssertionError, match="Random: two instances fitted with the same seed"):
        check_method_predictions(Random)

    class Forgetful(METRICS.get("nmi")):
        """Merging drops the other shard."""

        def merge(self, other):
            pass

    with pytest.raises(AssertionError, match="two merged shards give"):
        check_metric(Forgetful)

    class Empty(DATASETS.get("synthetic")):
        """No test images."""

        def __len__(self):
            return 0 if self.split == "test" else super().__len__()

    with pytest.raises(AssertionError, match="/test/fg is empty"):
        check_dataset(Empty, **SYNTHETIC_TINY)


# ----------------------------------------------------------------------------------------- declared hooks
def hook_lookups(paths) -> list[str]:
    """``getattr``/``hasattr`` calls that look up, by name, something the plug-in base classes declare (a hook
    or a tag must be read as the attribute it is: a name that only exists when looked up is undocumented)."""
    import ast

    from benchmark.core.dataset import Dataset
    from benchmark.core.metric import Metric

    declared = {name for base in (Method, Dataset, Metric) for name in dir(base) if not name.startswith("__")}
    declared -= {"name"}  # the registered name, read from objects that need not be plug-ins (data may be None)
    declared |= {"settings"}  # a method's resolved preset: declared as Method.effective_params
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # An attribute hung on a module's function after it is defined (``bench.check_options = ...``) is a
        # hook only a getattr finds: declare it in a registry instead (e.g. register_bench_check).
        functions = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                    and node.args[1].value in declared):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                                                    and t.value.id in functions for t in node.targets):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_plugin_hooks_are_declared_not_looked_up_by_name():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    paths = [p for folder in ("benchmark", "datasets", "metrics", "methods") for p in sorted((root / folder).rglob("*.py"))]
    offenders = hook_lookups(paths)
    assert not offenders, "read the declared attribute instead:\n" + "\n".join(offenders)


def test_the_hook_guard_sees_a_lookup(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('estimate = getattr(cls, "training_estimate", None)\nok = hasattr(cls, "check_tree")\n'
                   'def bench():\n    pass\nbench.check_options = print\n')
    assert len(hook_lookups([bad])) == 3
