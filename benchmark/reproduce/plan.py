"""Reproduction plans: declarative TOML files, validated completely before any work starts.

A plan names *what* to reproduce; :mod:`benchmark.reproduce.graph` turns it into steps. Format::

    description = "ours at K = 4, 6, 8 on CUB and DeepFashion"
    include = ["supp-seeds"]              # other plans: shipped names or paths relative to this file

    [methods.ours]                        # a label used in tables -> registered method + parameters
    method = "ours"
    params = { preset = "paper" }         # the training preset and any other method parameter

    [defaults]                            # what every [[experiment]] inherits unless it sets it
    protocols = ['legacy', 'corrected']      # both, side by side (TOML literal strings)
    masks = ["gt"]

    [[experiment]]
    name = "k-sweep"
    title = "ours, K sweep"
    methods = ["ours"]                    # labels of [methods.*] or registered method names
    datasets = ["cub", "deepfashion"]
    num_parts = [4, 6, 8]
    seeds = [0]                           # or a range text "0-4"
    metrics = ["fg_nmi", "fg_ari", "nmi", "ari"]
    published = "k-sweep"                 # published numbers to put beside the cells (see published.py)
    [experiment.dataset_options]
    cub = { split_source = "official" }   # one table, or an array of tables (one variant each)

    [[published]]                         # numbers of your own paper, beside the legacy cells
    method = "ours"
    dataset = "cub"
    num_parts = 4
    metric = "fg_nmi"
    mean = 46.0
    std = 2.8                             # optional

    [resources.train]                     # submitit parameters per step kind (--executor slurm)
    slurm_partition = "gpu"

Every key is checked: an unknown key or a value of the wrong type is one :class:`PlanError` naming the
file, the line and the valid keys. Names (methods, datasets, metrics, protocols, mask sources) are
checked against the registries at load time too.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from benchmark.core.errors import UserError
from benchmark.core.protocol import (DEFAULT_PROTOCOL, NOTEBOOK_PROTOCOLS, PAPER_PROTOCOL, PROTOCOL_NAMES,
                                     GroundTruthMasks, MaskSource, canonical_protocol, mask_kinds_text)
from benchmark.reproduce.published import PUBLISHED_MASKS

#: the protocols of a plan that names none: the notebook family, the paper's first
PROTOCOLS = tuple(sorted(NOTEBOOK_PROTOCOLS, key=lambda p: p != PAPER_PROTOCOL))
# Mask sources a plan may name: the kinds with ``in_plans`` (benchmark.core.protocol.MaskSource), e.g.
# ``fgbg`` (the fg/bg model the plan trains per dataset, then its predicted masks), ``predicted:DIR``
# (``{root}`` = the dataset's --data-root) and ``unsupervised:NAME``. Step kinds: benchmark.reproduce.steps.


class PlanError(UserError):
    """A plan file that cannot be used; the message names the file, the line and the fix."""


# --------------------------------------------------------------------------------------------------
# the parsed plan
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodSpec:
    """A table label -> a registered method with parameters (e.g. ``ours w/o L_c``)."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """One table family: methods x datasets (x option variants) x K x seeds x protocols x mask sources."""

    name: str
    title: str
    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    num_parts: tuple[int, ...] = (4,)
    seeds: tuple[int, ...] = (0,)
    protocols: tuple[str, ...] = PROTOCOLS
    masks: tuple[str, ...] = ("gt",)
    metrics: tuple[str, ...] | None = None
    published: str | None = None
    figures: bool = True
    dataset_options: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    train_protocol: str = DEFAULT_PROTOCOL
    train_masks: str = "gt"
    fgbg_params: dict[str, Any] = field(default_factory=dict)
    train_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def variants(self, dataset: str) -> tuple[dict[str, Any], ...]:
        return self.dataset_options.get(dataset) or ({},)


@dataclass(frozen=True)
class PublishedNumber:
    method: str
    dataset: str
    num_parts: int
    metric: str
    mean: float
    std: float | None = None
    source: str = ""
    masks: str | None = None


@dataclass
class Plan:
    name: str
    path: Path
    description: str
    methods: dict[str, MethodSpec]
    experiments: list[Experiment]
    published: list[PublishedNumber]
    resources: dict[str, dict[str, Any]]

    def method_spec(self, label: str) -> MethodSpec:
        return self.methods.get(label) or MethodSpec(label, label, {})


# --------------------------------------------------------------------------------------------------
# locating keys in the file (tomllib gives values, not positions)
# --------------------------------------------------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_.-]+)\s*=")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[^.\s]+", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


class _Lines:
    """(table path, key) -> line number, for error messages. Arrays of tables count their entries, so
    ``experiment[1].seeds`` is the ``seeds`` line of the second ``[[experiment]]``."""

    def __init__(self, text: str):
        self.lines: dict[tuple, int] = {}
        self._entries: dict[tuple, int] = {}  # array-of-tables path -> index of its latest entry
        table: tuple = ()
        depth = 0  # open brackets of a multi-line array value: its lines hold no keys
        for number, line in enumerate(text.splitlines(), start=1):
            code = _strip_comment(line)
            if depth == 0:
                header = _HEADER.match(code)
                if header and not _KEY.match(code):
                    names = tuple(_split_dotted(header.group(2)))
                    if header.group(1) == "[[":
                        base = self._resolve(names[:-1]) + (names[-1],)
                        self._entries[base] = self._entries.get(base, -1) + 1
                        table = base + (self._entries[base],)
                    else:
                        table = self._resolve(names)
                    self.lines.setdefault(table, number)
                    continue
                key = _KEY.match(code)
                if key:
                    self.lines.setdefault(table + tuple(_split_dotted(key.group(1))), number)
                    value = code.split("=", 1)[1]
                    depth = max(value.count("[") - value.count("]"), 0)
            else:
                depth = max(depth + code.count("[") - code.count("]"), 0)

    def _resolve(self, names: tuple) -> tuple:
        # [experiment.dataset_options] after [[experiment]] belongs to the latest experiment entry.
        out: tuple = ()
        for name in names:
            out = out + (name,)
            if out in self._entries:
                out = out + (self._entries[out],)
        return out

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for char in line:
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        out.append(char)
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------
class _Checker:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = _Lines(text)

    def fail(self, where: tuple, message: str) -> PlanError:
        line = self.lines.line(where)
        place = f"{self.path}, line {line}" if line else str(self.path)
        return PlanError(f"plan {place}: {message}")

    def keys(self, table: dict, where: tuple, valid: dict[str, str], required: tuple[str, ...] = ()) -> None:
        for key in table:
            if key not in valid:
                raise self.fail(where + (key,), f"unknown key {_dotted(where + (key,))!r}; valid keys here: "
                                                f"{', '.join(valid)}")
        for key in required:
            if key not in table:
                raise self.fail(where, f"{_dotted(where) or 'the plan'} needs the key {key!r} "
                                       f"({valid[key]})")

    def typed(self, value: Any, where: tuple, kind: str) -> Any:
        ok = {
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "table": isinstance(value, dict),
            "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
            "list[int]": isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
        }[kind]
        if not ok:
            raise self.fail(where, f"{_dotted(where)!r} must be {_KIND_TEXT[kind]}, got {_show(value)}")
        return value


_KIND_TEXT = {"str": "a string", "bool": "true or false", "int": "an integer", "number": "a number",
              "table": "a table", "list[str]": "a list of strings", "list[int]": "a list of integers"}


def _dotted(where: tuple) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in where).replace(".[", "[")


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


TOP_KEYS = {"name": "the plan's name (default: the file name)", "description": "one line shown by --dry-run",
            "include": "other plans to add (shipped names or paths)", "methods": "table: label -> method",
            "defaults": "values every [[experiment]] inherits", "experiment": "the experiments",
            "published": "published numbers to compare with", "resources": "submitit parameters per step kind"}
METHOD_KEYS = {"method": "a registered method name", "params": "method parameters (a table)"}
EXPERIMENT_KEYS = {
    "name": "a unique name", "title": "the table title", "methods": "labels or registered method names",
    "datasets": "registered dataset names", "num_parts": "K values", "seeds": "seeds, or a range such as '0-4'",
    "protocols": f"{', '.join(PROTOCOL_NAMES)}[:SIZE[-crop]]", "masks": f"mask sources: {mask_kinds_text(in_plans=True)}", "metrics": "metric names (default: every one that applies)",
    "published": "a named published table (k-sweep, five-seeds, whole-image)", "figures": "qualitative figures (true/false)",
    "dataset_options": "dataset -> option table, or array of option tables (one variant each)",
    "train_protocol": "protocol of the training data (legacy = the reference training code)",
    "train_masks": "masks of the training data: gt or unsupervised:NAME",
    "train_options": "dataset -> option table of the training data (default: each variant's own options)",
    "fgbg_params": "parameters of the fg/bg model training (e.g. preset)",
}
DEFAULT_KEYS = {k: v for k, v in EXPERIMENT_KEYS.items() if k not in ("name", "title")}
PUBLISHED_KEYS = {"method": "a method label", "dataset": "a dataset name", "num_parts": "K", "metric": "a metric",
                  "mean": "x100", "std": "x100 (optional)", "source": "where the number comes from (optional)",
                  "masks": f"the mask source it was computed with: {', '.join(PUBLISHED_MASKS[:-1])} or "
                           f"{PUBLISHED_MASKS[-1]} (optional: any)"}
_LIST_KINDS = {"methods": "list[str]", "datasets": "list[str]", "num_parts": "list[int]", "protocols": "list[str]",
               "masks": "list[str]", "metrics": "list[str]"}
_SCALAR_KINDS = {"name": "str", "title": "str", "published": "str", "figures": "bool", "train_protocol": "str",
                 "train_masks": "str", "fgbg_params": "table", "dataset_options": "table",
                 "train_options": "table"}


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------
def shipped_plans() -> dict[str, Path]:
    """Plan name -> file of the plans shipped with partbench."""
    folder = importlib_resources.files("benchmark.reproduce") / "plans"
    return {Path(str(entry)).stem: Path(str(entry)) for entry in folder.iterdir() if str(entry).endswith(".toml")}


def resolve_plan_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    shipped = shipped_plans()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise PlanError(f"plan file {path} does not exist; give a .toml file or one of the shipped plans: "
                            f"{', '.join(sorted(shipped))}")
        return path
    raise PlanError(f"unknown plan {name_or_path!r}; the shipped plans are {', '.join(sorted(shipped))}, or give "
                    f"the path of a .toml plan file")


def load_plan(name_or_path: str) -> Plan:
    """Parse and validate a shipped plan (by name) or a plan file, with everything it includes."""
    return _load(resolve_plan_path(name_or_path), seen=())


def _load(path: Path, seen: tuple[Path, ...]) -> Plan:
    path = path.resolve()
    if path in seen:
        raise PlanError(f"plan {path}: includes itself (through {' -> '.join(p.name for p in seen)})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read plan file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"plan {path}: not valid TOML: {exc}") from None
    check = _Checker(path, text)
    check.keys(data, (), TOP_KEYS)
    name = _plain_name(check, check.typed(data.get("name", path.stem), ("name",), "str"), ("name",), "plan name")
    description = check.typed(data.get("description", ""), ("description",), "str")

    methods = _methods(check, data.get("methods", {}))
    defaults = check.typed(data.get("defaults", {}), ("defaults",), "table")
    check.keys(defaults, ("defaults",), DEFAULT_KEYS)
    experiments = []
    entries = data.get("experiment", [])
    if not isinstance(entries, list):
        raise check.fail(("experiment",), "'experiment' must be an array of tables: write [[experiment]]")
    for index, entry in enumerate(entries):
        experiments.append(_experiment(check, entry, defaults, ("experiment", index), methods, path.stem))
        if experiments[-1].name in {e.name for e in experiments[:-1]}:
            raise check.fail(("experiment", index, "name"), f"two experiments are named {experiments[-1].name!r}; "
                                                            "experiment names must be unique")
    published = [_published(check, entry, ("published", i))
                  for i, entry in enumerate(_array(check, data, "published"))]
    from benchmark.reproduce.steps import STEP_KINDS  # the one table of step kinds (here: their names)

    resources = check.typed(data.get("resources", {}), ("resources",), "table")
    for kind, table in resources.items():
        if kind not in STEP_KINDS:
            raise check.fail(("resources", kind), f"unknown step kind {kind!r} in [resources]; the kinds are: "
                                                  f"{', '.join(STEP_KINDS)}")
        check.typed(table, ("resources", kind), "table")

    includes = data.get("include", [])
    check.typed(includes, ("include",), "list[str]")
    plan = Plan(name, path, description, methods, experiments, published, {k: dict(v) for k, v in resources.items()})
    for include in includes:
        try:
            other = _load(resolve_plan_path(include, relative_to=path.parent), seen + (path,))
        except PlanError as exc:
            raise PlanError(f"plan {path}, line {check.lines.line(('include',))}: in included plan {include!r}: "
                            f"{exc}") from None
        _merge(plan, other, check)
    if not plan.experiments:
        raise check.fail((), "the plan has no [[experiment]] (and includes none); add one")
    return plan


def _array(check: _Checker, data: dict, key: str) -> list:
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise check.fail((key,), f"{key!r} must be an array of tables: write [[{key}]]")
    return entries


def _methods(check: _Checker, table: Any) -> dict[str, MethodSpec]:
    from benchmark.core.registry import METHODS

    check.typed(table, ("methods",), "table")
    out = {}
    for label, entry in table.items():
        where = ("methods", label)
        check.typed(entry, where, "table")
        check.keys(entry, where, METHOD_KEYS, required=("method",))
        method = check.typed(entry["method"], where + ("method",), "str")
        if method not in METHODS.names():
            raise check.fail(where + ("method",), f"unknown method {method!r}; registered methods: "
                                                  f"{', '.join(METHODS.names())}")
        params = dict(check.typed(entry.get("params", {}), where + ("params",), "table"))
        _check_method_params(check, where + ("params",), method, params)
        out[label] = MethodSpec(label, method, params)
    return out


def _check_method_params(check: _Checker, where: tuple, method: str, params: dict) -> None:
    from benchmark.core.registry import METHODS
    from benchmark.factories import build_method

    valid = METHODS.get(method).param_names()
    for key in params:
        if key not in valid:
            raise check.fail(where + (key,), f"method {method!r} has no parameter {key!r}; its parameters are: "
                                             f"{', '.join(valid)}")
        if key == "num_parts":
            raise check.fail(where + (key,), "give K with num_parts = [...] in the experiment, not as a parameter")
    try:  # the method's own checks of names and value types (its constructor does no work)
        build_method(method, params=params)
    except UserError as exc:
        raise check.fail(where, str(exc)) from None


def _plain_name(check: _Checker, value: str, where: tuple, what: str) -> str:
    """A plan or experiment name becomes a file or folder name under ``--out``: a plain name only (no folders,
    no ``..``, not absolute, not hidden), so that nothing is written outside ``--out``."""
    if not value or value.startswith(".") or "/" in value or "\\" in value or "\0" in value or ":" in value \
            or value != value.strip():
        raise check.fail(where, f"{what} {value!r} must be a plain name (letters, digits, - _ + and dots; no "
                                "folders, no leading dot): it names files under --out")
    return value


def _experiment(check: _Checker, entry: Any, defaults: dict, where: tuple, methods: dict[str, MethodSpec],
                plan_name: str) -> Experiment:
    check.typed(entry, where, "table")
    check.keys(entry, where, EXPERIMENT_KEYS, required=("name",))
    _plain_name(check, check.typed(entry["name"], where + ("name",), "str"), where + ("name",), "experiment name")
    merged = {**defaults, **entry}

    def origin(key: str) -> tuple:
        return where + (key,) if key in entry else ("defaults", key)

    for key, kind in {**_LIST_KINDS, **_SCALAR_KINDS}.items():
        if key in merged:
            check.typed(merged[key], origin(key), kind)
    for key in ("methods", "datasets"):
        if key not in merged:
            raise check.fail(where, f"experiment {entry['name']!r} needs {key!r} ({EXPERIMENT_KEYS[key]})")
    _check_names(check, merged, origin, methods)
    if "published" in merged:
        from benchmark.reproduce.published import PUBLISHED_TABLES

        if merged["published"] not in PUBLISHED_TABLES:
            raise check.fail(origin("published"), f"unknown published table {merged['published']!r}; known: "
                                                  f"{', '.join(PUBLISHED_TABLES)} (or add [[published]] entries)")
    seeds = merged.get("seeds", [0])
    if isinstance(seeds, str):  # the --seed vocabulary: "0-4", "0,2"
        from benchmark.options import parse_seeds

        try:
            seeds = list(parse_seeds([seeds], option="seeds"))
        except UserError as exc:
            raise check.fail(origin("seeds"), str(exc)) from None
    else:
        check.typed(seeds, origin("seeds"), "list[int]")
    for key in ("num_parts", "seeds"):
        values = merged.get(key, [4]) if key == "num_parts" else seeds
        if not values or any(v < (1 if key == "num_parts" else 0) for v in values):
            raise check.fail(origin(key), f"{key} must be a non-empty list of {'positive' if key == 'num_parts' else 'non-negative'} integers")
    options = {}
    for dataset, value in merged.get("dataset_options", {}).items():
        place = origin("dataset_options") + (dataset,)
        if dataset not in merged["datasets"]:
            raise check.fail(place, f"dataset_options for {dataset!r}, which is not among the experiment's datasets "
                                    f"({', '.join(merged['datasets'])})")
        variants = value if isinstance(value, list) else [value]
        if not all(isinstance(v, dict) for v in variants):
            raise check.fail(place, f"dataset_options.{dataset} must be a table or an array of tables")
        for variant in variants:
            _check_dataset_options(check, place, dataset, variant)
        options[dataset] = tuple(dict(v) for v in variants)
    train_options = {}
    for dataset, value in merged.get("train_options", {}).items():
        place = origin("train_options") + (dataset,)
        if dataset not in merged["datasets"]:
            raise check.fail(place, f"train_options for {dataset!r}, which is not among the experiment's datasets")
        if not isinstance(value, dict):
            raise check.fail(place, f"train_options.{dataset} must be a table of dataset options")
        _check_dataset_options(check, place, dataset, value)
        train_options[dataset] = dict(value)
    return Experiment(
        name=f"{entry['name']}", title=merged.get("title", entry["name"]), methods=tuple(merged["methods"]),
        datasets=tuple(merged["datasets"]), num_parts=tuple(merged.get("num_parts", [4])), seeds=tuple(seeds),
        protocols=tuple(merged.get("protocols", PROTOCOLS)), masks=tuple(merged.get("masks", ["gt"])),
        metrics=tuple(merged["metrics"]) if "metrics" in merged else None, published=merged.get("published"),
        figures=bool(merged.get("figures", True)), dataset_options=options,
        train_protocol=merged.get("train_protocol", DEFAULT_PROTOCOL), train_masks=merged.get("train_masks", "gt"),
        fgbg_params=dict(merged.get("fgbg_params", {})), train_options=train_options)


def _check_names(check: _Checker, merged: dict, origin, methods: dict[str, MethodSpec]) -> None:
    """Every method, dataset, protocol, mask source and metric an experiment names exists."""
    from benchmark.core.registry import DATASETS, METHODS, METRICS

    for label in merged["methods"]:
        if label not in methods and label not in METHODS.names():
            raise check.fail(origin("methods"), f"unknown method {label!r}; define it under [methods.{label}] or "
                                                f"use a registered method: {', '.join(METHODS.names())}")
    for name in merged["datasets"]:
        if name not in DATASETS.names():
            raise check.fail(origin("datasets"), f"unknown dataset {name!r}; registered datasets: "
                                                 f"{', '.join(DATASETS.names())}")
    for protocol in merged.get("protocols", PROTOCOLS):
        try:
            spelt = canonical_protocol(protocol)
        except UserError:
            spelt = None
        if spelt != protocol:
            raise check.fail(origin("protocols"), f"unknown protocol {protocol!r}; use "
                                                  f"{', '.join(PROTOCOL_NAMES)} (whole-image takes a size: "
                                                  f"whole-image:518-crop)" + (f"; write it {spelt!r}" if spelt else ""))
    for source in merged.get("masks", ["gt"]):
        try:
            MaskSource.split(source, in_plans=True)
        except UserError:
            raise check.fail(origin("masks"), f"unknown mask source {source!r}; use "
                                              f"{mask_kinds_text(in_plans=True)}") from None
    for metric in merged.get("metrics", []):
        if metric not in METRICS.names():
            raise check.fail(origin("metrics"), f"unknown metric {metric!r}; registered metrics: "
                                                f"{', '.join(METRICS.names())}")
    for key in ("train_protocol",):
        if key in merged and merged[key] not in PROTOCOLS:
            raise check.fail(origin(key), f"{key} must be {' or '.join(PROTOCOLS)}, got {merged[key]!r}")
    if "train_masks" in merged and not _trains_on(merged["train_masks"]):
        raise check.fail(origin("train_masks"), f"train_masks must be gt or unsupervised:NAME, got {merged['train_masks']!r}")


def _trains_on(source: Any) -> bool:
    """Whether methods of a plan may train on mask source ``source``: the annotations, or a kind whose
    masks train methods too (``unsupervised:NAME``; see ``MaskSource.trains_methods``)."""
    try:
        kind = MaskSource.kind_of(str(source), in_plans=True)
    except UserError:
        return False
    return kind is GroundTruthMasks or kind.trains_methods


def _check_dataset_options(check: _Checker, where: tuple, dataset: str, options: dict) -> None:
    from benchmark.factories import check_dataset_options

    for key in ("split", "protocol", "masks"):
        if key in options:
            raise check.fail(where + (key,), f"{key!r} is not a dataset option here; use the experiment's "
                                             f"{'protocols' if key == 'protocol' else key} key")
    try:
        check_dataset_options(dataset, options)
    except UserError as exc:
        raise check.fail(where, str(exc)) from None


def _published(check: _Checker, entry: dict, where: tuple) -> PublishedNumber:
    check.keys(entry, where, PUBLISHED_KEYS, required=("method", "dataset", "num_parts", "metric", "mean"))
    for key, kind in (("method", "str"), ("dataset", "str"), ("num_parts", "int"), ("metric", "str"),
                      ("mean", "number"), ("std", "number"), ("source", "str"), ("masks", "str")):
        if key in entry:
            check.typed(entry[key], where + (key,), kind)
    if entry.get("masks", "gt") not in PUBLISHED_MASKS:
        raise check.fail(where + ("masks",), f"masks must be {', '.join(PUBLISHED_MASKS[:-1])} or "
                                             f"{PUBLISHED_MASKS[-1]}, got {entry['masks']!r}")
    return PublishedNumber(entry["method"], entry["dataset"], entry["num_parts"], entry["metric"],
                           float(entry["mean"]), float(entry["std"]) if "std" in entry else None,
                           entry.get("source", ""), entry.get("masks"))


def _merge(plan: Plan, other: Plan, check: _Checker) -> None:
    for label, spec in other.methods.items():
        if label in plan.methods and plan.methods[label] != spec:
            raise check.fail(("include",), f"method label {label!r} means {plan.methods[label]} here and {spec} in "
                                           f"{other.path}; give one of them another label")
        plan.methods.setdefault(label, spec)
    names = {e.name for e in plan.experiments}
    for experiment in other.experiments:
        if experiment.name in names:
            raise check.fail(("include",), f"two experiments are named {experiment.name!r} (one in {other.path}); "
                                           "experiment names must be unique")
        names.add(experiment.name)
        plan.experiments.append(experiment)
    plan.published.extend(p for p in other.published if p not in plan.published)
    for kind, table in other.resources.items():
        plan.resources.setdefault(kind, dict(table))
