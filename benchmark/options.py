"""The CLI's vocabulary: one declaration per option, and the parsing of ``-p``/``-o`` values.

Every command takes its options from here, so that one concept has one name everywhere:

=====================  ==========================================================================
option                 meaning
=====================  ==========================================================================
``--out DIR``          the output folder of every command that writes (run, sweep, train, report,
                       export, demo, data download)
``--seed N``           a seed; repeatable, and ranges are accepted: ``--seed 0-4`` = 0,1,2,3,4 (at most
                       :data:`MAX_SEEDS`)
``-q/--quiet``         no progress bars (every command that shows one)
``--num-workers N``    DataLoader worker processes (sweep: local parallel processes)
``--eval-batch-size``  images per evaluation batch (run, sweep, export, demo)
``--train-batch-size`` the global training batch of ``benchmark train``
``-p KEY=VALUE``       a method (or speed-benchmark) parameter
``-o KEY=VALUE``       a dataset option
=====================  ==========================================================================

Numeric options are range-checked by click at the edge (``--eval-batch-size 0`` is one line, exit 2).
``-p``/``-o`` values are Python literals (:func:`parse_value`) checked against the default or annotation of
the parameter they set (:func:`check_value_types`) and against the range the plug-in declares in
``param_ranges`` (:func:`check_ranges`). Old spellings (``--to``, ``--seeds``, ``--workers``,
``--batch-size``, ``--no-progress``) are accepted as hidden aliases.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any, Callable, Iterable

import click

from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL, PROTOCOL_NAMES as PROTOCOLS
from benchmark.core.protocol import MaskSource, canonical_protocol, mask_spellings


# --------------------------------------------------------------------------------------------------
# -p / -o values
# --------------------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A ``-p``/``-o`` value: a Python literal (number, tuple, list, True/False/None), the words
    true/false/none in any case, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value) with :func:`parse_value`; hyphens in keys mean underscores."""
    if "=" not in text:
        raise UserError(f"malformed parameter {text!r}; write -p key=value (e.g. -p niter=20)")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key.isidentifier():
        raise UserError(f"malformed parameter name {key!r} in {text!r}; write -p key=value")
    return key, parse_value(raw)


def parse_params(items: Iterable[str], what: str = "parameter") -> dict[str, Any]:
    """Several ``key=value`` texts (``-p``/``-o`` options) -> dict; a key given twice is an error."""
    out: dict[str, Any] = {}
    for text in items:
        key, value = parse_param(text)
        if key in out:
            raise UserError(f"{what} {key!r} given twice")
        out[key] = value
    return out


def command_line_inputs(params: Iterable[str], options: Iterable[str], *, category: str | None = None,
                        checkpoint: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(method parameters, dataset options) from the ``-p``/``-o`` texts and the ``--category`` and
    ``--checkpoint`` shortcuts."""
    method_params = parse_params(params, "parameter")
    dataset_options = parse_params(options, "dataset option")
    if category is not None:
        dataset_options["category"] = category
    if checkpoint is not None:
        method_params["checkpoint"] = str(Path(checkpoint).resolve())
    return method_params, dataset_options


_KINDS = {"bool": (bool,), "int": (int,), "float": (int, float)}
_KIND_TEXT = {"bool": "true or false", "int": "an integer", "float": "a number"}


def expected_kind(param: inspect.Parameter) -> tuple[str | None, bool]:
    """(``bool``/``int``/``float`` or None when anything goes, whether None is allowed) from the default, or
    from a plain annotation such as ``float | None`` when the default is None."""
    default = param.default
    for kind in ("bool", "int", "float"):  # bool first: True is an int too
        if type(default).__name__ == kind:
            return kind, False
    annotation = param.annotation
    if default is None and isinstance(annotation, str):
        names = {part.strip() for part in annotation.split("|")}
        names.discard("None")
        if len(names) == 1 and next(iter(names)) in _KINDS:
            return next(iter(names)), True
    return None, True


def check_value_types(what: str, parameters: Iterable[inspect.Parameter], given: dict[str, Any]) -> None:
    """A value whose default (or annotation) is a number or a flag must be one too: ``-p niter=abc`` is one
    clear error here, not a traceback from deep inside the method."""
    by_name = {p.name: p for p in parameters}
    for key, value in given.items():
        if key not in by_name:
            continue
        kind, none_ok = expected_kind(by_name[key])
        if kind is None or (value is None and none_ok):
            continue
        if isinstance(value, _KINDS[kind]) and (kind == "bool" or not isinstance(value, bool)):
            continue
        default = by_name[key].default
        raise UserError(f"{what} {key!r} must be {_KIND_TEXT[kind]} (default {default!r}), got {value!r}")


def check_ranges(what: str, ranges: dict[str, Any], given: dict[str, Any]) -> None:
    """Every given number must lie in its declared :class:`~benchmark.core.plugin.Range` (``-p lr=-1``,
    ``-o image_size=100000``): one clear error naming the parameter and the accepted values."""
    for key, value in given.items():
        bounds = ranges.get(key)
        if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if value != value or value not in bounds:  # NaN is in no range
            raise UserError(f"{what} {key!r} must be {bounds.text()}, got {value!r}")


def check_positive(what: str, given: dict[str, Any], names: Iterable[str], minimum: int = 1) -> None:
    """Counts given as ``-p`` values (``n``, ``steps``, ``checkpoint_every``, ...) must be >= ``minimum``."""
    for name in names:
        value = given.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < minimum:
            raise UserError(f"{what} {name!r} must be >= {minimum}, got {value!r}")


#: The most seeds one command takes: a range is checked against it before any seed is made, so that a typo
#: such as ``--seed 0-99999999`` is one clear error, not minutes of parsing and a sweep of a hundred million runs.
MAX_SEEDS = 10_000


def parse_seeds(values: Iterable[str], option: str = "--seed") -> tuple[int, ...]:
    """``("0", "3-5", "7,8")`` -> ``(0, 3, 4, 5, 7, 8)``: single seeds, inclusive ranges ``A-B`` and comma
    lists, in the order given, each seed once; at most :data:`MAX_SEEDS` seeds in all."""
    seeds: dict[int, None] = {}  # ordered and O(1) membership: parsing is linear in the number of seeds
    for text in values:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part.lstrip("-"):
                    lo, hi = (int(v) for v in part.split("-", 1))
                    if hi < lo:
                        raise UserError(f"empty {option} range {part!r}; write the lower seed first, e.g. 0-4")
                else:
                    lo = hi = int(part)
            except ValueError:
                raise UserError(f"malformed {option} {text!r}; write a seed (0), a range (0-4) or a list "
                                "(0,1,2)") from None
            if lo < 0:
                raise UserError(f"{option} {text!r}: seeds must be >= 0")
            if hi - lo + 1 <= MAX_SEEDS:
                seeds.update(dict.fromkeys(range(lo, hi + 1)))
            if hi - lo + 1 > MAX_SEEDS or len(seeds) > MAX_SEEDS:
                raise UserError(f"{option} {text!r}: more than {MAX_SEEDS:,} seeds; give a smaller range")
    return tuple(seeds)


# --------------------------------------------------------------------------------------------------
# weights on the built-in dataset
# --------------------------------------------------------------------------------------------------
def needs_data_root(dataset: str) -> bool:
    from benchmark.core.registry import DATASETS

    return DATASETS.get(dataset).needs_data_root


def synthetic_weights(method: str, dataset: str, params: dict, *, mask_models: bool = False) -> dict:
    """The weights check of ``run``, ``sweep``, ``export`` and ``train``, before any data is read, asked of the
    method's own declaration (``weights_needed``, as ``list`` and ``reproduce`` do).

    On the built-in synthetic dataset, methods whose ImageNet weights are missing here run with random
    weights (as the demo does), with a loud warning; the rows record it (column ``weights``). On real
    datasets the weights are never replaced: a missing file stops the command with what is missing and how
    to get it (or -p weights=random). ``mask_models``: the command also takes mask models (``train``)."""
    from benchmark.core.registry import MASK_MODELS, METHODS

    if method in METHODS.names():
        cls = METHODS.get(method)
        random_params = cls.random_weights_params()
    elif mask_models and method in MASK_MODELS.names():
        cls = MASK_MODELS.get(method)
        random_params = {}  # a mask model never falls back to random weights (--init random says so)
    else:
        return params  # an unknown name is refused with its own error
    missing = cls.missing_weights(params)
    if not missing:
        return params
    if needs_data_root(dataset):
        raise UserError(f"{method} needs weights that are not on this machine: {missing}")
    fills = {k: v for k, v in random_params.items() if k not in params}
    if not fills or params.get("checkpoint"):
        raise UserError(f"{method} needs weights that are not on this machine: {missing}")
    given = " ".join(f"-p {k}={v}" for k, v in fills.items())
    click.echo(f"warning: {missing}; on the synthetic dataset {method!r} runs with RANDOM weights ({given}), "
               "recorded in every row. Numbers with random weights say nothing about the method.", err=True)
    return {**params, **fills}


# --------------------------------------------------------------------------------------------------
# shared click declarations
# --------------------------------------------------------------------------------------------------
class AliasedOption(click.Option):
    """An option whose secondary long names are old spellings: accepted, but not shown in ``--help``."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any):
        self.hidden_aliases = tuple(hidden_aliases)
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx: click.Context):
        record = super().get_help_record(ctx)
        if record is None or not self.hidden_aliases:
            return record
        names, text = record
        shown = [n for n in names.split(", ") if n.split(" ")[0] not in self.hidden_aliases]
        return ", ".join(shown), text


def _option(*names: str, aliases: tuple[str, ...] = (), **kwargs: Any) -> Callable:
    """``click.option`` with old spellings ``aliases`` accepted but hidden from the help."""
    if "default" in kwargs and kwargs["default"] is None:
        del kwargs["default"]  # click >= 8.3 counts an explicit None as a value, so `required` would never fire
    decls = [n for n in names if n.startswith("-")]
    dest = [n for n in names if not n.startswith("-")]
    return click.option(*decls, *aliases, *dest, cls=AliasedOption, hidden_aliases=aliases, **kwargs)


def _seed_callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[int, ...]:
    try:
        return parse_seeds(value)
    except UserError as exc:
        raise click.BadParameter(str(exc)) from None


def method_option(**kwargs: Any) -> Callable:
    return click.option("--method", "-m", required=True, help="Registered method name (see `benchmark list`).",
                        **kwargs)


def methods_option() -> Callable:
    return click.option("--method", "-m", "methods", multiple=True, required=True, help="Method; repeatable.")


def dataset_option(help: str = "Registered dataset name (see `benchmark list`).", **kwargs: Any) -> Callable:
    return click.option("--dataset", "-d", required=True, help=help, **kwargs)


def data_root_option(required: bool = False, help: str = "Root of the dataset tree (not needed for `synthetic`).",
                     **kwargs: Any) -> Callable:
    return _option("--data-root", type=click.Path(file_okay=False), default=None, required=required, help=help,
                   **kwargs)


#: The largest K a command takes: part maps hold K channels per pixel, so K = 10**6 would need terabytes.
MAX_PARTS = 256


def num_parts_option(default: int | None = 4, **kwargs: Any) -> Callable:
    return click.option("--num-parts", "-k", type=click.IntRange(1, MAX_PARTS), default=default,
                        show_default=default is not None, help="Number of parts K.", **kwargs)


def seeds_option(help: str = "Seed; repeat or give a range (--seed 0-4) for several seeds (default 0).") -> Callable:
    """``--seed`` repeatable with ranges; the value is a tuple of ints (empty when not given)."""
    return _option("--seed", "seeds", aliases=("--seeds",), multiple=True, metavar="N|A-B", callback=_seed_callback,
                   help=help)


def single_seed_option() -> Callable:
    return click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the run.")


def param_option(help: str = "Method parameter, e.g. -p niter=20 -p weights=random. Repeatable.") -> Callable:
    return click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help=help)


def dataset_options_option(help: str = "Dataset option, e.g. -o category=car -o num_test=64. Repeatable.") -> Callable:
    return click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE", help=help)


def category_option() -> Callable:
    return click.option("--category", default=None, help="Shortcut for -o category=NAME (PASCAL-Part).")


def checkpoint_option() -> Callable:
    return click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True), default=None,
                        help="Shortcut for -p checkpoint=PATH (evaluate a trained or official checkpoint).")


def split_option(help: str = "Evaluation split.") -> Callable:
    return click.option("--split", default="test", show_default=True, help=help)


def _protocol_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return canonical_protocol(value)
    except UserError as exc:
        raise click.BadParameter(str(exc)) from None


def protocol_option(help: str = "corrected: known defects of the reference evaluation fixed; legacy: the released "
                                "notebooks exactly; whole-image: the PDiscoNet/PDiscoFormer/MPAE evaluation (short "
                                "side SIZE, default 448; whole-image:518-crop for ViTs).") -> Callable:
    return click.option("--protocol", default=DEFAULT_PROTOCOL, show_default=True, callback=_protocol_callback,
                        metavar="|".join(PROTOCOLS[:-1]) + "|whole-image[:SIZE[-crop]]", help=help)


def masks_metavar(accepts: Callable[[type[MaskSource]], bool] | None = None) -> str:
    """The ``--masks`` metavar: every spelling a run accepts (or only those ``accepts`` lets through) joined
    by ``|``, read from the mask-kind registry (``benchmark.core.protocol``, which imports no torch)."""
    return "|".join(mask_spellings(accepts=accepts))


class MasksOption(AliasedOption):
    """``--masks``, whose metavar is read from the mask-kind registry when help is shown, so that a kind a
    plug-in registers after this module was imported is listed too."""

    def __init__(self, *args: Any, accepts: Callable[[type[MaskSource]], bool] | None = None, **kwargs: Any):
        self.accepts = accepts
        super().__init__(*args, **kwargs)

    def make_metavar(self, ctx: click.Context) -> str:
        return masks_metavar(self.accepts)


def masks_option(help: str = "Source of foreground masks, which decides the background of every metric.",
                 accepts: Callable[[type[MaskSource]], bool] | None = None, required: bool = False,
                 dest: str = "masks") -> Callable:
    """``--masks``: one of the mask kinds (``gt`` unless ``required``); ``accepts``: the kinds this command
    takes (its metavar lists only those; the command's task refuses the others)."""
    # no default at all when required: click >= 8.3 counts an explicit None as a value (see _option)
    default = {} if required else {"default": "gt"}
    return click.option("--masks", dest, cls=MasksOption, accepts=accepts, required=required,
                        show_default=not required, help=help, **default)


def device_option() -> Callable:
    return click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")


def eval_batch_size_option() -> Callable:
    return _option("--eval-batch-size", "eval_batch_size", aliases=("--batch-size",), type=click.IntRange(min=1),
                   default=16, show_default=True, help="Images per evaluation batch.")


def train_batch_size_option() -> Callable:
    return _option("--train-batch-size", "train_batch_size", aliases=("--batch-size",),
                   type=click.IntRange(min=1), default=None, help="Global training batch size [preset].")


def out_option(default: str | None, help: str, required: bool = False, **kwargs: Any) -> Callable:
    return _option("--out", "out_dir", aliases=("--to",), type=click.Path(file_okay=False), default=default,
                   required=required, show_default=default is not None, help=help, **kwargs)


def cache_dir_option(help: str = "Feature/checkpoint cache (default $PARTBENCH_CACHE or ~/.cache/partbench).") -> Callable:
    return click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help=help)


def num_workers_option(default: int = 0, help: str = "DataLoader worker processes.", minimum: int = 0) -> Callable:
    return _option("--num-workers", "num_workers", aliases=("--workers",), type=click.IntRange(min=minimum),
                   default=default, show_default=True, help=help)


def quiet_option() -> Callable:
    return _option("--quiet", "-q", "quiet", aliases=("--no-progress",), is_flag=True, help="No progress bars.")


def train_if_missing_option() -> Callable:
    return click.option("--train-if-missing", is_flag=True,
                        help="Let a method that trains (ours, scops) train without --checkpoint even on a CPU.")


def metric_option() -> Callable:
    return click.option("--metric", "metric_names", multiple=True, help="Only these metrics (default: all that apply).")
