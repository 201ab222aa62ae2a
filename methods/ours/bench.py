"""``benchmark bench train-step``: the speed of one ``ours`` training step (both network passes, the VGG
reference features, the four losses, backward, clipping and the SGD update) on synthetic batches.

Prints the median milliseconds per step over many device-synchronised steps after warm-up, the FLOPs of one
step (``torch.utils.flop_counter``), and the same figures for the float32 eager configuration measured in
the same run (the baseline every requested variant -- ``amp=bf16``, ``compile=True`` -- is compared with).
Random weights everywhere (no downloads); the losses are the ``paper`` preset's.
"""

from __future__ import annotations

import functools

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from benchmark.core.errors import UserError
from benchmark.core.registry import register_bench
from benchmark.methods.step_timing import time_steps


def synthetic_batch(batch_size: int, size: int, device: torch.device):
    from benchmark.core.types import Batch

    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = 0.5 + 0.3 * torch.rand(batch_size, 1, 1, generator=g)
    masks = ((xx ** 2 + (yy / 0.8) ** 2)[None] < radius ** 2).float()  # an ellipse per image
    return Batch(images=images.to(device), ids=[str(i) for i in range(batch_size)], masks=masks.to(device))


@dataclass
class TrainStep:
    """One full training step of a method on a fixed synthetic batch: what ``train-step`` times and what
    the CUDA tests check (no host syncs; bf16 losses close to float32). Calling it runs the step the trainer
    runs: learning-rate schedule, forward under autocast, backward, per-group gradient clipping, SGD."""

    model: torch.nn.Module  # the module the loss calls (compiled when compile=True)
    loss_fn: Callable  # (model, batch, StepInfo) -> (total, terms)
    optimizer: torch.optim.Optimizer
    clip_groups: list  # lists of parameters clipped together
    clip_norm: float | None
    lr: float
    horizon: int
    poly_power: float
    batch: object
    device: torch.device
    amp: str | None = None
    index: int = 0

    def info(self, step: int):
        from benchmark.methods.training import StepInfo
        from benchmark.methods.training.loop import step_generator

        return StepInfo(step, step_generator(self.device, 0, step, 0), step_generator(self.device, 0, step, "shared"))

    def losses(self, step: int = 0):
        """``(total, terms)`` of the forward pass of step ``step`` (no update)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp == "bf16"):
            return self.loss_fn(self.model, self.batch, self.info(step))

    def __call__(self) -> None:
        from benchmark.methods.training.schedule import set_lrs

        step = self.index
        self.index += 1
        set_lrs(self.optimizer, self.lr, step, self.horizon, self.poly_power)
        total, _ = self.losses(step)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.clip_norm is not None:
            for params in self.clip_groups:
                torch.nn.utils.clip_grad_norm_(params, self.clip_norm, foreach=True)
        self.optimizer.step()


#: Step builders of other trainable methods (e.g. ``scops``), registered by their own bench modules:
#: ``fn(batch_size, size, amp, compile_, device, preset) -> TrainStep``.
STEP_BUILDERS: dict = {}


def build_train_step(method: str, batch_size: int, size: int, amp: str | None, compile_: bool,
                     device: torch.device, preset: str = "paper", *, sgd: str = "default",
                     channels_last: bool = False) -> TrainStep:
    """The :class:`TrainStep` of ``method`` (``ours`` or a method in :data:`STEP_BUILDERS`) with random
    weights on a synthetic batch of ``batch_size`` images of ``size`` px; ``sgd`` and ``channels_last``
    are the levers of :mod:`benchmark.methods.training.levers`."""
    from benchmark.methods.training.levers import to_channels_last, with_sgd_implementation

    device = torch.device(device)
    step = _build_step(method, batch_size, size, amp, compile_, device, preset)
    step.optimizer = with_sgd_implementation(step.optimizer, sgd)
    if channels_last:
        to_channels_last(step.model)
    return step


def _build_step(method: str, batch_size: int, size: int, amp: str | None, compile_: bool, device: torch.device,
                preset: str) -> TrainStep:
    if method != "ours" and method not in STEP_BUILDERS:
        import benchmark.benches  # noqa: F401  (imports the other methods' bench modules, which register their builders)
    if method in STEP_BUILDERS:
        return STEP_BUILDERS[method](batch_size, size, amp, compile_, device, preset)
    from benchmark.methods.backbones import RandomWeightsWarning
    from benchmark.methods.ours.method import Ours
    from benchmark.methods.ours.train_step import OursObjective, segmenter_param_groups
    from benchmark.methods.training import TrainConfig
    from benchmark.methods.training.loop import build_optimizer

    if method != "ours":
        raise ValueError(f"train-step benchmarks methods {', '.join(['ours', *STEP_BUILDERS])}, got {method!r}")
    ours = Ours(preset=preset, batch_size=batch_size, image_size=size, init="random", vgg_weights="random",
                amp=amp, compile=compile_)
    config = ours.config_for(None)
    model = ours._fresh_model(config, seed=0).to(device).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        vgg = ours._vgg(config, device)
    objective = OursObjective(config, vgg)
    train_config = TrainConfig(steps=10 ** 9, batch_size=batch_size, lr=config.lr, max_iter=config.max_iter,
                               clip_grad_norm=config.clip_grad_norm, amp=amp)
    optimizer = build_optimizer(segmenter_param_groups(model, config), train_config)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return TrainStep(model=torch.compile(model) if compile_ else model, loss_fn=objective, optimizer=optimizer,
                     clip_groups=[params], clip_norm=config.clip_grad_norm, lr=config.lr,
                     horizon=train_config.schedule_horizon, poly_power=config.poly_power,
                     batch=synthetic_batch(batch_size, size, device), device=device, amp=amp)


def _measure(step, device: torch.device, warmup: int, steps: int) -> float:
    return time_steps(step, device, warmup, steps, cpu_peak=False)[0]


def _flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


@functools.lru_cache(maxsize=32)
def measure_step_ms(method: str, batch_size: int, size: int, *, device: str = "cpu", preset: str = "paper",
                    steps: int = 1, warmup: int = 1) -> float:
    """Median milliseconds of ``steps`` training steps after ``warmup`` (random weights, synthetic batch):
    the basis of the training-time estimate ``run`` prints before it trains a method (measured once per
    process and configuration: the sentence and the seconds of the estimate read the same measurement)."""
    return _measure(build_train_step(method, batch_size, size, None, False, torch.device(device), preset),
                    torch.device(device), warmup, steps)


@register_bench("train-step")
def train_step_bench(method: str = "ours", batch_size: int = 6, size: int = 256, amp: str | None = None,
                     compile: bool = False, steps: int = 20, warmup: int = 5, device: str = "auto",
                     preset: str = "paper", sgd: str = "default", channels_last: bool = False) -> str:
    """ms per ``ours`` training step (median of ``steps`` synchronised steps after ``warmup``), FLOPs per
    step, and the ratio against float32 eager measured in the same run.

    Options: ``amp=bf16``, ``compile=true`` and the levers ``sgd=for-loop|foreach|fused`` and
    ``channels_last=true`` (:mod:`benchmark.methods.training.levers`) select the configuration compared
    with float32 eager (default SGD, contiguous format)."""
    from benchmark.factories import resolve_device

    dev = torch.device(resolve_device(device))
    amp = None if amp in (None, "", "none", "fp32", "float32") else amp
    compile_ = str(compile).lower() in ("1", "true", "yes")
    channels_last = str(channels_last).lower() in ("1", "true", "yes")
    from benchmark.methods.training.levers import SGD_IMPLEMENTATIONS

    if sgd not in SGD_IMPLEMENTATIONS:  # before minutes of model building
        raise UserError(f"unknown SGD implementation {sgd!r}; choose from {', '.join(SGD_IMPLEMENTATIONS)}")
    batch_size, size, steps, warmup = int(batch_size), int(size), int(steps), int(warmup)
    configs = [("float32 eager", None, False, "default", False)]
    if amp is not None or compile_ or sgd != "default" or channels_last:
        label = (f"{amp or 'float32'}{' compiled' if compile_ else ' eager'}"
                 + (" + channels-last" if channels_last else "") + (f" + {sgd} SGD" if sgd != "default" else ""))
        configs.append((label, amp, compile_, sgd, channels_last))
    lines = [f"train-step: method {method}, preset {preset}, batch {batch_size} x {size}x{size}, device {dev}"
             + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" ({torch.get_num_threads()} threads)"),
             f"median of {steps} synchronised steps after {warmup} warm-up steps; random weights, synthetic batches"]
    baseline = None
    width = max(18, *(len(c[0]) for c in configs))
    for label, amp_i, compile_i, sgd_i, channels_last_i in configs:
        step = build_train_step(method, batch_size, size, amp_i, compile_i, dev, preset, sgd=sgd_i,
                                channels_last=channels_last_i)
        flops = _flops(step) if not compile_i else None
        ms = _measure(step, dev, warmup, steps)
        if baseline is None:
            baseline = (ms, flops)
        flops = flops if flops is not None else baseline[1]
        tflops = flops / (ms / 1000.0) / 1e12
        lines.append(f"  {label:<{width}} {ms:9.2f} ms/step   {flops / 1e9:9.2f} GFLOP/step   {tflops:7.3f} TFLOP/s   "
                     f"x{baseline[0] / ms:.2f} vs float32 eager")
    per_100k = baseline[0] / 1000.0 * 100_000 / 3600.0
    lines.append(f"  100k-step schedule at the float32 eager speed: {per_100k:.2f} h")
    return "\n".join(lines)
