"""partbench: a benchmark suite for unsupervised object-part discovery.

Importing :mod:`benchmark` is cheap: it imports no torch, no plug-ins. The pieces live in

* :mod:`benchmark.core`     -- shared contracts (types, registries, seeding, caching); imports nothing else
* :mod:`benchmark.methods`  -- part-discovery methods (``ours``, ``scops``, ``dff``, ``kmeans``, ``random``, ...)
* :mod:`benchmark.datasets` -- datasets and their evaluation views (``synthetic``, ``cub``, ...)
* :mod:`benchmark.metrics`  -- exact clustering metrics and landmark regression
* :mod:`benchmark.runner`   -- the evaluation harness that joins them; :mod:`benchmark.cli` -- the ``benchmark`` command
"""

import os as _os

__version__ = "0.1.0"

# OpenMP worker threads spin while waiting by default; on small shared machines (2 cores, DataLoader
# workers, other jobs) that spinning made CPU training up to ~27x slower in our measurements. Passive
# waiting costs nothing measurable on idle machines. Must be set before torch is imported; users can
# still override it in the environment.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
