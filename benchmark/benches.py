"""Speed benchmarks (``benchmark bench NAME``): where they live and how they are found.

Convention (one predictable place per package):

* The speed benchmarks of a package live in its ``bench.py`` module and nowhere else:

  - ``benchmark.methods.bench``: ``features``, ``kmeans``, ``dff``, ``dino-coseg`` (the methods' building blocks and
    the training-free pipelines), ``masks-predict``;
  - ``benchmark.methods.ours.bench``: ``train-step`` (one training step, ``-p method=ours|scops``);
  - ``benchmark.methods.scops.bench``: the SCOPS step that ``train-step -p method=scops`` times;
  - ``benchmark.methods.pdiscoformer.bench``: ``pdiscoformer`` (its training step vs the release's own step);
  - ``benchmark.methods.pdisconet.bench``: ``pdisconet`` (its training step vs the release's way);
  - ``benchmark.methods.training.bench``: ``output-cache`` (the network-output cache vs the plain forward);
  - ``benchmark.metrics.bench``: ``metrics`` (the streaming contingency table vs scikit-learn);
  - ``benchmark.datasets.bench``: ``synthetic``, ``cub-index``.

* A benchmark is a function ``fn(**options) -> str`` decorated with
  ``@benchmark.core.registry.register_bench("name")``. Its options are keyword arguments with defaults (the
  CLI's ``-p key=value``, type-checked against the annotations); its docstring's first line is what
  ``benchmark list`` shows. It prints nothing and returns its report. Every figure it reports is compared
  with a baseline measured in the same run (the straightforward implementation, scikit-learn, or the
  float32 eager configuration), and it checks that both compute the same thing where that is cheap.
  A check of the options that must refuse before anything runs (a size beyond the machine's memory) is
  declared beside it with ``@benchmark.core.registry.register_bench_check("name")``.
  A benchmark whose optional dependency is missing raises :class:`~benchmark.core.errors.UserError` naming
  it (exit status 2), like an unavailable method.
* ``bench.py`` modules are not imported with their package (``import benchmark.methods`` stays free of
  benchmark code); :func:`discover` imports the ``bench`` module of ``benchmark.methods``,
  ``benchmark.metrics``, ``benchmark.datasets`` and of each of their sub-packages the first time the
  registry is queried. A third-party package registers its benchmarks through the ``partbench.benches``
  entry-point group (``name = "my_package.bench:my_bench"``).
* ``tools/gpu-check.sh`` runs every benchmark at paper sizes on a GPU (see ``docs/performance.md``); a new
  benchmark gets a row there (``tools/gpu_check.py``; a test checks that none is missing).
"""

from __future__ import annotations

import importlib
import pkgutil

from benchmark.core.plugin import BENCH_MODULE

PACKAGES = ("benchmark.methods", "benchmark.metrics", "benchmark.datasets")


def bench_modules() -> list[str]:
    """The ``bench`` modules of the plug-in packages and of their direct sub-packages, sorted."""
    found = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name == BENCH_MODULE:
                found.append(f"{package_name}.{BENCH_MODULE}")
            elif info.ispkg and not info.name.startswith("_"):
                sub = importlib.import_module(f"{package_name}.{info.name}")
                if any(m.name == BENCH_MODULE for m in pkgutil.iter_modules(sub.__path__)):
                    found.append(f"{package_name}.{info.name}.{BENCH_MODULE}")
    return sorted(found)


def discover() -> list[str]:
    """Import every ``bench`` module (registering its benchmarks); returns their names."""
    modules = bench_modules()
    for name in modules:
        importlib.import_module(name)
    return modules


discover()
