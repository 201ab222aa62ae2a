"""``benchmark reproduce PLAN``: plan, run, resume and report a paper's tables in one command.

The plan (a shipped name or a TOML file, see :mod:`benchmark.reproduce.plan`) is loaded and validated, the
data roots and checkpoints are checked, and the step graph is built before anything runs; every problem of
the input is one clear error at that point.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import click

from benchmark import options as opt
from benchmark.core.errors import UserError


def default_cache_dir() -> str:
    """The cache ``benchmark run`` uses, so that both find the same trained models."""
    return os.environ.get("PARTBENCH_CACHE", str(Path.home() / ".cache" / "partbench"))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_graph(plan, steps, settings, echo) -> None:
    from benchmark.reproduce.graph import estimates, provide_command

    counts = Counter(s.state for s in steps)
    timing = estimates(steps, settings)
    echo(f"plan {plan.name}: {plan.description}".rstrip(": "))
    echo(f"{len(steps)} steps: {counts['done']} done, {counts['todo']} to do, {counts['blocked']} blocked "
         f"(output: {settings.out_dir})")
    reasons: dict[str, int] = {}
    for step in steps:
        if step.state == "done":
            echo(f"  done     {step.id}" + (f"  ({step.note})" if step.note else ""))
        elif step.state == "todo":
            guess = timing.get(step.id)
            echo(f"  to do    {step.id}  " + (f"~{_duration(guess)} (measured)" if guess is not None
                                              else "(no measured time yet)"))
        else:
            number = reasons.setdefault(step.note, len(reasons) + 1)
            echo(f"  blocked  {step.id}  [{number}]")
    todo = [s for s in steps if s.state == "todo"]
    if todo:
        known = [timing[s.id] for s in todo if s.id in timing]
        echo(f"to do: {len(todo)} steps; measured estimate {_duration(sum(known))} for {len(known)} of them"
             if known else f"to do: {len(todo)} steps; no measured step time yet (a first run measures them)")
    if reasons:
        echo("blocked because:")
        by_reason = Counter(s.note for s in steps if s.state == "blocked")
        for reason, number in reasons.items():
            example = next(s for s in steps if s.state == "blocked" and s.note == reason)
            command = provide_command(example, settings)
            echo(f"  [{number}] ({by_reason[reason]} steps) {reason}"
                 + (f"\n      the step by hand, once the input is there: {command}" if command and
                    not reason.startswith("needs ") else ""))


def _reads_gt_masks(plan, experiment) -> bool:
    """Whether an experiment reads the trees' ground-truth masks: it evaluates with them (``gt``), trains the
    fg/bg model on them (``fgbg``), or trains a part method on them (``train_masks = "gt"``). Mask quality
    also needs them, but only its own step, which the graph blocks on its own when they are missing."""
    from benchmark.core.protocol import MaskSource
    from benchmark.core.registry import METHODS

    trains = any(METHODS.get(plan.method_spec(label).method).requires_training
                 for label in experiment.methods)
    def needs_gt(source: str) -> bool:
        return MaskSource.kind_of(source, in_plans=True).needs_gt_masks

    return any(needs_gt(source) for source in experiment.masks) or (trains and needs_gt(experiment.train_masks))


def _check_trees(plan, roots: dict[str, str]) -> None:
    """The quick tree check (index files parse, needed files exist) of every root the plan uses; missing
    ground-truth masks count only for experiments that read them (a CUB tree without ``segmentations/``
    serves keypoint metrics with generated masks)."""
    from benchmark.core.registry import DATASETS

    checked = set()
    for experiment in plan.experiments:
        reads_masks = _reads_gt_masks(plan, experiment)
        for dataset in experiment.datasets:
            if dataset not in roots or not DATASETS.get(dataset).has_tree_check():
                continue
            for options in experiment.variants(dataset):
                memo = (dataset, repr(sorted(options.items())), reads_masks)
                if memo in checked:
                    continue
                checked.add(memo)
                from benchmark.datasets._check import check_dataset

                report = check_dataset(dataset, roots[dataset], deep=False, **options)
                problems = [p for p in report.problems if reads_masks or p.kind != "mask"]
                if problems:
                    shown = "; ".join(str(p) for p in problems[:3])
                    raise UserError(f"the {dataset} tree at {roots[dataset]} has problems: {shown}. Run "
                                    f"`benchmark data check -d {dataset} --data-root {roots[dataset]}` for the list")


@click.command("reproduce", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("plan_name", metavar="PLAN")
@click.option("--dry-run", is_flag=True, help="Print the step graph with each step's state; run nothing.")
@click.option("--data-root", "data_roots", multiple=True, metavar="NAME=PATH",
              help="Root of a dataset tree, e.g. --data-root cub=/data/CUB_200_2011. Repeatable.")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="METHOD:DATASET[:K=4][:seed=0]=PATH",
              help="Use this checkpoint instead of training, e.g. 'ours:cub:K=4:seed=0=model_60000.pth'. Repeatable.")
@click.option("--only", "only", multiple=True, metavar="PATTERN",
              help="Only steps whose name matches (glob, or a substring), plus what they need. Repeatable.")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: this machine; slurm: one submitit job per step, with dependencies.")
@opt.num_workers_option(default=1, minimum=1, help="Local executor: steps run at the same time (processes).")
@click.option("--slurm", "slurm_options", multiple=True, metavar="KEY=VALUE",
              help="submitit parameter for every job, e.g. --slurm slurm_partition=gpu; --slurm cluster=local "
                   "runs the submission through submitit's local executor.")
@click.option("--skip-blocked", is_flag=True, help="Run what can run even when some steps are blocked.")
@opt.out_option(None, "Output folder [results/PLAN].")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Trained models and features (default $PARTBENCH_CACHE or ~/.cache/partbench, shared with run).")
@opt.device_option()
@opt.eval_batch_size_option()
@opt.quiet_option()
def reproduce_command(plan_name, dry_run, data_roots, checkpoints, only, executor, num_workers, slurm_options,
                      skip_blocked, out_dir, cache_dir, device, eval_batch_size, quiet):
    """Reproduce the tables of a plan: train, evaluate, tabulate and report, skipping finished steps.

    PLAN is a shipped plan (supp-k, supp-seeds, baselines, landmarks, ablation, unsup-masks, paper, synthetic)
    or a .toml plan file. Rerunning a killed or partial run recomputes nothing that finished.

    \b
    Examples:
      benchmark reproduce synthetic                  # the whole pipeline on built-in data, about a minute on 2 CPU cores
      benchmark reproduce supp-k --dry-run --data-root cub=/data/CUB_200_2011
      benchmark reproduce supp-seeds --data-root cub=/data/CUB_200_2011 \\
          --data-root deepfashion=/data/DeepFashion --executor slurm --slurm slurm_partition=gpu
      benchmark reproduce supp-k --data-root cub=/data/CUB_200_2011 --skip-blocked \\
          --checkpoint 'ours:cub:K=4:seed=0=/weights/model_60000.pth' --only 'evaluate/*/cub/*'
      benchmark reproduce my-plan.toml --num-workers 2 --out results/mine
    """
    from benchmark.core.atomic import check_writable_dir
    from benchmark.reproduce.graph import Settings, build_graph, parse_checkpoints, parse_data_roots, select
    from benchmark.reproduce.plan import load_plan
    from benchmark.options import parse_params
    from benchmark.runner import resolve_device

    plan = load_plan(plan_name)
    roots = parse_data_roots(data_roots)
    given = parse_checkpoints(checkpoints)
    slurm = parse_params(slurm_options, "--slurm option")
    if slurm and executor != "slurm":
        raise UserError("--slurm options are for --executor slurm")
    resolve_device(device)
    unused = sorted(set(roots) - {d for e in plan.experiments for d in e.datasets})
    if unused:
        raise UserError(f"--data-root {unused[0]}=...: plan {plan.name} does not use {unused[0]} (it uses "
                        f"{', '.join(sorted({d for e in plan.experiments for d in e.datasets}))})")
    out = Path(out_dir) if out_dir else Path("results") / plan.name
    _check_trees(plan, roots)
    settings = Settings(out_dir=str(out.resolve()), cache_dir=str(Path(cache_dir or default_cache_dir()).resolve()),
                        data_roots=roots, checkpoints=given, device=device, batch_size=eval_batch_size, quiet=quiet,
                        plan_name=plan.name)
    steps = select(build_graph(plan, settings), only)
    if dry_run:
        print_graph(plan, steps, settings, click.echo)
        return
    blocked = [s for s in steps if s.state == "blocked"]
    if blocked and not skip_blocked:
        reasons = Counter(s.note for s in blocked)
        first = "; ".join(f"{reason} ({n} steps)" for reason, n in reasons.most_common(3))
        raise UserError(f"{len(blocked)} of {len(steps)} steps are blocked: {first}. Provide the inputs, restrict "
                        f"the run with --only, or add --skip-blocked to run the rest (--dry-run lists them all)")
    check_writable_dir(out, "--out directory")
    todo = [s for s in steps if s.state == "todo"]
    click.echo(f"plan {plan.name}: {len(steps)} steps, {len(steps) - len(todo) - len(blocked)} done, {len(todo)} to do"
               + (f", {len(blocked)} blocked (skipped)" if blocked else "") + f"; output {out}")
    if executor == "slurm":
        from benchmark.reproduce.executors import run_submitit

        run_submitit(steps, settings, plan_resources=plan.resources, options=slurm, echo=click.echo)
    else:
        from benchmark.reproduce.executors import run_local

        run_local(steps, settings, num_workers=num_workers, echo=click.echo)
    tables = sorted((out / "tables").glob("*.md"))
    if tables and (executor == "local" or slurm.get("cluster") == "local"):
        click.echo("tables: " + ", ".join(str(t) for t in tables))
        if (out / "report.html").exists():
            click.echo(f"report: {out / 'report.html'}")


commands = [reproduce_command]
