"""Speed benchmarks (``benchmark bench NAME``).

Each benchmark is a function ``fn(**options) -> str`` registered with ``@register_bench(name)`` in the
module that holds the code it measures (methods, metrics, datasets); importing those packages registers
them. It returns its report as text and always compares against a baseline measured in the same run.
"""

import benchmark.datasets  # noqa: F401
import benchmark.maskgen  # noqa: F401  (masks-predict)
import benchmark.methods  # noqa: F401
import benchmark.metrics  # noqa: F401
