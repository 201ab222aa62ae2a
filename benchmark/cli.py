"""The ``benchmark`` command line.

Sub-commands defined here: run, report, list, demo, bench. Area-specific sub-commands (``data``,
``train``, ``export``, ...) live in :mod:`benchmark.commands`; every module there that exposes
``commands: list[click.Command]`` is added automatically.

Any :class:`~benchmark.core.errors.UserError` ends the command with one line ``error: ...`` on stderr and
exit status 2 (no traceback).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import shlex
import sys
from pathlib import Path

import click

from benchmark import __version__
from benchmark import options as opt
from benchmark.core.errors import UserError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """A click group that turns UserError into one clear line and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:  # a bad option value or name: one line too, naming the command's --help
            click.echo(f"error: {_usage_line(exc)}", err=True)
            ctx.exit(2)


def _usage_line(exc: click.UsageError) -> str:
    """click's usage error as one line: the message, then where the help is."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    message = re.sub(r" / '--[a-z-]+'", "", message)  # old spellings (hidden aliases) are not named
    command = exc.ctx.command if exc.ctx is not None else None
    for param in getattr(command, "params", []):
        for alias in getattr(param, "hidden_aliases", ()):
            message = message.replace(f", '{alias}'", "").replace(f"'{alias}', ", "")
    path = exc.ctx.command_path.split()[1:] if exc.ctx is not None else []
    return f"{message}; see `{' '.join(['benchmark', *path, '--help'])}`"


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="partbench")
def cli() -> None:
    """partbench: benchmark unsupervised object-part discovery.

    \b
    Quick start:
      benchmark demo                                   # every method on the synthetic dataset
      benchmark list                                   # what is registered, and usable here
      benchmark run --method kmeans --dataset cub --data-root /data/CUB_200_2011
      benchmark report runs/ --format markdown
    """
    _random_weights_warned_once()


def _random_weights_warned_once() -> None:
    """Show each random-weights warning once per command: the backbone is rebuilt for every seed of a run,
    and the same warning repeated per seed drowns the results. (The ``"once"`` warning filter cannot do it:
    a ``catch_warnings`` block around the warning, as numerical libraries use, forgets what was shown.)"""
    import warnings

    _SHOWN_RANDOM_WEIGHTS.clear()
    if getattr(warnings.showwarning, "random_weights_once", False):
        return
    shown_before = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if "RANDOM weights" in text:
            if text in _SHOWN_RANDOM_WEIGHTS:
                return
            _SHOWN_RANDOM_WEIGHTS.add(text)
        shown_before(message, category, filename, lineno, file, line)

    show.random_weights_once = True  # type: ignore[attr-defined]
    warnings.showwarning = show


_SHOWN_RANDOM_WEIGHTS: set[str] = set()



def _default_cache_dir() -> str:
    from benchmark.core.cache import default_cache_dir

    return default_cache_dir()


@cli.command("run")
@opt.method_option()
@opt.dataset_option()
@opt.data_root_option()
@opt.num_parts_option()
@opt.seeds_option()
@opt.param_option()
@opt.dataset_options_option()
@opt.category_option()
@opt.checkpoint_option()
@opt.split_option()
@opt.protocol_option()
@opt.masks_option()
@opt.metric_option()
@opt.device_option()
@opt.eval_batch_size_option()
@opt.out_option("runs", "Where result CSVs go (one per run).")
@click.option("--force", is_flag=True, help="Recompute even if an identical finished run exists.")
@opt.cache_dir_option()
@click.option("--no-cache", is_flag=True, help="Do not read or write the cache.")
@opt.num_workers_option()
@opt.train_if_missing_option()
@opt.quiet_option()
def run_command(method, dataset, data_root, num_parts, seeds, params, options, category, checkpoint, split, protocol,
                masks, metric_names, device, eval_batch_size, out_dir, force, cache_dir, no_cache, num_workers,
                train_if_missing, quiet):
    """Evaluate a method on a dataset and write one tidy result row per metric.

    \b
    Examples:
      benchmark run -m kmeans -d synthetic --seed 0-2
      benchmark run -m ours -d cub --data-root /data/CUB_200_2011 --checkpoint model_60000.pth --protocol legacy
      benchmark run -m dff -d pascal-part --data-root /data/VOCdevkit_2010 --category car -k 8
      benchmark run -m kmeans -d cub --data-root /data/CUB_200_2011 -p backbone=dino_vits8 -p stride=4
      benchmark run -m predictions -p dir=exported/ -d cub --data-root /data/CUB_200_2011
    """
    from benchmark.core.atomic import output_dir
    from benchmark.runner import RunConfig
    from benchmark.tasks import EvaluateConfig, evaluate
    from benchmark.training_cost import check_training_cost

    method_params, dataset_options = opt.command_line_inputs(params, options, category=category,
                                                             checkpoint=checkpoint)
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    if data_root is not None and not opt.needs_data_root(dataset):
        # Ignored by the dataset; dropping it keeps the run key, so an identical finished run is reused.
        click.echo(f"warning: dataset {dataset!r} is built in and ignores --data-root {data_root}", err=True)
        data_root = None
    method_params = opt.synthetic_weights(method, dataset, method_params)
    check_training_cost(method, num_parts, method_params, device, train_if_missing, _note)
    cache = None if no_cache else (cache_dir or _default_cache_dir())
    with output_dir(out_dir):  # a failed run leaves no empty --out folder
        if data_root is not None:
            _quick_data_check(dataset, data_root, split, dataset_options, masks, tuple(metric_names) or None,
                              method)
        for seed in seeds or (0,):
            config = RunConfig(method=method, dataset=dataset, seed=seed, num_parts=num_parts, params=method_params,
                               dataset_options=dataset_options, data_root=data_root, split=split,
                               protocol=protocol, masks=masks, device=device, batch_size=eval_batch_size,
                               metrics=tuple(dict.fromkeys(metric_names)) or None)  # each metric once
            result = evaluate(EvaluateConfig(config, out_dir=out_dir, force=force, cache_dir=cache,
                                             num_workers=num_workers, progress=not quiet))
            status = "reused" if result.reused else f"{result.rows[0]['wall_time_s'] if result.rows else 0:.1f}s"
            values = "  ".join(f"{r['metric']}={100 * float(r['value']):.2f}" for r in result.rows)
            click.echo(f"{method} on {dataset} seed {seed} [{status}]: {values}")
            click.echo(f"  -> {result.path}")


def _note(text: str) -> None:
    click.echo(text, err=True)


def _quick_data_check(dataset: str, data_root: str, split: str, options: dict, masks: str = "gt",
                      metrics: tuple[str, ...] | None = None, method: str | None = None) -> None:
    """Before a run: the index files parse and every file the run reads exists (headers only, no decoding),
    in the splits it reads (:func:`benchmark.maskgen.mask_splits`: the evaluated split, the landmark fitting
    split when a landmark metric is asked for, the training split when the method trains on these masks).
    Mask files are checked only for the run's mask source (``none``/``method``/generated masks read no mask
    file of the tree, so a CUB tree without ``segmentations/`` works for them)."""
    from benchmark.core.registry import DATASETS, METHODS

    cls = DATASETS.get(dataset)
    if not cls.has_tree_check():
        return
    from benchmark.datasets._check import check_dataset
    from benchmark.factories import build_mask_source, check_dataset_options
    from benchmark.maskgen import mask_splits

    check_dataset_options(dataset, options)
    parsed = build_mask_source(masks)  # an unknown source is named here, in one line
    checked = parsed.files_to_check()  # the mask files of the tree the run reads (none for computed masks)
    default = checked == build_mask_source(None)  # the default source needs no --masks in the hint below
    # A method that trains within the run reads the training split with GT masks (or the run's own, for a
    # source that trains methods).
    trains = (method in METHODS.names() and METHODS.get(method).requires_training
              and (parsed.needs_gt_masks or parsed.trains_methods))
    splits = tuple(mask_splits(cls, split, metrics, trains=trains))
    report = check_dataset(dataset, data_root, deep=False, splits=splits, **options,
                           **({} if default else {"masks": checked.spec}))
    if report.problems:
        shown = "; ".join(str(p) for p in report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        where = (f" in split {', '.join(map(repr, report.failing_splits))}" if report.failing_splits else "")
        # The suggested command checks the same tree with the same options (e.g. the PASCAL-Part category).
        same = "".join(f" -o {shlex.quote(f'{k}={v}')}" for k, v in options.items())
        if not default:
            same += f" --masks {shlex.quote(checked.spec)}"
        same += "".join(f" --split {s}" for s in report.failing_splits)
        blocks = " ".join(report.blocked_uses()[:1])
        raise UserError(f"the {dataset} tree at {data_root} has problems{where}: {shown}{more}. "
                        + (f"{blocks}. " if blocks else "")
                        + f"Run `benchmark data check -d {dataset} --data-root {shlex.quote(str(data_root))}{same}` "
                        f"for the full list")


@cli.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["csv", "markdown", "latex", "html"]), default="markdown",
              show_default=True, help="What to print; html writes one self-contained page instead.")
@opt.out_option(None, "Directory the tables are written to (all three formats) [the input folder, or the "
                      "folder of the first input file].")
@click.option("--name", default="results", show_default=True, help="Base name of the written files.")
@click.option("--decimals", type=click.IntRange(0, 10), default=2, show_default=True,
              help="Decimals of the x100 values.")
@click.option("--with-paper", is_flag=True,
              help="Add the published numbers of the same dataset, K and protocol (the package's "
                   "published.csv) as rows.")
@click.option("--protocols-side-by-side", "side_by_side", is_flag=True,
              help="One table per setting with the protocols as columns (e.g. legacy and whole-image numbers "
                   "of the same trained model in one row).")
def report_command(runs, fmt, out_dir, name, decimals, with_paper, side_by_side):
    """Tables (mean ± std over seeds, x100, best in bold) from result CSVs or directories of them.

    \b
    Examples:
      benchmark report runs/ --format markdown                 # writes runs/results.{csv,md,tex}
      benchmark report runs/cub runs/deepfashion --format latex --name paper_table --with-paper --out tables/
      benchmark report results/synthetic --format html --name report   # one self-contained page
      benchmark report runs/cub --protocols-side-by-side        # legacy | corrected | whole-image columns
    """
    from benchmark.report import render, write_report
    from benchmark.results import load_results

    if not name or Path(name).name != name or name.startswith("."):
        raise UserError(f"--name {name!r} must be a plain file name (no folders); use --out for the folder")
    if fmt == "html":
        from benchmark.html_report import write_html_report

        if out_dir is None:
            first = Path(runs[0])
            out_dir = first if first.is_dir() else first.parent
        path = write_html_report(runs, Path(out_dir) / f"{name}.html", title=f"partbench results: {name}")
        click.echo(f"written: {path}")
        return
    df = load_results(runs)
    if out_dir is None:
        first = Path(runs[0])
        out_dir = first if first.is_dir() else first.parent
    written = write_report(df, out_dir, name, decimals=decimals, with_paper=with_paper, side_by_side=side_by_side)
    click.echo(render(df, fmt, decimals, with_paper, side_by_side), nl=False)
    click.echo(f"\nwritten: {', '.join(str(p) for p in written)}", err=True)


@cli.command("list")
@click.option("-v", "--verbose", is_flag=True,
              help="For each missing weights file: where it goes, how to get it and the option that replaces it.")
def list_command(verbose):
    """Every registered method, dataset, metric and speed benchmark, and whether it is usable here.

    \b
    Examples:
      benchmark list            # then e.g. benchmark run -m kmeans -d synthetic
      benchmark list --verbose  # and how to get the weights files that are missing
    """
    from benchmark.core.method import Method
    from benchmark.core.registry import BENCHES, DATASETS, METHODS, METRICS
    from benchmark.core.requirements import describe_missing
    import benchmark.benches  # noqa: F401  (registers the speed benchmarks)

    anything_missing = []

    def missing_weights(cls) -> str | None:
        """What ``cls`` lacks here: the files' names, or with ``--verbose`` the whole fix of each."""
        found = cls.missing_weights() if verbose else describe_missing(cls.weights_needed({}), brief=True)
        anything_missing.append(bool(found))
        return found

    def status(cls, missing: str | None = None) -> str:
        """``missing``: what the plug-in's declared weights files (``weights_needed``) lack here."""
        reason = cls.unavailable_reason()
        if reason:
            return f"UNAVAILABLE: {reason}"
        if missing:  # part methods fall back to random weights on synthetic data; mask models never do
            return f"needs weights: {missing}" + (" (on the synthetic dataset: random weights, with a warning)"
                                                  if issubclass(cls, Method) else "")
        return "ok"

    click.echo("Methods:")
    for name, cls in METHODS.items():
        tags = [f"supervision: {cls.supervision or 'that of the saved maps'}"]
        tags += [t for t in ("requires_training", "transductive", "provides_background") if getattr(cls, t)]
        if cls.trainable():  # the `benchmark train` capability, with its presets
            tags.append(f"trainable: presets {'/'.join(cls.train_presets()) or '-'}")
        click.echo(f"  {name:<12} {cls.description()}" + (f"  [{', '.join(tags)}]" if tags else ""))
        click.echo(f"  {'':<12} -> {status(cls, missing_weights(cls))}")
    for name, why in sorted(METHODS.broken.items()):
        click.echo(f"  {name:<12} BROKEN: {why}")
    from benchmark.core.registry import MASK_MODELS
    from benchmark.methods.saliency import UNSUPERVISED

    click.echo("Foreground mask models (not part methods; benchmark train -m NAME, --masks model:CKPT):")
    for name, cls in MASK_MODELS.items():
        click.echo(f"  {name:<12} {status(cls, missing_weights(cls)):<4}  {cls.description()}")
    for name, (build, text) in sorted(UNSUPERVISED.items()):
        missing = describe_missing(build().weights_needed(), brief=not verbose)
        anything_missing.append(bool(missing))
        click.echo(f"  unsupervised:{name:<15} training-free (--masks unsupervised:{name}): {text}"
                   + (f"  -> needs weights: {missing}" if missing else ""))
    click.echo("Datasets:")
    for name, cls in DATASETS.items():
        needs = "needs --data-root" if cls.needs_data_root else "built in"
        click.echo(f"  {name:<12} {status(cls):<4}  {cls.description()}  [{cls.ground_truth} ground truth; {needs}]")
    for name, why in sorted(DATASETS.broken.items()):
        click.echo(f"  {name:<12} BROKEN: {why}")
    click.echo("Metrics:")
    for name, cls in METRICS.items():
        click.echo(f"  {name:<15} {status(cls):<4}  {cls.description()}")
    click.echo("Speed benchmarks (benchmark bench NAME):")
    for name, fn in BENCHES.items():
        click.echo(f"  {name:<12} {_first_sentence(fn.__doc__ or '')}")
    if any(anything_missing) and not verbose:
        click.echo("Missing weights: `benchmark list --verbose` says where each file goes, how to get it and the "
                   "option that replaces it.")


def _first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, whole (never cut at a line break)."""
    import inspect as _inspect

    return " ".join(_inspect.cleandoc(doc).split("\n\n")[0].split())


@cli.command("bench")
@click.argument("name")
@opt.param_option("Benchmark option, e.g. -p n=10000000. Repeatable.")
def bench_command(name, params):
    """Run speed benchmark NAME (see `benchmark list`); it reports a ratio against a baseline measured in
    the same run.

    \b
    Examples:
      benchmark bench metrics -p n=1000000
      benchmark bench kmeans
      benchmark bench train-step -p batch_size=6 -p size=256 -p amp=bf16
    """
    import inspect

    import benchmark.benches  # noqa: F401
    from benchmark.core.registry import BENCH_CHECKS, BENCHES

    fn = BENCHES.get(name)
    options = opt.parse_params(params, "benchmark option")
    signature = inspect.signature(fn).parameters
    unknown = sorted(set(options) - set(signature))
    if unknown:
        raise UserError(f"benchmark {name!r} has no option {', '.join(unknown)}; its options: {', '.join(sorted(signature))}")
    opt.check_value_types(f"benchmark {name!r}: option", signature.values(), options)
    # Every integer option of a speed benchmark is a count (labels, images, steps, sizes) except seeds.
    counts = [p.name for p in signature.values()
              if type(p.default) is int and p.default > 0 and "seed" not in p.name]
    opt.check_positive(f"benchmark {name!r}: option", options, counts)
    check = BENCH_CHECKS.get(name)  # e.g. a memory estimate: refused before anything starts
    if check is not None:
        check(**options)
    click.echo(f"bench {name}: running (a baseline is measured in the same run)...", err=True)
    click.echo(fn(**options))


@cli.command("demo")
@opt.out_option("results/demo", "Where the tables, result rows and figure go.")
@click.option("--method", "methods", multiple=True, help="Only these methods (default: every available one).")
@opt.single_seed_option()
@opt.device_option()
@opt.quiet_option()
def demo_command(out_dir, methods, seed, device, quiet):
    """Every registered method on the built-in synthetic dataset with tiny settings: prints the comparison
    table and writes CSV, Markdown, LaTeX and a PNG of part overlays to OUT (default results/demo).

    \b
    Examples:
      benchmark demo
      benchmark demo --method kmeans --method random --out /tmp/demo -q
    """
    from benchmark.demo import run_demo

    run_demo(out_dir, methods=methods or None, seed=seed, device=device, progress=not quiet, echo=click.echo)


@cli.command("sweep")
@opt.methods_option()
@click.option("--dataset", "-d", "datasets", multiple=True, required=True, help="Dataset; repeatable.")
@click.option("--num-parts", "-k", "num_parts", type=click.IntRange(1, opt.MAX_PARTS), multiple=True,
              help="K; repeatable (default 4).")
@opt.seeds_option()
@opt.data_root_option()
@opt.param_option("Method parameter, given to each method that has it. Repeatable.")
@opt.dataset_options_option()
@opt.category_option()
@opt.split_option()
@opt.protocol_option()
@opt.masks_option()
@opt.device_option()
@opt.eval_batch_size_option()
@opt.out_option("runs", "Where result CSVs go (one per run).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: this machine; slurm: one array job via submitit.")
@opt.num_workers_option(1, "Local parallel processes.", minimum=1)
@click.option("--slurm", "slurm_options", multiple=True, metavar="KEY=VALUE",
              help="submitit parameter, e.g. --slurm slurm_partition=gpu --slurm gpus_per_node=1 --slurm timeout_min=240.")
@opt.cache_dir_option()
@opt.train_if_missing_option()
@opt.quiet_option()
def sweep_command(methods, datasets, num_parts, seeds, data_root, params, options, category, split, protocol, masks,
                  device, eval_batch_size, out_dir, executor, num_workers, slurm_options, cache_dir, train_if_missing,
                  quiet):
    """Run methods x datasets x K x seeds; finished runs are skipped, so rerunning resumes a sweep.

    \b
    Examples:
      benchmark sweep -m kmeans -m dff -m random -d synthetic --seed 0-4
      benchmark sweep -m ours -d cub --data-root /data/CUB_200_2011 -k 4 -k 8 --seed 0-4 \\
          --executor slurm --slurm slurm_partition=gpu --slurm gpus_per_node=1 --slurm timeout_min=600
    """
    from dataclasses import replace

    from benchmark.core.atomic import output_dir
    from benchmark.core.registry import METHODS
    from benchmark.factories import build_method, check_dataset_options
    from benchmark.runner import RunConfig
    from benchmark.sweep import expand, launch, require_slurm
    from benchmark.training_cost import check_training_cost

    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    method_params, dataset_options = opt.command_line_inputs(params, options, category=category)
    base = RunConfig(method=methods[0], dataset=datasets[0], params=method_params,
                     dataset_options=dataset_options, data_root=data_root, split=split,
                     protocol=protocol, masks=masks, device=device, batch_size=eval_batch_size)
    configs = expand(base, methods=methods, datasets=datasets, num_parts=num_parts or (4,), seeds=seeds or (0,))
    # Each -p goes to the methods that have it (-p weights=random for kmeans and dff alongside random);
    # one that no method has is a typo.
    accepted = {m: set(METHODS.get(m).param_names()) for m in dict.fromkeys(methods)}
    for key in base.params:
        if not any(key in names for names in accepted.values()):
            known = ", ".join(sorted(set().union(*accepted.values())))
            raise UserError(f"no method of the sweep ({', '.join(accepted)}) has a parameter {key!r}; "
                            f"their parameters are: {known}")
    configs = [replace(c, params=opt.synthetic_weights(c.method, c.dataset, {k: v for k, v in c.params.items()
                                                                          if k in accepted[c.method]}),
                       data_root=c.data_root if opt.needs_data_root(c.dataset) else None) for c in configs]
    # Every input is checked before --out exists (one line, not a failure in the middle of the sweep), and a
    # method that would train first follows the same rule as `run`; judged once per method, K and parameters.
    for name in dict.fromkeys(datasets):
        check_dataset_options(name, dataset_options)
    for config in {(c.method, c.num_parts, repr(sorted(c.params.items()))): c for c in configs}.values():
        build_method(config.method, num_parts=config.num_parts, params=config.params)
        check_training_cost(config.method, config.num_parts, config.params, device, train_if_missing, _note)
    slurm = opt.parse_params(slurm_options, "slurm option")
    if executor == "slurm":
        require_slurm()
    with output_dir(out_dir):
        launch(configs, out_dir=out_dir, executor=executor, workers=num_workers,
               cache_dir=cache_dir or _default_cache_dir(), slurm=slurm, echo=click.echo, progress=not quiet)


def _add_area_commands() -> None:
    import benchmark.commands as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for command in getattr(module, "commands", []):
            cli.add_command(command)


_add_area_commands()


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    import warnings

    warnings.formatwarning = _one_line_warning  # users read the message, not our source line
    try:
        cli.main(args=argv, prog_name="benchmark", standalone_mode=True)
    except UserError as exc:  # raised outside a command's invoke (e.g. while parsing)
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
