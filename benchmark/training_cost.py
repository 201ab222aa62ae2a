"""The one rule for a command that would train a method first (``run``, ``sweep``, ``export``).

A method that trains (``requires_training``: ``ours``, ``scops``, ``pdiscoformer``, ``pdisconet``) asked for
part maps without a ``checkpoint`` trains before it predicts. With the paper's settings that is days on a CPU,
so there a training needs ``--train-if-missing`` unless the method estimates it at no more than
:data:`CPU_TRAINING_LIMIT_S` (a ``tiny`` preset, a few ``-p steps``); the estimate is said either way.
"""

from __future__ import annotations

from typing import Any, Callable

from benchmark.core.errors import UserError

#: the longest training (seconds, as the method estimates it) that starts on a CPU without --train-if-missing
CPU_TRAINING_LIMIT_S = 600.0


def check_training_cost(method: str, num_parts: int, params: dict[str, Any], device: str, allowed: bool,
                        echo: Callable[[str], None]) -> None:
    """Refuse (one line naming the estimate and the fixes) a training on the CPU unless ``allowed`` or
    estimated short; otherwise ``echo`` one note with the estimate. Nothing happens for a method that does not train,
    or that is given a ``checkpoint``."""
    from benchmark.core.registry import METHODS

    if method not in METHODS.names():
        return
    cls = METHODS.get(method)
    if not cls.requires_training or params.get("checkpoint"):
        return
    from benchmark.factories import build_method, resolve_device

    build_method(method, num_parts=num_parts, params=params)  # bad parameters: one clear error first
    where = resolve_device(device)
    text = cls.training_estimate(params, where) or "its full training, duration unknown"
    seconds = cls.training_seconds(params, where)
    short = seconds is not None and seconds <= CPU_TRAINING_LIMIT_S
    if where == "cpu" and not allowed and not short:
        raise UserError(f"method {method!r} has no --checkpoint, so this command would first train it on the CPU: "
                        f"{text}. Pass --checkpoint PATH, -p preset=tiny or fewer -p steps=N (a training "
                        f"estimated at {CPU_TRAINING_LIMIT_S / 60:.0f} min or less starts by itself), or "
                        "--train-if-missing to train anyway")
    echo(f"note: {method!r} has no --checkpoint; training it first: {text}")
