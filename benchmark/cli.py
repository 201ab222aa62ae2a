"""The ``benchmark`` command line.

Sub-commands defined here: run, report, list, demo, bench. Area-specific sub-commands (``data``,
``train``, ``export``, ...) live in :mod:`benchmark.commands`; every module there that exposes
``commands: list[click.Command]`` is added automatically.

Any :class:`~benchmark.core.errors.UserError` ends the command with one line ``error: ...`` on stderr and
exit status 2 (no traceback).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import shlex
import sys
from pathlib import Path

import click

from benchmark import __version__
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



def _default_cache_dir() -> str:
    return os.environ.get("PARTBENCH_CACHE", str(Path.home() / ".cache" / "partbench"))


def _parse_pairs(pairs: tuple[str, ...], what: str) -> dict:
    from benchmark.runner import parse_params

    return parse_params(pairs, what)


@cli.command("run")
@click.option("--method", "-m", required=True, help="Registered method name (see `benchmark list`).")
@click.option("--dataset", "-d", required=True, help="Registered dataset name (see `benchmark list`).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Root of the dataset tree (not needed for `synthetic`).")
@click.option("--num-parts", "-k", type=int, default=4, show_default=True, help="Number of parts K.")
@click.option("--seed", "seeds", type=int, multiple=True, help="Seed; repeat for several seeds (default 0).")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="Method parameter, e.g. -p niter=20 -p weights=random. Repeatable.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="Dataset option, e.g. -o category=car -o num_test=64. Repeatable.")
@click.option("--category", default=None, help="Shortcut for -o category=NAME (PASCAL-Part).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Shortcut for -p checkpoint=PATH (evaluate a trained or official checkpoint).")
@click.option("--split", default="test", show_default=True, help="Evaluation split.")
@click.option("--protocol", type=click.Choice(["corrected", "legacy"]), default="corrected", show_default=True,
              help="corrected: known defects of the reference evaluation fixed; legacy: the released notebooks exactly.")
@click.option("--masks", default="gt", show_default=True, metavar="gt|predicted:DIR|method|none",
              help="Source of foreground masks, which decides the background of every metric.")
@click.option("--metric", "metric_names", multiple=True, help="Only these metrics (default: all that apply).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Evaluation batch size.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Where result CSVs go (one per run).")
@click.option("--force", is_flag=True, help="Recompute even if an identical finished run exists.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature/checkpoint cache (default $PARTBENCH_CACHE or ~/.cache/partbench).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the cache.")
@click.option("--num-workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run_command(method, dataset, data_root, num_parts, seeds, params, options, category, checkpoint, split, protocol,
                masks, metric_names, device, batch_size, out_dir, force, cache_dir, no_cache, num_workers, quiet):
    """Evaluate a method on a dataset and write one tidy result row per metric.

    \b
    Examples:
      benchmark run -m kmeans -d synthetic --seed 0 --seed 1 --seed 2
      benchmark run -m ours -d cub --data-root /data/CUB_200_2011 --checkpoint model_60000.pth --protocol legacy
      benchmark run -m dff -d pascal-part --data-root /data/VOCdevkit_2010 --category car -k 8
      benchmark run -m kmeans -d cub --data-root /data/CUB_200_2011 -p backbone=dino_vits8 -p stride=4
      benchmark run -m predictions -p dir=exported/ -d cub --data-root /data/CUB_200_2011
    """
    from benchmark.core.atomic import check_writable_dir
    from benchmark.runner import RunConfig, command_line_inputs, run

    method_params, dataset_options = command_line_inputs(params, options, category=category, checkpoint=checkpoint)
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    if data_root is not None and not _needs_data_root(dataset):
        # Ignored by the dataset; dropping it keeps the run key, so an identical finished run is reused.
        click.echo(f"warning: dataset {dataset!r} is built in and ignores --data-root {data_root}", err=True)
        data_root = None
    check_writable_dir(out_dir, "--out directory")
    cache = None if no_cache else (cache_dir or _default_cache_dir())
    if data_root is not None:
        _quick_data_check(dataset, data_root, split, dataset_options)
    for seed in seeds or (0,):
        config = RunConfig(method=method, dataset=dataset, seed=seed, num_parts=num_parts, params=method_params,
                           dataset_options=dataset_options, data_root=data_root, split=split, protocol=protocol,
                           masks=masks, device=device, batch_size=batch_size,
                           metrics=tuple(metric_names) or None)
        result = run(config, out_dir=out_dir, force=force, progress=not quiet, cache_dir=cache,
                     num_workers=num_workers)
        status = "reused" if result.reused else f"{result.rows[0]['wall_time_s'] if result.rows else 0:.1f}s"
        values = "  ".join(f"{r['metric']}={100 * float(r['value']):.2f}" for r in result.rows)
        click.echo(f"{method} on {dataset} seed {seed} [{status}]: {values}")
        click.echo(f"  -> {result.path}")


def _needs_data_root(dataset: str) -> bool:
    from benchmark.core.registry import DATASETS

    return bool(getattr(DATASETS.get(dataset), "needs_data_root", True))


def _quick_data_check(dataset: str, data_root: str, split: str, options: dict) -> None:
    """Before a run: the index files parse and every needed file exists (headers only, no decoding)."""
    from benchmark.core.registry import DATASETS

    if not hasattr(DATASETS.get(dataset), "check_tree"):
        return
    from benchmark.datasets._check import check_dataset
    from benchmark.runner import check_dataset_options

    check_dataset_options(dataset, options)
    report = check_dataset(dataset, data_root, deep=False, **options)
    if report.problems:
        shown = "; ".join(str(p) for p in report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        # The suggested command checks the same tree with the same options (e.g. the PASCAL-Part category).
        same = "".join(f" -o {shlex.quote(f'{k}={v}')}" for k, v in options.items())
        raise UserError(f"the {dataset} tree at {data_root} has problems: {shown}{more}. "
                        f"Run `benchmark data check -d {dataset} --data-root {shlex.quote(str(data_root))}{same}` "
                        f"for the full list")


@cli.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["csv", "markdown", "latex"]), default="markdown",
              show_default=True, help="What to print.")
@click.option("--to", "out_dir", type=click.Path(file_okay=False), default="results/tables", show_default=True,
              help="Directory the tables are written to (all three formats).")
@click.option("--name", default="results", show_default=True, help="Base name of the written files.")
@click.option("--decimals", type=int, default=2, show_default=True)
@click.option("--with-paper", is_flag=True,
              help="Add the published numbers of `ours` as a row to legacy-protocol CUB/DeepFashion tables.")
def report_command(runs, fmt, out_dir, name, decimals, with_paper):
    """Tables (mean ± std over seeds, x100, best in bold) from result CSVs or directories of them.

    \b
    Examples:
      benchmark report runs/ --format markdown
      benchmark report runs/cub runs/deepfashion --format latex --name paper_table --with-paper
    """
    from benchmark.report import render, write_report
    from benchmark.results import load_results

    df = load_results(runs)
    written = write_report(df, out_dir, name, decimals=decimals, with_paper=with_paper)
    click.echo(render(df, fmt, decimals, with_paper), nl=False)
    click.echo(f"\nwritten: {', '.join(str(p) for p in written)}", err=True)


@cli.command("list")
def list_command():
    """Every registered method, dataset, metric and speed benchmark, and whether it is usable here.

    \b
    Example:
      benchmark list            # then e.g. benchmark run -m kmeans -d synthetic
    """
    from benchmark.core.registry import BENCHES, DATASETS, METHODS, METRICS
    import benchmark.benches  # noqa: F401  (registers the speed benchmarks)

    def status(cls) -> str:
        reason = cls.unavailable_reason()
        return "ok" if not reason else f"UNAVAILABLE: {reason}"

    click.echo("Methods:")
    for name, cls in METHODS.items():
        tags = [t for t in ("requires_training", "transductive", "provides_background") if getattr(cls, t, False)]
        click.echo(f"  {name:<12} {status(cls):<4}  {cls.description()}" + (f"  [{', '.join(tags)}]" if tags else ""))
    for name, why in sorted(METHODS.broken.items()):
        click.echo(f"  {name:<12} BROKEN: {why}")
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
        doc = (fn.__doc__ or "").strip().splitlines()
        click.echo(f"  {name:<12} {doc[0] if doc else ''}")


@cli.command("bench")
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
              help="Benchmark option, e.g. -p n=10000000. Repeatable.")
def bench_command(name, params):
    """Run speed benchmark NAME (see `benchmark list`); it reports a ratio against a baseline measured in
    the same run.

    \b
    Examples:
      benchmark bench metrics -p n=100000000
      benchmark bench kmeans
      benchmark bench train-step -p batch_size=6 -p size=256 -p amp=bf16
    """
    import inspect

    import benchmark.benches  # noqa: F401
    from benchmark.core.registry import BENCHES

    fn = BENCHES.get(name)
    options = _parse_pairs(params, "benchmark option")
    valid = set(inspect.signature(fn).parameters)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise UserError(f"benchmark {name!r} has no option {', '.join(unknown)}; its options: {', '.join(sorted(valid))}")
    from benchmark.runner import _check_value_types

    _check_value_types(f"benchmark {name!r}: option", inspect.signature(fn).parameters.values(), options)
    click.echo(fn(**options))


@cli.command("demo")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="results/demo", show_default=True)
@click.option("--method", "methods", multiple=True, help="Only these methods (default: every available one).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
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
@click.option("--method", "-m", "methods", multiple=True, required=True, help="Method; repeatable.")
@click.option("--dataset", "-d", "datasets", multiple=True, required=True, help="Dataset; repeatable.")
@click.option("--num-parts", "-k", "num_parts", type=int, multiple=True, help="K; repeatable (default 4).")
@click.option("--seeds", default="0", show_default=True, help="Seeds: a range 0-4 or a list 0,1,2.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="Root of the dataset tree (not needed for `synthetic`).")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Method parameter, given to each method that has it. Repeatable.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE", help="Dataset option.")
@click.option("--category", default=None, help="Shortcut for -o category=NAME (PASCAL-Part).")
@click.option("--split", default="test", show_default=True, help="Evaluation split.")
@click.option("--protocol", type=click.Choice(["corrected", "legacy"]), default="corrected", show_default=True)
@click.option("--masks", default="gt", show_default=True, metavar="gt|predicted:DIR|method|none",
              help="Source of foreground masks, which decides the background of every metric.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Evaluation batch size.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Where result CSVs go (one per run).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: this machine; slurm: one array job via submitit.")
@click.option("--workers", type=int, default=1, show_default=True, help="Local parallel processes.")
@click.option("--slurm", "slurm_options", multiple=True, metavar="KEY=VALUE",
              help="submitit parameter, e.g. --slurm slurm_partition=gpu --slurm gpus_per_node=1 --slurm timeout_min=240.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature/checkpoint cache (default $PARTBENCH_CACHE or ~/.cache/partbench).")
def sweep_command(methods, datasets, num_parts, seeds, data_root, params, options, category, split, protocol, masks,
                  device, batch_size, out_dir, executor, workers, slurm_options, cache_dir):
    """Run methods x datasets x K x seeds; finished runs are skipped, so rerunning resumes a sweep.

    \b
    Examples:
      benchmark sweep -m kmeans -m dff -m random -d synthetic --seeds 0-4
      benchmark sweep -m ours -d cub --data-root /data/CUB_200_2011 -k 4 -k 8 --seeds 0-4 \\
          --executor slurm --slurm slurm_partition=gpu --slurm gpus_per_node=1 --slurm timeout_min=600
    """
    from benchmark.runner import RunConfig
    from benchmark.sweep import expand, launch

    seed_list = _parse_seeds(seeds)
    if data_root is not None and not Path(data_root).is_dir():
        raise UserError(f"--data-root {data_root} does not exist or is not a directory")
    dataset_options = _parse_pairs(options, "dataset option")
    if category is not None:
        dataset_options["category"] = category
    base = RunConfig(method=methods[0], dataset=datasets[0], params=_parse_pairs(params, "parameter"),
                     dataset_options=dataset_options, data_root=data_root, split=split,
                     protocol=protocol, masks=masks, device=device, batch_size=batch_size)
    configs = expand(base, methods=methods, datasets=datasets, num_parts=num_parts or (4,), seeds=seed_list)
    # Each -p goes to the methods that have it (-p weights=random for kmeans and dff alongside random);
    # one that no method has is a typo.
    from dataclasses import replace

    from benchmark.core.registry import METHODS

    accepted = {m: set(METHODS.get(m).param_names()) for m in dict.fromkeys(methods)}
    for key in base.params:
        if not any(key in names for names in accepted.values()):
            known = ", ".join(sorted(set().union(*accepted.values())))
            raise UserError(f"no method of the sweep ({', '.join(accepted)}) has a parameter {key!r}; "
                            f"their parameters are: {known}")
    configs = [replace(c, params={k: v for k, v in c.params.items() if k in accepted[c.method]},
                       data_root=c.data_root if _needs_data_root(c.dataset) else None) for c in configs]
    launch(configs, out_dir=out_dir, executor=executor, workers=workers, cache_dir=cache_dir or _default_cache_dir(),
           slurm=_parse_pairs(slurm_options, "slurm option"), echo=click.echo)


def _parse_seeds(text: str) -> list[int]:
    try:
        if "-" in text.strip("-"):
            lo, hi = text.split("-", 1)
            if int(hi) < int(lo):
                raise UserError(f"empty --seeds range {text!r}; write the lower seed first, e.g. 0-4")
            return list(range(int(lo), int(hi) + 1))
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"malformed --seeds {text!r}; write a range 0-4 or a list 0,1,2") from None


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
