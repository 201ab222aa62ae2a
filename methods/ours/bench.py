"""``benchmark bench train-step``: the speed of one ``ours`` training step (both network passes, the VGG
reference features, the four losses, backward, clipping and the SGD update) on synthetic batches.

Prints the median milliseconds per step over many device-synchronised steps after warm-up, the FLOPs of one
step (``torch.utils.flop_counter``), and the same figures for the float32 eager configuration measured in
the same run (the baseline every requested variant -- ``amp=bf16``, ``compile=True`` -- is compared with).
Random weights everywhere (no downloads); the losses are the ``paper`` preset's.
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch

from benchmark.core.registry import register_bench


def synthetic_batch(batch_size: int, size: int, device: torch.device):
    from benchmark.core.types import Batch

    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = 0.5 + 0.3 * torch.rand(batch_size, 1, 1, generator=g)
    masks = ((xx ** 2 + (yy / 0.8) ** 2)[None] < radius ** 2).float()  # an ellipse per image
    return Batch(images=images.to(device), ids=[str(i) for i in range(batch_size)], masks=masks.to(device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Step builders of other trainable methods (e.g. ``scops``), registered by their own modules:
#: ``fn(batch_size, size, amp, compile_, device, preset) -> step()`` running one full training step.
STEP_BUILDERS: dict = {}


def _make_step(method, batch_size: int, size: int, amp: str | None, compile_: bool, device: torch.device,
               preset: str):
    if method in STEP_BUILDERS:
        return STEP_BUILDERS[method](batch_size, size, amp, compile_, device, preset)
    from benchmark.methods.backbones import RandomWeightsWarning
    from benchmark.methods.ours.method import Ours
    from benchmark.methods.ours.train_step import OursObjective, segmenter_param_groups
    from benchmark.methods.training import StepInfo, TrainConfig
    from benchmark.methods.training.loop import step_generator, build_optimizer
    from benchmark.methods.training.schedule import set_lrs

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
    step_model = torch.compile(model) if compile_ else model
    batch = synthetic_batch(batch_size, size, device)
    counter = [0]

    def step() -> None:
        i = counter[0]
        counter[0] += 1
        set_lrs(optimizer, config.lr, i, train_config.schedule_horizon, config.poly_power)
        info = StepInfo(i, step_generator(device, 0, i, 0), step_generator(device, 0, i, "shared"))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            total, _ = objective(step_model, batch, info)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if config.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.clip_grad_norm, foreach=True)
        optimizer.step()

    return step


def _measure(step, device: torch.device, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def _flops(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def measure_step_ms(method: str, batch_size: int, size: int, *, device: str = "cpu", preset: str = "paper",
                    steps: int = 1, warmup: int = 1) -> float:
    """Median milliseconds of ``steps`` training steps after ``warmup`` (random weights, synthetic batch):
    the basis of the training-time estimate ``run`` prints before it trains a method."""
    return _measure(_make_step(method, batch_size, size, None, False, torch.device(device), preset),
                    torch.device(device), warmup, steps)


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.4 h`` or ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@register_bench("train-step")
def train_step_bench(method: str = "ours", batch_size: int = 6, size: int = 256, amp: str | None = None,
                     compile: bool = False, steps: int = 20, warmup: int = 5, device: str = "auto",
                     preset: str = "paper") -> str:
    """ms per ``ours`` training step (median of ``steps`` synchronised steps after ``warmup``), FLOPs per
    step, and the ratio against float32 eager measured in the same run."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    amp = None if amp in (None, "", "none", "fp32", "float32") else amp
    compile_ = str(compile).lower() in ("1", "true", "yes")
    batch_size, size, steps, warmup = int(batch_size), int(size), int(steps), int(warmup)
    configs = [("float32 eager", None, False)]
    if amp is not None or compile_:
        configs.append((f"{amp or 'float32'}{' compiled' if compile_ else ' eager'}", amp, compile_))
    lines = [f"train-step: method {method}, preset {preset}, batch {batch_size} x {size}x{size}, device {dev}"
             + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" ({torch.get_num_threads()} threads)"),
             f"median of {steps} synchronised steps after {warmup} warm-up steps; random weights, synthetic batches"]
    baseline = None
    for label, amp_i, compile_i in configs:
        step = _make_step(method, batch_size, size, amp_i, compile_i, dev, preset)
        flops = _flops(step) if not compile_i else None
        ms = _measure(step, dev, warmup, steps)
        if baseline is None:
            baseline = (ms, flops)
        flops = flops if flops is not None else baseline[1]
        tflops = flops / (ms / 1000.0) / 1e12
        lines.append(f"  {label:<18} {ms:9.2f} ms/step   {flops / 1e9:9.2f} GFLOP/step   {tflops:7.3f} TFLOP/s   "
                     f"x{baseline[0] / ms:.2f} vs float32 eager")
    per_100k = baseline[0] / 1000.0 * 100_000 / 3600.0
    lines.append(f"  100k-step schedule at the float32 eager speed: {per_100k:.2f} h")
    return "\n".join(lines)
