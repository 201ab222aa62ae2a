"""The one rule for a command that would train a method first (``run``, ``sweep``, ``export``).

A method that trains (``requires_training``: ``ours``, ``scops``) asked for part maps without a
``checkpoint`` trains before it predicts. With the paper's settings that is days on a CPU, so there it needs
``--train-if-missing``; the estimate from a measured step is said either way.
"""

from __future__ import annotations

from typing import Any, Callable

from benchmark.core.errors import UserError


def check_training_cost(method: str, num_parts: int, params: dict[str, Any], device: str, allowed: bool,
                        echo: Callable[[str], None]) -> None:
    """Refuse (one line naming the estimate and the fixes) a training on the CPU unless ``allowed``; on a GPU,
    or when allowed, ``echo`` one note with the estimate. Nothing happens for a method that does not train,
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
    if where == "cpu" and not allowed:
        raise UserError(f"method {method!r} has no --checkpoint, so this command would first train it on the CPU: "
                        f"{text}. Pass --checkpoint PATH, a smaller -p steps=N / -p preset=tiny, or "
                        "--train-if-missing to train anyway")
    echo(f"note: {method!r} has no --checkpoint; training it first: {text}")
