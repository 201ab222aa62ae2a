"""Shared contracts of partbench. This package imports nothing else of the project: the registries load the
built-in plug-in packages by *name* when first queried, and the harness registers its own mask kinds with
:func:`.protocol.register_mask_kind` when :mod:`benchmark` is imported.

* :mod:`.types`    -- :class:`Sample`, :class:`Batch`, :class:`PartMaps`
* :mod:`.method`   -- :class:`Method`, the base class of every part-discovery method
* :mod:`.dataset`  -- :class:`Dataset`, the base class of every dataset
* :mod:`.metric`   -- :class:`Metric`, the streaming accumulator base class
* :mod:`.requirements` -- :class:`WeightsFile`, a weights file a plug-in declares it needs
* :mod:`.registry` -- the plug-in registries (``METHODS``, ``DATASETS``, ``METRICS``, ``BENCHES``)
* :mod:`.protocol` -- the evaluation protocols (:data:`~.protocol.PROTOCOL_NAMES`) and the ``--masks`` kinds
* :mod:`.seeding`, :mod:`.atomic`, :mod:`.cache`, :mod:`.errors`
"""

from benchmark.core.errors import UnavailableError, UnknownNameError, UserError

__all__ = ["UserError", "UnknownNameError", "UnavailableError"]
