"""Shared contracts of partbench. This package imports nothing else of the project.

* :mod:`.types`    -- :class:`Sample`, :class:`Batch`, :class:`PartMaps`
* :mod:`.method`   -- :class:`Method`, the base class of every part-discovery method
* :mod:`.dataset`  -- :class:`Dataset`, the base class of every dataset
* :mod:`.metric`   -- :class:`Metric`, the streaming accumulator base class
* :mod:`.requirements` -- :class:`WeightsFile`, a weights file a plug-in declares it needs
* :mod:`.registry` -- the plug-in registries (``METHODS``, ``DATASETS``, ``METRICS``, ``BENCHES``)
* :mod:`.seeding`, :mod:`.atomic`, :mod:`.cache`, :mod:`.errors`
"""

from benchmark.core.errors import UnavailableError, UnknownNameError, UserError

__all__ = ["UserError", "UnknownNameError", "UnavailableError"]
