"""A plan expanded into a graph of steps, each with a content key, its dependencies and its state.

Step kinds, in the order they feed each other (what does each, and its resources: :data:`.steps.STEP_KINDS`):

1. ``fgbg-train``    -- the fg/bg mask model of one dataset (variant), when a mask source is ``fgbg``;
2. ``masks-predict`` -- that model's masks for the splits an evaluation reads; ``masks-score`` -- the mask
   quality (IoU, precision, recall against the annotated masks) of every ``fgbg`` and ``unsupervised:NAME``
   source, shown in the report;
3. ``train``         -- a part method that trains (``ours``, ``scops``) per (dataset, K, seed, parameters),
   into the same content-keyed cache ``benchmark run`` uses, so a trained model is found by both;
4. ``evaluate``      -- one :func:`benchmark.runner.run` per (method, dataset, K, seed, protocol, mask source),
   loading the trained model as a checkpoint so both protocols score the *same* model;
5. ``tables`` (per experiment), ``figures`` (per experiment and dataset) and ``report`` (the HTML page).

A step's key hashes everything that decides its output, including the keys of the steps it depends on, so a
changed input re-does exactly what depends on it. A step is *done* when its output for that key exists
(a trained ``model.pt``; a ledger record in ``<out>/steps/`` whose outputs exist), *to do*, or *blocked*
with the missing input and the command that provides it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import itertools
import json
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from benchmark.core.cache import content_key, file_digest, folder_listing
from benchmark.core.errors import UserError
from benchmark.core.protocol import CORRECTED, FolderMasks, GroundTruthMasks, MaskSource
from benchmark.mask_sources import PlanFgBgMasks
from benchmark.reproduce.plan import Experiment, Plan

EXAMPLES = 4  # test images per qualitative figure
GRAPH_VERSION = 1  # bump when a step's way of producing its output changes


@dataclass(frozen=True)
class Settings:
    """How a plan runs here: where things are, and on which device."""

    out_dir: str
    cache_dir: str
    data_roots: dict[str, str] = field(default_factory=dict)
    checkpoints: tuple[tuple[str, str, tuple[tuple[str, str], ...], str], ...] = ()  # (method, dataset, filters, path)
    device: str = "auto"
    batch_size: int = 16
    quiet: bool = False
    plan_name: str = "plan"


@dataclass(frozen=True)
class _Cell:
    """One (experiment, method label, dataset variant, K, seed) of a plan."""

    experiment: Experiment
    label: str
    dataset: str
    options: dict
    shown: str  # the dataset as named in step ids and tables
    root: str | None
    missing_root: str | None
    num_parts: int
    seed: int
    splits: tuple[str, ...]  # splits an evaluation reads masks of


@dataclass
class Step:
    id: str
    kind: str
    key: str
    deps: tuple[str, ...]
    spec: dict[str, Any]
    blocked: str | None = None
    state: str = "todo"  # done | todo | blocked
    note: str = ""

    @property
    def ledger_name(self) -> str:
        return f"{self.kind}-{self.key}.json"


# --------------------------------------------------------------------------------------------------
# command-line values
# --------------------------------------------------------------------------------------------------
def parse_data_roots(items: Iterable[str]) -> dict[str, str]:
    """``--data-root NAME=PATH`` (repeatable) -> {dataset: resolved path}; checked before any work."""
    from benchmark.core.registry import DATASETS

    roots: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise UserError(f"--data-root {item!r}: write NAME=PATH, e.g. --data-root cub=/data/CUB_200_2011")
        if name not in DATASETS.names():
            raise UserError(f"--data-root {item!r}: unknown dataset {name!r}; registered datasets: "
                            f"{', '.join(DATASETS.names())}")
        if name in roots:
            raise UserError(f"--data-root for {name!r} given twice")
        if not Path(path).expanduser().is_dir():
            raise UserError(f"--data-root {name}={path}: no such directory. {DATASETS.get(name).data_hint}")
        roots[name] = str(Path(path).expanduser().resolve())
    return roots


_CHECKPOINT = re.compile(r"^(?P<method>[A-Za-z0-9_.\- ]+?):(?P<dataset>[A-Za-z0-9_\-]+)"
                         r"(?P<filters>(?::[A-Za-z_]+=[^:=]+)*)=(?P<path>.+)$")


def parse_checkpoints(items: Iterable[str]) -> tuple:
    """``--checkpoint 'ours:cub:K=4:seed=0=PATH'`` -> (method, dataset, filters, resolved path)."""
    out = []
    for item in items:
        match = _CHECKPOINT.match(item)
        if not match:
            raise UserError(f"--checkpoint {item!r}: write METHOD:DATASET[:K=4][:seed=0][:OPTION=VALUE]=PATH, e.g. "
                            "--checkpoint 'ours:cub:K=4:seed=0=/weights/model_60000.pth'")
        filters = tuple((k, v) for k, _, v in (f.partition("=") for f in match["filters"].split(":") if f))
        path = Path(match["path"]).expanduser()
        if not path.is_file():
            raise UserError(f"--checkpoint {item!r}: {path} is not a file")
        out.append((match["method"], match["dataset"], filters, str(path.resolve())))
    return tuple(out)


def _given_checkpoint(settings: Settings, label: str, method: str, dataset: str, options: dict,
                      num_parts: int | None, seed: int | None) -> str | None:
    for who, where, filters, path in settings.checkpoints:
        if who not in (label, method) or where != dataset:
            continue
        values = {"K": num_parts, "k": num_parts, "num_parts": num_parts, "seed": seed,
                  **{k: v for k, v in options.items()}}
        if all(k in values and str(values[k]) == v for k, v in filters):
            return path
    return None


# --------------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------------
def dataset_label(dataset: str, options: dict) -> str:
    if not options:
        return dataset
    text = ",".join(f"{k}={_compact(v)}" for k, v in sorted(options.items()))
    return f"{dataset}[{text}]"


def _compact(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value) if len(value) <= 4 else f"{value[0]}..{value[-1]}"
    return str(value)


def _mask_label(source: str) -> str:
    kind, argument = MaskSource.split(source, in_plans=True)
    return kind.kind + (f"-{Path(argument).name}" if argument is not None else "")


def _on_gt_masks(source: str) -> bool:
    return MaskSource.kind_of(source, in_plans=True) is GroundTruthMasks


def _trained_on(train_masks: str) -> str:
    """The step-id suffix of a training on other masks than the GT (ids stay readable and distinct from the
    same cell trained on GT masks)."""
    return "" if _on_gt_masks(train_masks) else f"/trained-on-{_mask_label(train_masks)}"


# --------------------------------------------------------------------------------------------------
# expansion
# --------------------------------------------------------------------------------------------------
class _Builder:
    """Expands a plan into steps. ``first``: an earlier expansion of the same plan and settings (see
    :func:`build_graph`), whose requests are merged -- each measurement is evaluated once with every metric
    any experiment asks of it, each fg/bg model predicts the union of the splits asked of it -- and whose
    loaded datasets and tree checks are reused. Without it every experiment gets what it asks."""

    def __init__(self, plan: Plan, settings: Settings, *, first: "_Builder | None" = None):
        self.plan, self.settings = plan, settings
        self.steps: dict[str, Step] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self._datasets: dict[str, Any] = first._datasets if first else {}
        self.scores: list[str] = []  # masks-score steps: mask quality for the report
        self._gt_masks: dict[str, str | None] = first._gt_masks if first else {}
        #: measurement key -> its run configuration with every metric asked of it (from ``first``)
        self.metrics = None if first is None else {
            key: dataclasses.replace(config, metrics=metrics) for key, (config, metrics) in first.asked.items()}
        #: fg/bg model -> every split any experiment needs its masks of (test, and train for landmarks)
        self.fgbg_splits: dict[str, tuple[str, ...]] = {}
        self.merged_splits = first.fgbg_splits if first else None
        #: measurement key -> (its first request's run configuration, the metrics every experiment asks of it;
        #: None = every metric that applies)
        self.asked: dict[str, tuple[Any, tuple[str, ...] | None]] = {}
        #: step id -> the dataset label each experiment shows it under (a shared step has one per experiment)
        self.shown: dict[str, str] = {}

    # -- helpers -------------------------------------------------------------------------------------
    def add(self, step: Step) -> Step:
        existing = self.by_key.get((step.kind, step.key))
        if existing is not None:  # the same work asked for by several experiments: one step
            return self.steps[existing]
        if step.id in self.steps:
            step.id = f"{step.id}#{step.key[:6]}"
        self.steps[step.id] = step
        self.by_key[(step.kind, step.key)] = step.id
        return step

    def root(self, dataset: str) -> tuple[str | None, str | None]:
        """(root, why it is missing)."""
        from benchmark.core.registry import DATASETS

        cls = DATASETS.get(dataset)
        if not cls.needs_data_root:
            return None, None
        root = self.settings.data_roots.get(dataset)
        if root is None:
            return None, f"no --data-root for {dataset}: pass --data-root {dataset}=PATH. {cls.data_hint}"
        return root, None

    def dataset(self, name: str, root: str | None, options: dict, *, split: str, view: str, protocol: str,
                masks: str):
        from benchmark.factories import build_dataset

        memo = json.dumps([name, root, split, view, protocol, masks, options], sort_keys=True, default=str)
        if memo not in self._datasets:
            self._datasets[memo] = build_dataset(name, data_root=root, split=split, view=view, protocol=protocol,
                                                 masks=masks, options=options)
        return self._datasets[memo]

    def gt_masks_missing(self, dataset: str, root: str | None, options: dict) -> str | None:
        """Why mask quality cannot be scored on this tree (its test split's ground-truth masks are missing or
        damaged, e.g. a CUB tree without the separately downloaded ``segmentations/``), or None. Evaluation
        with generated masks does not need them; only the ``masks-score`` step does."""
        from benchmark.core.registry import DATASETS
        from benchmark.datasets._check import check_dataset

        if root is None or not DATASETS.get(dataset).has_tree_check():
            return None  # no tree (built-in data), or no root at all (blocked for that reason already)
        memo = json.dumps([dataset, root, options], sort_keys=True, default=str)
        if memo not in self._gt_masks:
            report = check_dataset(dataset, root, deep=False, splits=("test",), **options)
            problems = [p for p in report.problems if p.kind == "mask"]
            self._gt_masks[memo] = None if not problems else (
                f"mask quality on {dataset} needs its ground-truth masks, and {len(problems)} of them are missing "
                f"or damaged in {root} (first: {problems[0]}); add them (`benchmark data check -d {dataset} "
                f"--data-root {root}` lists them), or pass --skip-blocked to run everything else")
        return self._gt_masks[memo]

    # -- steps -----------------------------------------------------------------------------------------
    def fgbg_steps(self, experiment: Experiment, dataset: str, options: dict, root: str | None,
                   missing_root: str | None, splits: tuple[str, ...], label: str) -> Step:
        given = _given_checkpoint(self.settings, "fgbg", "fgbg", dataset, options, None, None)
        blocked = missing_root
        model = content_key({"dataset": dataset, "root": root, "options": options,
                             "model": given or experiment.fgbg_params})  # the masks of one model on one tree
        self.fgbg_splits[model] = tuple(dict.fromkeys((*self.fgbg_splits.get(model, ()), *splits)))
        if self.merged_splits is not None:  # one mask folder per model, for every experiment's splits
            splits = self.merged_splits.get(model, splits)
        if given:
            model_key, model_step = f"file:{file_digest(given)}", None
        else:
            spec = {"dataset": dataset, "root": root, "options": options, "params": experiment.fgbg_params,
                    "seed": 0}
            model_key = content_key({"kind": "fgbg-train", **spec, "v": GRAPH_VERSION})
            spec["model"] = str(Path(self.settings.cache_dir) / "reproduce" / "fgbg" / model_key / "model.pt")
            model_step = self.add(Step(f"fgbg-train/{label}", "fgbg-train", model_key, (), spec,
                                       blocked=blocked or _fgbg_unavailable(experiment.fgbg_params)))
        spec = {"dataset": dataset, "root": root, "options": options, "splits": list(splits),
                "checkpoint": given or (model_step.spec["model"] if model_step else None)}
        key = content_key({"kind": "masks-predict", "model": model_key, **{k: v for k, v in spec.items()
                                                                            if k != "checkpoint"}})
        spec["out"] = str(Path(self.settings.cache_dir) / "reproduce" / "masks" / key)
        predict = self.add(Step(f"masks-predict/{label}", "masks-predict", key,
                                (model_step.id,) if model_step else (), spec, blocked=blocked))
        # Mask quality (IoU, precision, recall against the annotated masks) for the report.
        score = {**{k: spec[k] for k in ("dataset", "root", "options")}, "masks": FolderMasks.spell(spec["out"])}
        self.scores.append(self.add(Step(f"masks-score/{label}", "masks-score",
                                         content_key({"kind": "masks-score", "masks": key, "v": GRAPH_VERSION}),
                                         (predict.id,), score,
                                         blocked=blocked or self.gt_masks_missing(dataset, root, options))).id)
        return predict

    def score_source(self, source: str, cell: "_Cell", blocked: str | None) -> None:
        """Mask quality of a training-free source (``unsupervised:NAME``) on the cell's dataset, for the report."""
        spec = {"dataset": cell.dataset, "root": cell.root, "options": cell.options, "masks": source}
        key = content_key({"kind": "masks-score", **spec, "v": GRAPH_VERSION})
        label = f"masks-score/{_mask_label(source)}/{cell.shown}"
        self.scores.append(self.add(Step(label, "masks-score", key, (), spec, blocked=blocked)).id)

    def train_step(self, experiment: Experiment, label: str, dataset: str, options: dict, root: str | None,
                   missing_root: str | None, num_parts: int, seed: int, shown: str) -> tuple[Step | None, str | None, str]:
        """(train step or None, checkpoint path to evaluate, weights key)."""
        from benchmark.core.method import RunContext
        from benchmark.core.registry import METHODS
        from benchmark.factories import build_method

        spec = self.plan.method_spec(label)
        cls = METHODS.get(spec.method)
        eval_options, options = options, experiment.train_options.get(dataset, options)
        given = spec.params.get("checkpoint") or _given_checkpoint(self.settings, label, spec.method, dataset,
                                                                   eval_options, num_parts, seed)
        if given:
            if not Path(given).is_file():
                raise UserError(f"method {label!r}: checkpoint {given} is not a file")
            return None, given, f"file:{file_digest(given)}"
        if not (cls.requires_training and cls.trainable() and cls.caches_training()):
            return None, None, "none"
        shown = shown if options == eval_options else dataset_label(dataset, options)
        step_id = f"train/{label}/{shown}/K{num_parts}/seed{seed}" + _trained_on(experiment.train_masks)
        train_masks = experiment.train_masks
        blocked = (missing_root or _unavailable(spec.method, spec.params, num_parts)
                   or _mask_source_unavailable(train_masks))
        description = {"method": spec.method, "params": spec.params, "dataset": dataset, "root": root,
                       "options": options, "num_parts": num_parts, "seed": seed,
                       "protocol": experiment.train_protocol, "masks": train_masks}
        if blocked or not _on_gt_masks(train_masks):
            # Generated training masks (unsupervised:NAME) are only made when the step runs, so the key is the
            # description's (its masks are a pure function of the source name, the dataset and the code).
            key = content_key({"kind": "train", **description, "v": GRAPH_VERSION})
            model = Path(self.settings.cache_dir) / "reproduce" / "train" / key / "model.pt"
            step = self.add(Step(step_id, "train", key, (), {**description, "model": str(model)}, blocked=blocked))
            return step, str(model), key
        method = build_method(spec.method, num_parts=num_parts, params=spec.params)
        method.context = RunContext(cache_dir=Path(self.settings.cache_dir))
        data = self.dataset(dataset, root, options, split="train", view="train", protocol=experiment.train_protocol,
                            masks=train_masks)
        key = method.cache_key(data, seed)
        model = Path(self.settings.cache_dir) / spec.method / key / "model.pt"
        step = self.add(Step(step_id, "train", key, (), {**description, "model": str(model)}))
        return step, str(model), key

    def experiment(self, experiment: Experiment) -> list[Step]:
        """The evaluation steps of one experiment (and the training and mask steps they need)."""
        from benchmark.core.registry import DATASETS

        evaluations: list[Step] = []
        for dataset in experiment.datasets:
            root, missing_root = self.root(dataset)
            landmarks = DATASETS.get(dataset).landmark_protocol is not None and (
                experiment.metrics is None or "landmark_error" in experiment.metrics)
            variants = experiment.variants(dataset)
            for options, label, num_parts, seed in itertools.product(variants, experiment.methods,
                                                                     experiment.num_parts, experiment.seeds):
                cell = _Cell(experiment, label, dataset, options,
                             dataset_label(dataset, options) if len(variants) > 1 else dataset, root, missing_root,
                             num_parts, seed, ("test",) + (("train",) if landmarks else ()))
                training = self.train_step(experiment, label, dataset, options, root, missing_root, num_parts,
                                           seed, cell.shown)
                for protocol, source in itertools.product(experiment.protocols, experiment.masks):
                    step = self.evaluation(cell, training, protocol, source)
                    if step is not None:
                        evaluations.append(step)
                        self.shown[step.id] = cell.shown  # this experiment's label of the (maybe shared) step
        return evaluations

    def mask_input(self, cell: "_Cell", source: str) -> tuple[str, str, list[str], str | None]:
        """(``--masks`` value, its content key, steps it needs, why it is blocked) of a plan's mask source."""
        kind, argument = MaskSource.split(source, in_plans=True)
        if kind is PlanFgBgMasks:
            step = self.fgbg_steps(cell.experiment, cell.dataset, cell.options, cell.root, cell.missing_root,
                                   cell.splits, cell.shown)
            return FolderMasks.spell(step.spec["out"]), step.key, [step.id], None
        if kind is FolderMasks:
            folder = str(argument).replace("{root}", cell.root or "{root}")
            if "{root}" in folder:
                return FolderMasks.spell(folder), source, [], cell.missing_root
            if not Path(folder).is_dir():
                return FolderMasks.spell(folder), source, [], (f"mask folder {folder} does not exist; download or write "
                                                           "the predicted masks there (or use masks \"fgbg\" to "
                                                           "predict them)")
            return FolderMasks.spell(folder), FolderMasks.spell(_folder_digest(folder)), [], None
        if kind.needs_preparation:  # masks the run computes (unsupervised:NAME): their quality for the report
            weights = _mask_source_unavailable(source)
            self.score_source(source, cell, cell.missing_root or weights
                              or self.gt_masks_missing(cell.dataset, cell.root, cell.options))
            return source, source, [], weights
        return source, source, [], None

    def evaluation(self, cell: "_Cell", training: tuple, protocol: str, source: str) -> Step | None:
        from benchmark.core.registry import METHODS
        from benchmark.runner import HARNESS_VERSION, RunConfig

        train, checkpoint, weights_key = training
        spec = self.plan.method_spec(cell.label)
        if (MaskSource.kind_of(source, in_plans=True).background == "method"
                and not METHODS.get(spec.method).provides_background):
            return None  # no background channel of its own: the cell does not exist
        masks, masks_key, mask_deps, mask_blocked = self.mask_input(cell, source)
        params = {**spec.params, **({"checkpoint": checkpoint} if checkpoint else {})}
        blocked = cell.missing_root or _unavailable(spec.method, params, cell.num_parts) or mask_blocked
        config = RunConfig(method=spec.method, dataset=cell.dataset, seed=cell.seed, num_parts=cell.num_parts,
                           params=params, dataset_options=cell.options, data_root=cell.root, split="test",
                           protocol=protocol, masks=masks, device=self.settings.device,
                           batch_size=self.settings.batch_size, metrics=cell.experiment.metrics)

        def key_of(config: RunConfig) -> str:
            description = asdict(config)
            for transient in ("device", "masks"):  # the device changes speed only; masks enter through masks_key
                description.pop(transient)
            description["params"] = spec.params  # the trained weights enter through weights_key
            return content_key({"kind": "evaluate", "config": description, "weights": weights_key,
                                "masks": masks_key, "examples": EXAMPLES, "harness": HARNESS_VERSION,
                                "v": GRAPH_VERSION})

        # One measurement (everything but the metrics asked for) is one evaluation, whichever experiments ask
        # for it: two result files holding the same number would be counted twice by `benchmark report`.
        # (An option left at its default is the same measurement as the default spelt out: the rows say so.)
        from benchmark.factories import dataset_option_defaults

        measurement = key_of(dataclasses.replace(config, metrics=None, dataset_options={
            **dataset_option_defaults(cell.dataset), **cell.options}))
        first, asked = self.asked.get(measurement, (config, config.metrics))
        self.asked[measurement] = (first, _union(asked, config.metrics))
        if self.metrics is not None and measurement in self.metrics:
            config = self.metrics[measurement]  # the first request's spelling, with every metric asked
        key = key_of(config)
        step_id = (f"evaluate/{cell.label}/{cell.shown}/K{cell.num_parts}/seed{cell.seed}/{protocol}/"
                   f"{_mask_label(source)}" + (_trained_on(cell.experiment.train_masks) if train else ""))
        return self.add(Step(step_id, "evaluate", key, tuple(([train.id] if train else []) + mask_deps), {
            "config": _config_dict(config), "label": cell.label, "experiment": cell.experiment.name,
            "mask_source": source, "examples": EXAMPLES, "dataset_label": cell.shown}, blocked=blocked))

    def blocked(self, step: Step) -> str | None:
        """Why ``step`` cannot run now (its own reason or a dependency's), else None."""
        if step.blocked:
            return step.blocked
        for dep in step.deps:
            reason = self.blocked(self.steps[dep])
            if reason:
                return reason
        return None

    def build(self) -> list[Step]:
        report_deps = []
        for experiment in self.plan.experiments:
            planned = self.experiment(experiment)
            # Tables and figures show what can be computed; blocked cells are listed under the table.
            evaluations = [s for s in planned if not self.blocked(s)]
            shown = {s.id: self.shown[s.id] for s in planned}  # (self.shown is overwritten by later experiments)
            missing = sorted({f"{s.id}: {self.blocked(s)}" for s in planned if self.blocked(s)})
            if not evaluations:
                reason = self.blocked(planned[0]) if planned else "the experiment has no evaluation"
                self.add(Step(f"tables/{experiment.name}", "tables", content_key({"experiment": experiment.name}),
                              (), {"experiment": experiment.name}, blocked=f"every evaluation is blocked: {reason}"))
                continue
            keys = sorted(s.key for s in evaluations)
            from benchmark.reproduce.published import published_numbers

            published = {"|".join(map(str, k)): asdict(v) for k, v in
                         published_numbers(experiment.published, self.plan.published).items()}
            tables = self.add(Step(f"tables/{experiment.name}", "tables",
                                   content_key({"kind": "tables", "experiment": asdict(experiment), "deps": keys,
                                                "published": published, "v": GRAPH_VERSION}),
                                   tuple(dict.fromkeys(s.id for s in evaluations)),
                                   {"experiment": experiment.name, "title": experiment.title,
                                    "methods": list(experiment.methods), "num_parts": list(experiment.num_parts),
                                    "protocols": list(experiment.protocols), "masks": list(experiment.masks),
                                    "metrics": list(experiment.metrics) if experiment.metrics else None,
                                    "evaluations": [{"id": s.id, "ledger": s.ledger_name, "dataset_label": shown[s.id]}
                                                    for s in dict((s.id, s) for s in evaluations).values()],
                                    "published": published, "missing": missing}))
            report_deps.append(tables.id)
            if experiment.figures:
                report_deps.extend(s.id for s in self.figure_steps(experiment, evaluations, shown))
        report_deps.extend(i for i in dict.fromkeys(self.scores) if not self.blocked(self.steps[i]))
        report = Step("report", "report", content_key({"kind": "report", "deps": sorted(
            self.steps[i].key for i in report_deps), "v": GRAPH_VERSION}), tuple(report_deps), {"plan": self.plan.name},
            blocked=None if report_deps else "every table is blocked")
        self.add(report)
        return list(self.steps.values())

    def figure_steps(self, experiment: Experiment, evaluations: list[Step], shown: dict[str, str]) -> list[Step]:
        """One figure per dataset (variant): every method of the experiment on the same test images, from the
        first K and seed, preferring the corrected protocol and the first mask source."""
        out = []
        protocol = CORRECTED if CORRECTED in experiment.protocols else experiment.protocols[0]
        for dataset_text in dict.fromkeys(shown[s.id] for s in evaluations):
            chosen: dict[str, Step] = {}
            for step in evaluations:
                config = step.spec["config"]
                if (shown[step.id] == dataset_text and config["protocol"] == protocol
                        and config["num_parts"] == experiment.num_parts[0] and config["seed"] == experiment.seeds[0]
                        and step.spec["mask_source"] == experiment.masks[0]):
                    chosen.setdefault(step.spec["label"], step)
            if not chosen:
                continue
            key = content_key({"kind": "figures", "deps": sorted(s.key for s in chosen.values()), "v": GRAPH_VERSION})
            out.append(self.add(Step(f"figures/{experiment.name}/{dataset_text}", "figures", key,
                                     tuple(s.id for s in chosen.values()),
                                     {"experiment": experiment.name, "dataset_label": dataset_text,
                                      "title": f"{experiment.title}: {dataset_text}",
                                      "methods": {label: {"id": s.id, "ledger": s.ledger_name}
                                                  for label, s in chosen.items()}})))
        return out


def _config_dict(config) -> dict[str, Any]:
    out = asdict(config)
    out["metrics"] = list(config.metrics) if config.metrics else None
    return out


def _folder_digest(folder: str) -> str:
    """Content key of a folder of mask files (names, sizes, mtimes: cheap, and changes when a file does)."""
    return content_key([(relative, size, mtime) for relative, _, size, mtime in folder_listing(folder)], length=16)


def _unavailable(method: str, params: dict, num_parts: int) -> str | None:
    """Why a method cannot run here with these parameters (unavailable plug-in, bad parameters, weights files
    missing), asked of the method's own declaration (``weights_needed``), as ``list`` and ``run`` do."""
    return _unavailable_memo(method, json.dumps(params, sort_keys=True, default=str), num_parts)


@functools.lru_cache(maxsize=None)
def _unavailable_memo(method: str, params_json: str, num_parts: int) -> str | None:
    params = json.loads(params_json)
    from benchmark.core.registry import METHODS
    from benchmark.factories import build_method

    reason = METHODS.get(method).unavailable_reason()
    if reason:
        return f"method {method!r} is unavailable here: {reason}"
    if not params.get("checkpoint"):
        build_method(method, num_parts=num_parts, params=params)  # a bad parameter is the plan's error, now
    return METHODS.get(method).missing_weights(params)


def _mask_source_unavailable(source: str) -> str | None:
    """What a training-free mask source (``unsupervised:NAME``) misses here: its backbone's weights file."""
    from benchmark.core.protocol import MaskSource
    from benchmark.mask_sources import UnsupervisedMasks

    kind, name = MaskSource.split(source, in_plans=True)
    if kind is not UnsupervisedMasks:
        return None
    from benchmark.core.requirements import describe_missing
    from benchmark.methods.saliency import UNSUPERVISED, unsupervised_source

    if name not in UNSUPERVISED:
        return None  # refused by the plan's own validation
    missing = describe_missing(unsupervised_source(name).weights_needed())
    return f"mask source {source}: {missing}" if missing else None


def _fgbg_unavailable(params: dict) -> str | None:
    """What the fg/bg model's training misses here (its ``--init`` file), from the same declaration."""
    from benchmark.core.registry import MASK_MODELS

    return MASK_MODELS.get("fgbg").missing_weights(params)


def _union(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The metrics two requests ask for together (``None`` = every metric that applies)."""
    return None if a is None or b is None else tuple(dict.fromkeys((*a, *b)))


def build_graph(plan: Plan, settings: Settings) -> list[Step]:
    """Expand ``plan`` into steps (dependencies first) and set each step's state.

    An evaluation asked for by several experiments with different metrics (``paper``: the landmarks table's
    landmark_error of a cell that ``baselines`` scores with every metric) is one step computing all of them;
    each table shows its own metrics. Likewise an fg/bg model predicts one mask folder, with the splits of
    every experiment using it (``supp-k`` needs the test split, ``baselines`` also the landmark fitting
    split), so their evaluations with it are the same measurements too. A first expansion collects what every
    experiment asks, the next ones build the steps with that."""
    _unavailable_memo.cache_clear()  # weights may have appeared since the last graph of this process
    builder = _Builder(plan, settings)
    steps = builder.build()
    # The second expansion merges what the first collected; a widened mask folder is another masks key, so a
    # third one merges the measurements with their final keys (the splits' union no longer changes).
    for _ in range(2):
        builder = _Builder(plan, settings, first=builder)
        steps = builder.build()
    mark_states(steps, settings)
    return steps


def select(steps: list[Step], patterns: Iterable[str]) -> list[Step]:
    """The steps whose id matches one of the glob ``patterns`` (a pattern without ``*?[`` matches anywhere in
    the id), plus every step they need."""
    patterns = list(patterns)
    if not patterns:
        return steps
    by_id = {s.id: s for s in steps}
    wanted: set[str] = set()
    for pattern in patterns:
        glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        matched = [s.id for s in steps if fnmatch.fnmatchcase(s.id, glob)]
        if not matched:
            raise UserError(f"--only {pattern!r} matches no step; step names look like "
                            f"{', '.join(s.id for s in steps[:3])} (see --dry-run)")
        wanted.update(matched)
    stack = list(wanted)
    while stack:
        for dep in by_id[stack.pop()].deps:
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return [s for s in steps if s.id in wanted]


# --------------------------------------------------------------------------------------------------
# states
# --------------------------------------------------------------------------------------------------
def ledger_dir(settings: Settings) -> Path:
    return Path(settings.out_dir) / "steps"


def read_ledger(settings: Settings, step: Step) -> dict[str, Any] | None:
    path = ledger_dir(settings) / step.ledger_name
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    outputs = record.get("outputs", {})
    if not all(Path(p).exists() for p in _paths(outputs)):
        return None
    return record


def _paths(outputs: Any) -> list[str]:
    if isinstance(outputs, str):
        return [outputs]
    if isinstance(outputs, dict):
        return [p for v in outputs.values() for p in _paths(v)]
    if isinstance(outputs, list):
        return [p for v in outputs for p in _paths(v)]
    return []


def is_done(step: Step, settings: Settings) -> bool:
    from benchmark.reproduce.steps import STEP_KINDS  # steps imports this module: the table is read late

    if STEP_KINDS[step.kind].makes_model and step.spec.get("model"):
        return Path(step.spec["model"]).is_file()
    return read_ledger(settings, step) is not None


def mark_states(steps: list[Step], settings: Settings) -> None:
    from benchmark.reproduce.steps import STEP_KINDS

    by_id = {s.id: s for s in steps}
    for step in steps:  # dependencies come first
        if is_done(step, settings):
            step.state, step.note = "done", ""
            continue
        if step.blocked:
            step.state, step.note = "blocked", step.blocked
            continue
        waiting = [d for d in step.deps if by_id[d].state == "blocked"]
        if waiting:
            step.state, step.note = "blocked", f"needs {waiting[0]}" + (f" (+{len(waiting) - 1} more)" if len(waiting) > 1 else "")
        else:
            step.state, step.note = "todo", ""
    # A training whose every evaluation is finished is not needed again (e.g. its cache was cleaned).
    for step in steps:
        if STEP_KINDS[step.kind].intermediate and step.state == "todo":
            users = [s for s in steps if step.id in s.deps]
            if users and all(u.state == "done" for u in users):
                step.state, step.note = "done", "not needed: every step that uses it is finished"


def estimates(steps: list[Step], settings: Settings) -> dict[str, float]:
    """Seconds per to-do step from measured times of finished steps of the same kind, method and dataset
    (the median; a kind's median when no such step has finished)."""
    records = []
    folder = ledger_dir(settings)
    if folder.is_dir():
        for path in folder.glob("*.json"):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
    by_class: dict[str, list[float]] = {}
    by_kind: dict[str, list[float]] = {}
    for record in records:
        if isinstance(record.get("wall_s"), (int, float)):
            by_class.setdefault(record.get("estimate_class", ""), []).append(record["wall_s"])
            by_kind.setdefault(record.get("kind", ""), []).append(record["wall_s"])
    out = {}
    for step in steps:
        if step.state != "todo":
            continue
        times = by_class.get(estimate_class(step)) or by_kind.get(step.kind)
        if times:
            out[step.id] = sorted(times)[len(times) // 2]
    return out


def estimate_class(step: Step) -> str:
    config = step.spec.get("config", step.spec)
    method = config.get("method", "")
    params = json.dumps(config.get("params", {}), sort_keys=True, default=str) if step.kind == "train" else ""
    return f"{step.kind}|{method}|{config.get('dataset', '')}|{params}"


def provide_command(step: Step, settings: Settings) -> str:
    """The command that does this step by hand (shown by --dry-run for blocked and to-do steps)."""
    spec = step.spec
    root = f" --data-root {shlex.quote(spec['root'])}" if spec.get("root") else ""
    options = "".join(f" -o {shlex.quote(f'{k}={v}')}" for k, v in (spec.get("options") or {}).items())
    if step.kind == "train":
        params = "".join(f" -p {shlex.quote(f'{k}={v}')}" for k, v in spec["params"].items())
        return (f"benchmark train -m {spec['method']} -d {spec['dataset']}{root}{options} -k {spec['num_parts']} "
                f"--seed {spec['seed']}{params}")
    if step.kind == "fgbg-train":
        return f"benchmark train -m fgbg -d {spec['dataset']}{root}{options}"
    if step.kind == "masks-predict":
        return f"benchmark masks predict --checkpoint CKPT -d {spec['dataset']}{root}{options} --split test --out DIR"
    return ""
