"""``benchmark demo``: every registered method on the built-in synthetic dataset, tiny settings.

Methods join automatically: each available method runs with its ``demo_params()`` (a method whose
``demo_params()`` returns ``None`` cannot run without user input -- e.g. ``predictions`` -- and is left
out). Writes ``runs/`` (result CSVs), ``demo.{csv,md,tex}`` and ``overlays.png`` to the output directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

from benchmark.core.atomic import output_dir
from benchmark.core.errors import UserError
from benchmark.core.registry import DATASETS, METHODS

DEMO_DATASET = "synthetic"
EXAMPLES = 4


def demo_methods(selected: Iterable[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(methods to run, {method: why it is left out})."""
    names = list(selected) if selected else METHODS.names()
    chosen, left_out = [], {}
    for name in names:
        cls = METHODS.get(name)
        reason = cls.unavailable_reason()
        if reason:
            left_out[name] = reason
        elif cls.demo_params() is None:
            left_out[name] = "needs user input (not part of the demo)"
        else:
            chosen.append(name)
    return chosen, left_out


def run_demo(out_dir: str | Path = "results/demo", *, methods: Iterable[str] | None = None, seed: int = 0,
             device: str = "auto", progress: bool = True, echo: Callable[[str], None] = print) -> Path:
    from benchmark.figures import comparison_figure
    from benchmark.report import render, write_report
    from benchmark.results import load_results
    from benchmark.factories import resolve_device
    from benchmark.runner import RunConfig
    from benchmark.tasks import EvaluateConfig, evaluate

    chosen, left_out = demo_methods(methods)  # names checked before anything is written
    if not chosen:
        raise UserError("no method can run here: " + "; ".join(f"{k}: {v}" for k, v in left_out.items()))
    resolve_device(device)  # an unknown device is named before --out is created
    with output_dir(out_dir, "demo output directory") as out:  # a failed demo leaves no empty folder
        for name, why in left_out.items():
            echo(f"skipping {name}: {why}")
        options = DATASETS.get(DEMO_DATASET).demo_options()
        examples, paths = {}, []
        for name in chosen:
            cls = METHODS.get(name)
            config = RunConfig(method=name, dataset=DEMO_DATASET, seed=seed, params=cls.demo_params(),
                               dataset_options=options, device=device)
            t0 = time.perf_counter()
            result = evaluate(EvaluateConfig(config, out_dir=out / "runs", force=True, progress=progress,
                                             examples=EXAMPLES))
            values = "  ".join(f"{r['metric']}={100 * float(r['value']):.1f}" for r in result.rows)
            echo(f"{name:<12} {time.perf_counter() - t0:6.1f}s  {values}")
            examples[name] = result.examples
            paths.append(result.path)
        df = load_results(paths)
        write_report(df, out, "demo")
        echo("")
        echo(render(df, "markdown"))
        if all(v is not None for v in examples.values()):
            figure = comparison_figure(out / "overlays.png", examples,
                                       title="synthetic test images: ground truth and predicted parts")
            echo(f"figure: {figure}")
        echo(f"tables: {out / 'demo.md'}, {out / 'demo.tex'}, {out / 'demo.csv'}")
        return out
