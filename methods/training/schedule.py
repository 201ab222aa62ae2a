"""The poly learning-rate schedule of DeepLab (used by unsup-parts and SCOPS) or a step decay (PDiscoFormer),
with an optional linear warm-up."""

from __future__ import annotations


def poly_lr(base_lr: float, step: int, max_iter: int, power: float = 0.9) -> float:
    """``base_lr * (1 - step / max_iter) ** power`` for the 0-based ``step``; 0 once ``step >= max_iter``.

    The reference recomputes this before every step (``adjust_learning_rate(optimizer, i_iter)``) with
    ``max_iter`` hard-coded to 100000, independently of the number of steps actually run.
    """
    if max_iter <= 0:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    frac = 1.0 - float(step) / float(max_iter)
    return float(base_lr) * (max(frac, 0.0) ** float(power))


def step_lr(base_lr: float, step: int, every: int, gamma: float) -> float:
    """``base_lr * gamma ** (step // every)`` for the 0-based ``step`` (PyTorch's ``StepLR``, in steps)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return float(base_lr) * float(gamma) ** (int(step) // int(every))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """``(step + 1) / warmup_steps`` for the first ``warmup_steps`` 0-based steps, then 1 (0 = no warm-up).

    The references have no warm-up; it exists for optimisers whose first steps from random weights are
    too large (the ``fgbg`` ``tiny`` preset's Adam)."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    return 1.0 if step >= warmup_steps else float(step + 1) / float(warmup_steps)


def set_lrs(optimizer, base_lr: float, step: int, max_iter: int, power: float, warmup_steps: int = 0,
            step_every: int | None = None, step_gamma: float = 0.5) -> float:
    """Set every group's ``lr`` to ``poly_lr(...) * warmup_factor(...) * group['lr_mult']`` (``step_lr`` instead
    of ``poly_lr`` when ``step_every`` is set; a group's ``constant_lr`` stays); returns the base LR of the step.
    Plain Python floats: no device work, no host sync."""
    scheduled = step_lr(base_lr, step, step_every, step_gamma) if step_every else poly_lr(base_lr, step, max_iter, power)
    lr = scheduled * warmup_factor(step, warmup_steps)
    for group in optimizer.param_groups:
        if group.get("constant_lr") is not None:  # a group outside the schedule (ParamGroup.lr)
            group["lr"] = group["constant_lr"]
        else:
            group["lr"] = lr * group.get("lr_mult", 1.0)
    return lr
