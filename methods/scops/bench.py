"""``benchmark bench train-step -p method=scops``: one SCOPS training step (both passes, VGG19 reference
features, the five losses, backward, per-group clipping, the network's and the basis's SGD updates), timed
by the shared train-step benchmark of :mod:`benchmark.methods.ours.bench` against float32 eager."""

from __future__ import annotations

import warnings

import torch

from benchmark.methods.ours.bench import STEP_BUILDERS, synthetic_batch


def make_step(batch_size: int, size: int, amp: str | None, compile_: bool, device: torch.device, preset: str):
    from benchmark.methods.backbones import RandomWeightsWarning
    from benchmark.methods.scops.method import SCOPS
    from benchmark.methods.training import StepInfo
    from benchmark.methods.training.loop import step_generator
    from benchmark.methods.training.schedule import set_lrs

    scops = SCOPS(preset=preset, batch_size=batch_size, image_size=size, init="random", vgg_weights="random",
                  amp=amp, compile=compile_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        trainer = scops.trainer(None, out_dir=None, seed=0, device=device)
    config = trainer.config
    net = trainer.model.to(device).train()
    optimizer = trainer.optimizer_factory(trainer.param_groups(net), config)
    clip_groups: dict[str, list] = {}
    for group in optimizer.param_groups:
        clip_groups.setdefault(group["clip_group"], []).extend(group["params"])
    step_model = torch.compile(net) if compile_ else net
    batch = synthetic_batch(batch_size, size, device)
    counter = [0]

    def step() -> None:
        i = counter[0]
        counter[0] += 1
        set_lrs(optimizer, config.lr, i, config.schedule_horizon, config.poly_power)
        info = StepInfo(i, step_generator(device, 0, i, 0), step_generator(device, 0, i, "shared"))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            total, _ = trainer.loss_fn(step_model, batch, info)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        for params in clip_groups.values():
            torch.nn.utils.clip_grad_norm_(params, config.clip_grad_norm, foreach=True)
        optimizer.step()

    return step


STEP_BUILDERS["scops"] = make_step
