"""Conformance checks for plug-in authors, in the spirit of scikit-learn's ``check_estimator``.

Each check takes a plug-in *class* (registered or not) and raises :class:`AssertionError` with a message
that names the plug-in and the rule it breaks; it returns ``None`` when the class follows the contract of
its base class (:mod:`benchmark.core.method`, :mod:`benchmark.core.dataset`, :mod:`benchmark.core.metric`).
Call them from your own test suite::

    from benchmark.testing import check_method

    def test_my_method_follows_the_contract():
        check_method(MyMethod, params={"num_parts": 3})

* :func:`check_method` -- the estimator rules of the parameters, predictions on the built-in synthetic
  dataset (shapes, normalised probabilities, the background tag, same seed -> identical maps) and, for a
  method with ``train``, one training step, an exact resume and the reload through ``checkpoint``. Its
  three parts are public too: :func:`check_method_params`, :func:`check_method_predictions`,
  :func:`check_method_training`.
* :func:`check_dataset` -- every split and evaluation view of a dataset honours the sample contract.
* :func:`check_metric` -- a streaming metric merges shards exactly and resets.

partbench runs the same checks on every registered plug-in (``tests/test_contracts.py``);
``docs/plugins.md`` walks a third-party method through them.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.dataset import Dataset
from benchmark.core.method import Method
from benchmark.core.metric import Metric
from benchmark.core.types import PartMaps

__all__ = ["SYNTHETIC_TINY", "check_dataset", "check_method", "check_method_params", "check_method_predictions",
           "check_method_training", "check_metric"]

#: the built-in synthetic dataset at a size the checks run on in seconds
SYNTHETIC_TINY = {"num_train": 12, "num_test": 8, "image_size": 32}


def _label(cls: type) -> str:
    name = getattr(cls, "name", "?")
    return name if name != "?" else cls.__qualname__


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --------------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------------
def check_method(cls: type[Method], params: dict[str, Any] | None = None, *, num_parts: int = 3,
                 train_dir: str | Path | None = None) -> None:
    """Every method check: :func:`check_method_params`, :func:`check_method_predictions` with ``params``
    (constructor parameters; ``num_parts`` is set to ``num_parts``) and, when the class implements
    ``train``, :func:`check_method_training` in ``train_dir`` (a temporary folder when ``None``)."""
    check_method_params(cls)
    check_method_predictions(cls, params, num_parts=num_parts)
    if cls.trainable():
        if train_dir is not None:
            check_method_training(cls, params, out_dir=train_dir, num_parts=num_parts)
        else:
            with tempfile.TemporaryDirectory() as folder:
                check_method_training(cls, params, out_dir=folder, num_parts=num_parts)


def check_method_params(cls: type[Method]) -> None:
    """The estimator rules: a :class:`Method` subclass with a docstring whose ``__init__`` takes keyword
    parameters with defaults -- ``num_parts`` among them, no ``*args``/``**kwargs`` -- and stores each one
    unchanged under its own name (:meth:`~Method.get_params` reads them back); the tags are booleans."""
    name = _label(cls)
    _require(isinstance(cls, type) and issubclass(cls, Method), f"{name}: a method must subclass benchmark.core.method.Method")
    _require(cls.description(), f"{name}: give the class a docstring (its first line is shown by `benchmark list`)")
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self":
            continue
        _require(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD), f"{name}: no *args/**kwargs in __init__")
        _require(p.default is not p.empty, f"{name}: parameter {p.name!r} of __init__ needs a default")
    _require("num_parts" in cls.param_names(), f"{name}: __init__ must take a num_parts parameter")
    for tag in ("requires_training", "transductive", "provides_background", "uses_masks", "reads_saved_maps"):
        _require(isinstance(getattr(cls, tag), bool), f"{name}: the tag {tag} must be True or False")
    if cls.unavailable_reason() is None:
        defaults = cls.param_defaults()
        instance = cls(**defaults)
        try:
            stored: Any = instance.get_params()
        except AttributeError as exc:  # a parameter stored under another name (or not at all)
            stored = f"no value: {exc}"
        _require(stored == defaults,
                 f"{name}: __init__ must store every parameter unchanged under its own name "
                 f"(get_params() gave {stored!r}, the defaults are {defaults!r})")


def _synthetic(split: str, view: str):
    from benchmark.datasets import load

    return load("synthetic", split=split, view=view, **SYNTHETIC_TINY)


def _fitted(cls: type[Method], params: dict[str, Any], data) -> Method:
    from benchmark.runner import fit_method

    method = cls(**params)
    return fit_method(method, data, seed=0, device="cpu")


def check_method_predictions(cls: type[Method], params: dict[str, Any] | None = None, *, num_parts: int = 3,
                             batch_size: int = 4) -> None:
    """Fit ``cls(**params)`` as the harness does (its tags decide on which data) on the tiny synthetic
    dataset, predict its FG view and check the :class:`~benchmark.core.types.PartMaps` contract: one map
    per image at the batch's size, ``num_parts`` parts, a background channel exactly when
    ``provides_background``, probabilities finite, >= 0 and summing to 1 per pixel. A second instance
    fitted with the same seed must predict identical maps."""
    name = _label(cls)
    reason = cls.unavailable_reason()
    _require(reason is None, f"{name}: unavailable here ({reason}); check it where it can run")
    params = dict(params or {}, num_parts=num_parts)
    data = _synthetic("test", "fg")
    first, second = _fitted(cls, params, data), _fitted(cls, params, data)
    _require(isinstance(first, cls), f"{name}: fit() must return self")
    with torch.inference_mode():
        for batch in data.batches(batch_size):
            maps = first.predict(batch)
            _require(isinstance(maps, PartMaps), f"{name}: predict() must return benchmark.core.types.PartMaps")
            _require(len(maps) == len(batch), f"{name}: {len(maps)} maps for a batch of {len(batch)} images")
            _require(maps.num_parts == num_parts, f"{name}: {maps.num_parts} parts, asked for {num_parts}")
            _require(maps.has_background == cls.provides_background,
                     f"{name}: the maps {'have' if maps.has_background else 'lack'} a background channel, but "
                     f"provides_background is {cls.provides_background}")
            _require(tuple(maps.image_size) == batch.size,
                     f"{name}: maps say the images are {tuple(maps.image_size)}, the batch's are {batch.size}")
            probs = maps.resized().probabilities()
            _require(torch.isfinite(probs).all() and (probs >= 0).all(),
                     f"{name}: part probabilities must be finite and >= 0")
            _require(torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-4, rtol=0),
                     f"{name}: part probabilities must sum to 1 at every pixel")
            again = second.predict(batch)
            _require(torch.equal(maps.scores, again.scores),
                     f"{name}: two instances fitted with the same seed predict different maps; take every "
                     f"random choice from the seed given to fit()")


def check_method_training(cls: type[Method], params: dict[str, Any] | None = None, *, out_dir: str | Path,
                          num_parts: int = 3) -> None:
    """The ``benchmark train`` capability of a method that implements ``train``: presets are declared,
    ``preset`` and ``checkpoint`` are parameters; one step on the tiny synthetic training view writes
    ``out_dir/model.pt``, ``resume=True`` continues exactly to a second step, and ``checkpoint=model.pt``
    reloads what was trained (the same predictions, another weights identity)."""
    from benchmark.core.method import RunContext, TrainResult

    name = _label(cls)
    _require(cls.trainable(), f"{name}: the class does not implement train()")
    reason = cls.unavailable_reason()
    _require(reason is None, f"{name}: unavailable here ({reason}); check it where it can run")
    presets = cls.train_presets()
    _require(presets and all(isinstance(v, dict) and v for v in presets.values()),
             f"{name}: list the training presets in train_presets() ({{name: {{setting: value}}}})")
    _require({"preset", "checkpoint"} <= set(cls.param_names()), f"{name}: needs `preset` and `checkpoint` parameters")
    _require(cls.param_defaults()["preset"] in presets, f"{name}: the default preset is not among train_presets()")
    params = dict(params or {}, num_parts=num_parts, steps=1)
    if "image_size" in cls.param_names():
        params["image_size"] = SYNTHETIC_TINY["image_size"]
    data = _synthetic("train", cls.train_view)
    out = Path(out_dir)

    first = cls(**params)
    first.context = RunContext()
    result = first.train(data, out_dir=out, seed=0, device="cpu")
    _require(isinstance(result, TrainResult) and result.steps == 1 and result.resumed_from == 0,
             f"{name}: train() must return a TrainResult of the one step it ran, got {result!r}")
    _require(result.model_path == out / "model.pt" and result.model_path.is_file(),
             f"{name}: train() must write OUT/model.pt")
    _require(all(np.isfinite(v) for v in (result.last_losses or {}).values()), f"{name}: non-finite losses")

    resumed = cls(**dict(params, steps=2))
    resumed.context = RunContext()
    again = resumed.train(data, out_dir=out, resume=True, seed=0, device="cpu")
    _require(again.resumed_from == 1 and again.steps == 2,
             f"{name}: resume=True must continue from the step-1 checkpoint to step 2, got {again!r}")
    log = out / "train_log.csv"
    _require(log.is_file() and len(log.read_text().splitlines()) == 1 + 2,
             f"{name}: train_log.csv must hold a header and one line per step")

    batch = next(_synthetic("test", "fg").batches(2))
    reloaded = cls(**dict(params, checkpoint=str(again.model_path))).fit(None, seed=0, device="cpu")
    with torch.inference_mode():
        _require(torch.allclose(reloaded.predict(batch).scores, resumed.predict(batch).scores),
                 f"{name}: checkpoint=model.pt must predict what the trained instance predicts")
    _require(reloaded.weights_id() != resumed.weights_id(),
             f"{name}: weights_id() must name the checkpoint a loaded model comes from")


# --------------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------------
def check_dataset(cls: type[Dataset], root: str | Path | None = None, **options: Any) -> None:
    """The dataset contract on the tree at ``root`` (``None`` for built-in data) with ``options``: the
    class attributes are valid, and in every split, the FG, full and training views are non-empty and
    their first samples pass :meth:`~benchmark.core.types.Sample.validate`, match :meth:`image_size`,
    carry the ground truth the class declares (visible-keypoint arrays or part label maps) and have
    unique ids."""
    from benchmark.metrics.landmarks import PROTOCOLS as LANDMARK_PROTOCOLS

    name = _label(cls)
    _require(isinstance(cls, type) and issubclass(cls, Dataset), f"{name}: a dataset must subclass benchmark.core.dataset.Dataset")
    _require(cls.description(), f"{name}: give the class a docstring (its first line is shown by `benchmark list`)")
    _require(cls.ground_truth in ("keypoints", "pixels"), f"{name}: ground_truth must be 'keypoints' or 'pixels'")
    _require({cls.fg_view, cls.full_view} <= set(cls.views), f"{name}: fg_view and full_view must be among views")
    _require(cls.landmark_protocol is None or cls.landmark_protocol in LANDMARK_PROTOCOLS,
             f"{name}: landmark_protocol must be None or one of {', '.join(LANDMARK_PROTOCOLS)}")
    _require(cls.whole_image_landmark_protocol is None or (
        cls.whole_image_view is not None and cls.whole_image_landmark_protocol in LANDMARK_PROTOCOLS),
             f"{name}: whole_image_landmark_protocol must be None, or one of {', '.join(LANDMARK_PROTOCOLS)} with a "
             f"whole_image_view")
    for split in cls.splits:
        for view in dict.fromkeys((cls.fg_view, cls.full_view, "train")):
            if view not in cls.views:
                continue
            data = cls(root, split=split, view=view, **options)
            where = f"{name}/{split}/{view}"
            _require(len(data) > 0, f"{where} is empty")
            ids = set()
            for i in range(min(len(data), 3)):
                sample = data[i]
                try:
                    sample.validate()
                except (ValueError, AssertionError) as exc:
                    raise AssertionError(f"{where}: sample {i} is malformed: {exc}") from None
                ids.add(sample.id)
                size = data.image_size(i)
                _require(size is None or tuple(size) == sample.size,
                         f"{where}: image_size({i}) = {size}, but the sample is {sample.size}")
                if data.ground_truth == "keypoints":
                    _require(sample.keypoints is not None and len(sample.keypoints) == data.num_keypoints,
                             f"{where}: sample {i} needs {data.num_keypoints} keypoints (keypoint_names)")
                else:
                    _require(sample.part_labels is not None, f"{where}: sample {i} has no part label map")
            _require(len(ids) == min(len(data), 3), f"{where}: sample ids must be unique")
            _require(data.identity()["dataset"] == cls.name, f"{where}: identity() must name the dataset")


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
def check_metric(cls: type[Metric], **options: Any) -> None:
    """The metric contract: a :class:`Metric` subclass with a docstring and a valid ``role``; for a
    clustering metric (label pairs), the value of one stream equals that of two merged shards, ``count``
    is the number of pairs, and :meth:`~Metric.reset` starts afresh. ``options`` go to the constructor."""
    name = _label(cls)
    _require(isinstance(cls, type) and issubclass(cls, Metric), f"{name}: a metric must subclass benchmark.core.metric.Metric")
    _require(cls.description(), f"{name}: give the class a docstring (its first line is shown by `benchmark list`)")
    _require(cls.role in ("fg", "full", "landmarks"), f"{name}: role must be 'fg', 'full' or 'landmarks'")
    _require(isinstance(cls.higher_is_better, bool), f"{name}: higher_is_better must be True or False")
    if cls.kind != "clustering":
        return  # landmark metrics need part maps and keypoints: their own tests feed them
    rng = np.random.default_rng(0)
    true, pred = (torch.from_numpy(v) for v in (rng.integers(0, 5, 1000), rng.integers(0, 4, 1000)))
    whole = cls(ground_truth="pixels", **options)
    whole.update(true, pred)
    halves = [cls(ground_truth="pixels", **options) for _ in range(2)]
    halves[0].update(true[:400], pred[:400])
    halves[1].update(true[400:], pred[400:])
    halves[0].merge(halves[1])
    _require(abs(halves[0].compute() - whole.compute()) <= 1e-12,
             f"{name}: two merged shards give {halves[0].compute()}, one stream gives {whole.compute()}")
    _require(whole.count == 1000, f"{name}: count is {whole.count} after 1000 label pairs")
    fresh = cls(ground_truth="pixels", **options)
    fresh.update(true, true)
    whole.reset()
    whole.update(true, true)
    _require(whole.compute() == fresh.compute() and whole.count == 1000,
             f"{name}: reset() must forget every earlier update")
