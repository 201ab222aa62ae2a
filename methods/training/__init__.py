"""Generic, reusable training machinery for the methods that train (``ours``, ``scops``, ``pdiscoformer``).

One owner per concern:

* :mod:`.config` -- :class:`TrainConfig` (every knob of the optimisation, recorded in checkpoints) and
  :class:`ParamGroup` (a named group of parameters with its LR multiplier and weight decay).
* :mod:`.schedule` -- the poly learning-rate schedule (``max_iter`` separate from the number of steps: the
  reference hard-codes 100000), or a step decay (PDiscoFormer's ``StepLR``).
* :mod:`.ema` -- the optional exponential moving average of the weights (``TrainConfig.ema_decay``).
* :mod:`.data` -- :class:`DataOrder`: the epoch-wise shuffled, ``drop_last`` batch order drawn from a
  generator that is checkpointed, sharded across DDP ranks.
* :mod:`.checkpoint` -- atomic training checkpoints (model, optimiser, step, RNG states, data order,
  config), ``weights_only`` loading with clear errors, strict state-dict loading that lists bad keys.
* :mod:`.distributed` -- DDP set-up from the ``torchrun`` environment (gloo on CPU, nccl on GPU).
* :mod:`.logger` -- per-step CSV log of every loss term (TensorBoard when installed), rank 0 only.
* :mod:`.loop` -- :class:`Trainer`: the step loop tying the above together, with exact resume.
* :mod:`.method` -- :class:`TrainableMethod`: the shared "load a checkpoint or train (and cache), then
  predict" life cycle of the methods that train.

A method plugs in a model, its parameter groups and a loss function; see :class:`Trainer`.
"""

from benchmark.methods.training.checkpoint import (load_checkpoint_file, load_state_dict_strict,
                                                   latest_checkpoint)
from benchmark.methods.training.config import ParamGroup, StepInfo, TrainConfig
from benchmark.methods.training.data import DataOrder
from benchmark.methods.training.distributed import DistEnv, init_distributed
from benchmark.methods.training.loop import Trainer, TrainResult
from benchmark.methods.training.method import TrainableMethod
from benchmark.methods.training.schedule import poly_lr

__all__ = ["TrainConfig", "ParamGroup", "StepInfo", "DataOrder", "Trainer", "TrainResult", "poly_lr",
           "load_checkpoint_file", "load_state_dict_strict", "latest_checkpoint", "DistEnv",
           "init_distributed", "TrainableMethod"]
