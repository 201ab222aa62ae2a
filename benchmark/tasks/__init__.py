"""The task layer: one plain function per job, taking a typed config and returning a typed result.

===========================  ======================  ========================================================
function                     config -> result        used by
===========================  ======================  ========================================================
:func:`evaluate`             EvaluateConfig ->       ``benchmark run``, ``sweep`` workers, ``reproduce``
                             RunResult               ``evaluate`` steps
:func:`train`                TrainConfig ->          ``benchmark train``, ``reproduce`` ``train`` steps
                             TrainOutcome            (``into_run_cache``: the cache ``benchmark run`` reads)
:func:`train_mask_model`     TrainConfig ->          ``benchmark train -m fgbg``, ``reproduce`` ``fgbg-train``
                             TrainOutcome            steps
:func:`predict_masks`        PredictMasksConfig ->   ``benchmark masks predict``, ``reproduce``
                             PredictMasksResult      ``masks-predict`` steps
:func:`score_masks`          ScoreMasksConfig ->     ``benchmark masks score``, ``reproduce`` ``masks-score``
                             ScoreMasksResult        steps
===========================  ======================  ========================================================

The CLI commands are thin adapters: they turn options into a config, call the function and print the
result. ``reproduce`` steps call the same functions in a worker process or a submitit job, never the CLI.
A task builds what it needs through :mod:`benchmark.factories` and prepares generated masks through
:func:`benchmark.maskgen.prepare_masks`; an error a user can fix is a
:class:`~benchmark.core.errors.UserError`.

Example::

    from benchmark.runner import RunConfig
    from benchmark.tasks import EvaluateConfig, evaluate

    result = evaluate(EvaluateConfig(RunConfig(method="kmeans", dataset="synthetic"), out_dir=None))
    result.rows
"""

from __future__ import annotations

from benchmark.tasks.evaluate import EvaluateConfig, evaluate
from benchmark.tasks.masks import (PredictMasksConfig, PredictMasksResult, ScoreMasksConfig, ScoreMasksResult,
                                   predict_masks, score_masks)
from benchmark.tasks.train import TrainConfig, TrainOutcome, train, train_mask_model

__all__ = ["EvaluateConfig", "evaluate", "TrainConfig", "TrainOutcome", "train", "train_mask_model",
           "PredictMasksConfig", "PredictMasksResult", "predict_masks", "ScoreMasksConfig", "ScoreMasksResult",
           "score_masks"]
