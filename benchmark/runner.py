"""The evaluation harness: dataset -> method -> part maps -> metrics -> result rows.

This is the only module (with the CLI) that brings methods, datasets and metrics together. One run =
one method with one parameter set on one dataset for one seed under one protocol and mask source:

    from benchmark.runner import RunConfig, run
    result = run(RunConfig(method="kmeans", dataset="synthetic", seed=0), out_dir="runs")
    result.rows            # one dict per metric (see results/README.md for the columns)

What happens, in order:

1. The evaluation protocol (:class:`~benchmark.core.protocol.EvaluationProtocol`) is resolved once from
   the dataset, ``protocol`` and ``masks``; its mask source decides where foreground masks come from
   (dataset annotations, a folder of predicted masks, the method's own background channel, or none) and
   therefore the background label of *every* metric of the run. Datasets, prediction and scoring read
   its rules (``docs/protocol.md``).
2. The method is built from its registered class and parameters, then fitted (:func:`fit_method`):
   methods with ``requires_training`` on the training split's ``train`` view (GT masks, the paper's
   setting); ``transductive`` methods on each evaluation view itself (recorded in the rows).
3. Each evaluation view (the dataset's ``fg_view`` and ``full_view``, once if they are the same) is
   predicted batch by batch on the device (:func:`traverse`, shared with ``benchmark export``); label
   pairs are extracted by :func:`benchmark.metrics.scoring.label_pairs` and streamed into the metrics'
   contingency tables. Under ``--protocol legacy`` the dataset's ``legacy_align_corners`` (the
   reference's upsampling convention of the view) replaces the method's own, and its
   ``legacy_background_rules`` are passed on.
4. Landmark regression (when the dataset defines a protocol) predicts the fitting split and the
   evaluation split in the dataset's ``landmark_view`` and regresses keypoints from part centres.
5. One tidy row per metric is written atomically to ``<out>/<dataset>/<method>/seed<S>-<key>.csv``; a
   finished run with the same key is not recomputed unless ``force`` (a damaged file is recomputed). While
   a run computes, it holds ``<file>.lock``, a lease refreshed by a heartbeat: an identical run started meanwhile
   waits and then reuses the result; a stale lock (no heartbeat for ``PARTBENCH_LOCK_LEASE_S`` seconds, 300 by
   default, on any host; or a dead PID of this host) is taken over, with one warning line. A metric over no items (or fewer than
   the labels it must tell apart) is one error naming the view, never a value.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from benchmark.core.atomic import exclusive_lock, remove_empty_dirs
from benchmark.core.cache import content_key
from benchmark.core.dataset import Dataset
from benchmark.core.errors import UserError
from benchmark.core.method import Method, RunContext
from benchmark.core.metric import Metric
from benchmark.core.protocol import DEFAULT_PROTOCOL, EvaluationProtocol, MaskSource
from benchmark.core.registry import DATASETS, METRICS
from benchmark.core.seeding import seed_everything
from benchmark.core.types import Batch, PartMaps
# The one factory per kind and the one device resolver; re-exported here for callers of the runner API.
from benchmark.factories import (build_dataset, build_method, check_dataset_options, method_class,  # noqa: F401
                                 resolve_device)
# Parsing of -p/-o lives with the CLI vocabulary; re-exported here for callers of the runner API.
from benchmark.options import check_ranges, check_value_types, command_line_inputs, parse_param, parse_params, parse_value  # noqa: F401
from benchmark.maskgen import mask_cache
from benchmark.results import build_rows, read_rows, write_rows

# Bump when a change of the harness changes numbers, so that stale result files are not reused.
#: metric kinds fed with the label pairs of their role (benchmark.metrics.scoring.label_pairs)
PAIR_KINDS = ("clustering", "foreground")
HARNESS_VERSION = 3  # 3: keypoint read-out rules and CUB legacy box clipping (docs/protocol.md)


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (its :meth:`key` names the result file)."""

    method: str
    dataset: str
    seed: int = 0
    num_parts: int = 4
    params: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    split: str = "test"
    protocol: str = DEFAULT_PROTOCOL
    masks: str = "gt"
    device: str = "auto"
    batch_size: int = 16
    metrics: tuple[str, ...] | None = None  # None = every registered metric that applies

    def key(self, inputs: Any = None) -> str:
        """Hash of the definition; ``inputs`` = the method's :meth:`~Method.input_fingerprint` (the content
        of files its parameters point to), so a changed checkpoint or predictions folder is a new run. The
        mask source enters by its fingerprint (a mask folder: resolved path and file contents), not by
        the text typed."""
        description = asdict(self)
        description["inputs"] = inputs
        description["masks"] = MaskSource.parse(self.masks).fingerprint()
        description.pop("device")  # the device changes speed, not the definition of the numbers
        description["data_root"] = str(Path(self.data_root).resolve()) if self.data_root else None
        description["harness_version"] = HARNESS_VERSION
        return content_key(description, length=16)


@dataclass
class RunResult:
    config: RunConfig
    rows: list[dict[str, Any]]
    path: Path | None
    reused: bool = False
    examples: dict[str, Any] | None = None  # a few predictions for figures (see run(examples=...))


# --------------------------------------------------------------------------------------------------
# building and fitting
# --------------------------------------------------------------------------------------------------
def training_masks(source: MaskSource) -> MaskSource:
    """The masks a method that trains within a run trains on: the GT masks, as the paper trained (it
    evaluates with predicted masks but trains on GT), except for a source with ``trains_methods``
    (``unsupervised:NAME``: the paper's fully unsupervised setting trains and evaluates with the same
    masks). ``benchmark train --masks`` trains on any source. Recorded in the ``train_masks`` column of
    every row (``docs/masks.md``)."""
    return source if source.trains_methods and source.dataset_reads is not None else MaskSource.parse("gt")


def training_view(eval_data: Dataset, *, device: str = "cpu") -> Dataset:
    """The training split's augmented ``train`` view with :func:`training_masks` (a source that computes its
    masks had the training split's prepared with the run's, by :func:`resolve_protocol`)."""
    if "train" not in eval_data.views or "train" not in eval_data.splits:
        raise UserError(f"dataset {eval_data.name!r} has no training view; methods that train cannot run on it")
    return eval_data.with_view(split="train", view="train", masks=training_masks(eval_data.masks))


def trained_with_masks(method: Method, eval_data: Dataset) -> str:
    """The ``train_masks`` of a row: the :func:`training_masks` spec when ``method`` trains within the run (no
    ``checkpoint``; a model cached from an identical earlier training counts, its cache key holds the
    masks), else ``""``."""
    if not method.requires_training or method.get_params().get("checkpoint"):
        return ""
    return training_masks(eval_data.masks).spec


def fit_method(method: Method, eval_data: Dataset, *, seed: int, device: str) -> Method:
    """Fit ``method`` for evaluation on ``eval_data`` following its tags (see the module docstring)."""
    seed_everything(seed)
    if method.requires_training:
        return method.fit(training_view(eval_data, device=device), seed=seed, device=device)
    return method.fit(eval_data, seed=seed, device=device)


def _metrics_for(config: RunConfig, dataset_cls: type[Dataset], ground_truth: str,
                 landmark_protocol: str | None, protocol: EvaluationProtocol) -> list[Metric]:
    names = tuple(dict.fromkeys(config.metrics or METRICS.names()))  # a metric named twice is scored once
    metrics: list[Metric] = []
    for name in names:
        cls = METRICS.get(name)
        if cls.unavailable_reason():
            continue
        if cls.kind not in dataset_cls.metric_kinds:
            if config.metrics:
                raise UserError(f"metric {name!r} does not apply to dataset {dataset_cls.name!r}, which scores "
                                f"{', '.join(m for m in METRICS.names() if METRICS.get(m).kind in dataset_cls.metric_kinds)}")
            continue
        if cls.kind == "foreground" and protocol.masks.background != "method":
            # the foreground is the method's own (its part channels beat its background channel)
            raise UserError(f"metric {name!r} scores the method's own foreground: use --masks method with a "
                            f"method that has a background channel (got --masks {protocol.masks.spec})")
        if cls.kind == "landmarks":
            if landmark_protocol is None:
                if config.metrics:
                    raise UserError(f"metric {name!r} needs a landmark protocol, which dataset "
                                    f"{dataset_cls.name!r} does not define")
                continue
            metrics.append(cls(protocol=protocol, ground_truth=ground_truth, landmark_protocol=landmark_protocol))
        else:
            # num_parts/background: how many labels the metric must tell apart (fewer items is an error).
            metrics.append(cls(protocol=protocol, ground_truth=ground_truth, num_parts=config.num_parts,
                               background=protocol.masks.gives_background))
    return metrics


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------
def resolve_protocol(config: RunConfig, *, device: str = "cpu", progress: bool = False,
                     cache_dir: str | Path | None = None, method: Method | None = None) -> EvaluationProtocol:
    """The run's one :class:`EvaluationProtocol` (name, mask source, the dataset's per-view conventions),
    its mask source prepared when the kind needs it (:func:`benchmark.maskgen.prepare_masks`) for the splits
    the run reads: the evaluated one, the landmark fitting split when a landmark metric is asked for, and
    the training split when ``method`` trains within the run on these masks (:func:`training_masks`)."""
    from benchmark.maskgen import mask_splits, prepare_masks

    cls = DATASETS.get(config.dataset)
    protocol = EvaluationProtocol.resolve(config.protocol, config.masks, dataset=cls)
    if not protocol.masks.needs_preparation:
        return protocol
    trains = method is not None and method.requires_training and training_masks(protocol.masks) == protocol.masks
    splits = mask_splits(cls, config.split, config.metrics, trains=trains)
    masks = prepare_masks(protocol.masks, config.dataset, splits, data_root=config.data_root,
                          options=config.dataset_options, protocol=protocol, device=device, cache_dir=cache_dir,
                          batch_size=config.batch_size, progress=progress)
    return dataclasses.replace(protocol, masks=masks)


def first_view(config: RunConfig, protocol: EvaluationProtocol) -> Dataset:
    """The dataset's FG evaluation view of the run's split, loaded under ``protocol``."""
    return build_dataset(config.dataset, data_root=config.data_root, split=config.split,
                         view=DATASETS.get(config.dataset).role_view("fg", protocol), protocol=protocol,
                         options=config.dataset_options)


@dataclass
class Pass:
    """One pass of :func:`traverse` over a view of a split: ``batches`` yields ``(batch, maps)``."""

    data: Dataset
    landmark_fit: bool  # the landmark regression's fitting split (predicted with the evaluation view's fit)
    batches: Iterator[tuple[Batch, PartMaps]]

    @property
    def folder(self) -> str:
        return f"{self.data.split}/{self.data.view}"


def traverse(method: Method, first: Dataset, views: Sequence[str], *, landmark_fit: bool, seed: int,
             device: str, batch_size: int, num_workers: int = 0, progress: bool = False,
             label: str = "") -> Iterator[Pass]:
    """Fit ``method`` and predict ``views`` of ``first``'s split exactly as a run does; ``run`` and
    ``export`` both walk this, which is why exported predictions reproduce a run exactly.

    Order: a non-transductive method is fitted once (on the training view if it trains); a transductive
    one is fitted on each view just before it is predicted. With ``landmark_fit``, the landmark regression's
    fitting split is predicted right after its evaluation view (``first.landmark_view``), while a
    transductive method still holds the fit of that view: its part indices then mean the same on both
    landmark splits. Consume each pass's ``batches`` before asking for the next pass.
    """
    if not method.transductive:
        fit_method(method, first, seed=seed, device=device)
    for view_name in views:
        data = first if view_name == first.view else first.with_view(view=view_name)
        if method.transductive:
            fit_method(method, data, seed=seed, device=device)
        yield Pass(data, False, _predictions(method, data, device=device, batch_size=batch_size,
                                             num_workers=num_workers, progress=progress and f"{label} {view_name}"))
        if landmark_fit and view_name == first.landmark_view:
            fit_data = first.with_view(split=first.landmark_fit_split, view=view_name)
            yield Pass(fit_data, True, _predictions(method, fit_data, device=device, batch_size=batch_size,
                                                    num_workers=num_workers,
                                                    progress=progress and f"{label} landmark fit split"))


def _predictions(method: Method, data: Dataset, *, device: str, batch_size: int, num_workers: int,
                 progress: bool | str) -> Iterator[tuple[Batch, PartMaps]]:
    """``(batch, method.predict(batch))`` for every batch of ``data``, with the mask source's own masks
    attached when it computes them (e.g. from a model) and the one check every prediction gets."""
    for batch in data.batches(batch_size, device=device, num_workers=num_workers, progress=progress):
        masks = data.masks.batch_masks(batch)
        if masks is not None:
            batch = dataclasses.replace(batch, masks=masks)
        with torch.inference_mode():
            maps = method.predict(batch)
        if len(maps) != len(batch):
            raise RuntimeError(f"method {method.name!r} returned {len(maps)} maps for {len(batch)} images")
        _require_finite(method, data, batch, maps)
        yield batch, maps


def _require_finite(method: Method, data: Dataset, batch: Batch, maps: PartMaps) -> None:
    """NaN or infinite part scores are refused: an argmax over them still gives labels, and with them
    numbers that mean nothing (a diverged training or a damaged checkpoint is the usual cause). One host
    read per batch, beside the metrics' own."""
    finite = torch.isfinite(maps.scores).flatten(1).all(dim=1)
    if bool(finite.all()):
        return
    skipped = set(method.skipped_ids or ())  # their rows are NaN by contract and dropped before scoring
    bad = [sample_id for sample_id, ok in zip(batch.ids, finite.tolist()) if not ok and sample_id not in skipped]
    if not bad:
        return
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    raise UserError(f"method {method.name!r} predicted NaN or infinite part scores for {shown} ({data.name}, "
                    f"split {data.split!r}, view {data.view!r}); nothing is scored from them: check the model "
                    "(a training that diverged, a damaged or mismatched checkpoint)")


def evaluation_views(first: Dataset, metrics: Sequence[Metric]) -> dict[str, list[str]]:
    """``{view: [roles]}`` in the order a run predicts them: the views of the FG and full-image metrics,
    then the landmark view (a view serving several roles is predicted once)."""
    roles_by_view: dict[str, list[str]] = {}
    for role, view_name in (("fg", first.fg_view), ("full", first.full_view)):
        if any(m.kind in PAIR_KINDS and m.role == role for m in metrics):
            roles_by_view.setdefault(view_name, []).append(role)
    if any(m.kind == "landmarks" for m in metrics):
        roles_by_view.setdefault(first.landmark_view, [])
    return roles_by_view


def evaluate(method: Method, config: RunConfig, *, device: str, progress: bool = False, examples: int = 0,
             num_workers: int = 0, mask_cache_dir: str | Path | None = None
             ) -> tuple[list[Metric], dict[str, Any] | None, Dataset]:
    """Predict every evaluation view (:func:`traverse`) and stream label pairs into fresh metrics; generated
    masks are cached in ``mask_cache_dir`` (default: the method's cache)."""
    protocol = resolve_protocol(config, device=device, progress=progress, method=method,
                                cache_dir=mask_cache_dir or method.context.cache_dir)
    if protocol.masks.background == "method" and not method.provides_background:
        raise UserError(f"--masks method needs a method with its own background channel; "
                        f"{config.method!r} has none. Use --masks gt or predicted:DIR")
    first = first_view(config, protocol)
    metrics = _metrics_for(config, type(first), first.ground_truth, first.landmark_protocol, protocol)
    roles_by_view = evaluation_views(first, metrics)
    kept: dict[str, Any] | None = None
    for step in traverse(method, first, list(roles_by_view), landmark_fit=any(m.kind == "landmarks" for m in metrics),
                         seed=config.seed, device=device, batch_size=config.batch_size, num_workers=num_workers,
                         progress=progress, label=config.method):
        view_name = step.data.view
        for batch, maps in step.batches:
            scored = _for_scoring(method, batch, maps, protocol, view_name)
            if scored is None:
                continue
            batch, maps = scored
            if step.landmark_fit:
                _update_landmarks(metrics, maps, batch, split="fit")
                continue
            _update_clustering(metrics, maps, batch, roles_by_view[view_name], protocol, first.ground_truth)
            if view_name == first.landmark_view:
                _update_landmarks(metrics, maps, batch, split="eval")
            # From the first view predicted: the FG view, or the only one a landmark-only run predicts.
            if examples and kept is None and view_name == next(iter(roles_by_view)):
                kept = _keep_examples(maps, batch, examples, protocol.masks.background)
    return metrics, kept, first


def _update_clustering(metrics: Sequence[Metric], maps: PartMaps, batch: Batch, roles: Sequence[str],
                       protocol: EvaluationProtocol, ground_truth: str) -> None:
    from benchmark.metrics.scoring import label_pairs

    for role in roles:
        pairs = label_pairs(maps, batch, role=role, ground_truth=ground_truth, protocol=protocol,
                            background=protocol.masks.background, legacy_rule=protocol.background_rule(role))
        for metric in metrics:
            if metric.kind in PAIR_KINDS and metric.role == role:
                metric.update(*pairs[metric.label_set()])


def _update_landmarks(metrics: Sequence[Metric], maps: PartMaps, batch: Batch, *, split: str) -> None:
    for metric in metrics:
        if metric.kind == "landmarks":
            metric.update(batch, maps, split=split)


def without_skipped(batch, maps, skipped_ids) -> tuple[Any, Any] | None:
    """The batch and maps without the images a method skipped (its ``skipped_ids``, e.g. ``predictions``
    with ``-p on_missing=skip``); ``None`` when nothing is left. Skipped images are counted in the rows."""
    if not skipped_ids:
        return batch, maps
    skipped = set(skipped_ids)
    keep = [i for i, sample_id in enumerate(batch.ids) if sample_id not in skipped]
    if len(keep) == len(batch):
        return batch, maps
    return (batch.select(keep), maps.select(keep)) if keep else None


def _for_scoring(method: Method, batch: Batch, maps: PartMaps, protocol: EvaluationProtocol, view_name: str):
    """The maps as the protocol scores them, minus skipped images (or ``None``): upsampled with the
    protocol's ``align_corners`` of this view where it has one (the reference evaluation upsampled every
    model's logits the same way per view, e.g. DeepFashion FG with ``align_corners=True``)."""
    align = protocol.align_corners(view_name)
    if align is not None and align != maps.align_corners:
        maps = dataclasses.replace(maps, align_corners=align)
    return without_skipped(batch, maps, method.skipped_ids)


def _keep_examples(maps, batch, count: int, background: str) -> dict[str, Any]:
    """The first ``count`` images of a batch with GT and predicted label maps (0 = background)."""
    resized = maps.resized(batch.size)
    pred = resized.part_labels() + 1
    if background == "mask" and batch.masks is not None:
        pred = torch.where(batch.masks > 0.5, pred, torch.zeros_like(pred))
    elif background == "method" and resized.has_background:
        pred = resized.scores.argmax(dim=1)
    out = {"ids": batch.ids[:count], "images": batch.images[:count].cpu(), "pred": pred[:count].cpu(),
           "gt": batch.part_labels[:count].cpu() if batch.part_labels is not None else None,
           "keypoints": batch.keypoints[:count].cpu() if batch.keypoints is not None else None,
           "visible": batch.visible[:count].cpu() if batch.visible is not None else None}
    return out


def run_key(config: RunConfig, method: Method | None = None) -> str:
    method = method or build_method(config.method, num_parts=config.num_parts, params=config.params)
    return config.key(method.input_fingerprint())


def result_path(out_dir: str | Path, config: RunConfig, method: Method | None = None) -> Path:
    return Path(out_dir) / config.dataset / config.method / f"seed{config.seed}-{run_key(config, method)}.csv"


def lock_messages(what: str, then: str) -> dict[str, Any]:
    """The ``on_wait``/``on_takeover`` callbacks of :func:`~benchmark.core.atomic.exclusive_lock` for the CLI:
    one warning line when waiting for another holder and one when taking a stale lock over."""
    from benchmark.core.atomic import lock_lease_s

    def waiting(holder: dict) -> None:
        warnings.warn(f"another process ({holder.get('host', '?')}, PID {holder.get('pid', '?')}) is computing "
                      f"{what}; waiting for it, {then} (a lock whose heartbeat stops for {lock_lease_s():g} s is "
                      "taken over; PARTBENCH_LOCK_LEASE_S sets this)")

    def taking_over(holder: dict, reason: str) -> None:
        warnings.warn(f"taking over the lock of {what} from {holder.get('host', '?')}, PID {holder.get('pid', '?')}: "
                      f"{reason}")

    return {"on_wait": waiting, "on_takeover": taking_over}


def run(config: RunConfig, *, out_dir: str | Path | None = "runs", force: bool = False, progress: bool = False,
        cache_dir: str | Path | None = None, num_workers: int = 0, examples: int = 0) -> RunResult:
    """Run one configuration (see the module docstring); reuse a finished identical run unless ``force``."""
    method = build_method(config.method, num_parts=config.num_parts, params=config.params)
    key = run_key(config, method)
    path = result_path(out_dir, config, method) if out_dir is not None else None
    if path is not None and path.exists() and not force and not examples:
        try:
            rows = read_rows(path)
        except UserError as exc:  # a damaged file is never reused: recompute and replace it
            warnings.warn(f"{str(exc).split('; delete it')[0]}; computing the run again and replacing it")
            rows = []
        if rows:
            return RunResult(config, rows, path, reused=True)

    if path is None:
        return _compute(config, method, key, None, progress=progress, cache_dir=cache_dir,
                        num_workers=num_workers, examples=examples)

    # One process computes a run key at a time; a second identical run waits, then reuses the result.
    try:
        with exclusive_lock(path.with_name(path.name + ".lock"), **lock_messages(f"this run ({path.name})",
                                                                               "then reusing its result")):
            if path.exists() and not force and not examples:
                try:
                    rows = read_rows(path)
                except UserError:
                    rows = []
                if rows:
                    return RunResult(config, rows, path, reused=True)
            return _compute(config, method, key, path, progress=progress, cache_dir=cache_dir,
                            num_workers=num_workers, examples=examples)
    except BaseException:
        # A failed run leaves no empty folders below --out (--out itself is the caller's).
        remove_empty_dirs(path.parent, Path(out_dir), include_stop=False)
        raise


def _compute(config: RunConfig, method: Method, key: str, path: Path | None, *, progress: bool,
             cache_dir: str | Path | None, num_workers: int, examples: int) -> RunResult:
    device = resolve_device(config.device)
    work_dir = path.with_suffix(".work") if path is not None else None
    method.context = RunContext(cache_dir=Path(cache_dir) if cache_dir else None, work_dir=work_dir,
                                num_workers=num_workers, progress=progress,
                                data_root=Path(config.data_root) if config.data_root else None)
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    # Without a cache (run --no-cache), generated masks live in a folder of the run's own, not the home cache.
    with mask_cache(cache_dir) as masks_dir:
        metrics, kept, data = evaluate(method, config, device=device, progress=progress, examples=examples,
                                       num_workers=num_workers, mask_cache_dir=masks_dir)
    wall = time.perf_counter() - t0
    rows = _rows(config, method, metrics, data, device=device, wall=wall, started=started, key=key)
    if path is not None:
        write_rows(path, rows)
    return RunResult(config, rows, path, reused=False, examples=kept)


def _rows(config: RunConfig, method: Method, metrics: Iterable[Metric], data: Dataset, *, device: str,
          wall: float, started: _dt.datetime, key: str) -> list[dict[str, Any]]:
    fields = {
        "run_key": key,
        "method": config.method,
        "dataset": config.dataset,
        "split": config.split,
        "protocol": data.protocol.spec,
        "masks": data.masks.spec,
        "train_masks": trained_with_masks(method, data),
        "supervision": method.supervision_track(),
        "ground_truth": data.ground_truth,
        "num_parts": config.num_parts,
        "seed": config.seed,
        "method_params": json.dumps(_jsonable(method.get_params()), sort_keys=True),
        "dataset_options": json.dumps(_jsonable(data.options()), sort_keys=True),
        "transductive": bool(method.transductive),
        "weights": method.weights_id(),
        "skipped_images": len(method.skipped_ids),
    }
    values = []
    for metric in metrics:
        view = {"fg": data.fg_view, "full": data.full_view}.get(metric.role, data.landmark_view)
        try:
            value = float(metric.compute())
        except ValueError as exc:  # e.g. nothing to score, a keypoint never visible in the landmark fit split
            splits = f"split {config.split!r}" + (f", fitted on split {data.landmark_fit_split!r}"
                                                  if metric.kind == "landmarks" else "")
            raise UserError(f"{metric.name} on {config.dataset}, view {view!r} of {splits}: {exc}; "
                            "check the dataset options (e.g. -o num_test, -o num_train) and --masks") from None
        if metric.count == 0:  # a plug-in metric that scores nothing must not report a number
            raise UserError(f"{metric.name} on {config.dataset}, view {view!r} of split {config.split!r}: "
                            "no items to score; check the dataset options (e.g. -o num_test) and --masks")
        values.append({"metric": metric.name, "value": value, "n": int(metric.count), "view": view,
                       "landmark_protocol": data.landmark_protocol if metric.kind == "landmarks" else ""})
    return build_rows(fields, values, device=device, wall=wall, started=started)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
