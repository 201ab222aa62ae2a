"""partbench: a benchmark suite for unsupervised object-part discovery.

Importing :mod:`benchmark` is cheap: it imports no torch, no plug-ins. It registers the mask kinds the
harness computes (:mod:`benchmark.mask_sources`: ``model:CKPT``, ``unsupervised:NAME``, ``fgbg``) with the
protocol's one parser, so that they are known wherever a ``--masks`` spelling is read. The pieces live in

* :mod:`benchmark.core`     -- shared contracts (types, registries, seeding, caching); imports nothing else
  of the project (the registries load the built-in plug-in packages by name when first queried)
* :mod:`benchmark.methods`  -- part-discovery methods (``ours``, ``scops``, ``dff``, ``kmeans``, ``random``, ...)
* :mod:`benchmark.datasets` -- datasets and their evaluation views (``synthetic``, ``cub``, ...)
* :mod:`benchmark.metrics`  -- exact clustering metrics and landmark regression
* :mod:`benchmark.runner`   -- the evaluation harness that joins them; :mod:`benchmark.cli` -- the ``benchmark`` command
"""

import os as _os

__version__ = "0.1.0"

# OpenMP worker threads spin while waiting by default; on small shared machines (2 cores, DataLoader
# workers, other jobs) the spinning threads take the cores the other processes need, which slows CPU
# training down badly. Passive waiting costs little on idle machines. Must be set before torch is
# imported; users can still override it in the environment.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmark import mask_sources as _mask_sources  # noqa: E402,F401  (registers the harness's mask kinds)
