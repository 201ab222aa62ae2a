"""``benchmark bench train-step -p method=scops``: one SCOPS training step (both passes, VGG19 reference
features, the five losses, backward, per-group clipping, the network's and the basis's SGD updates), timed
by the shared train-step benchmark of :mod:`benchmark.methods.ours.bench` against float32 eager."""

from __future__ import annotations

import warnings

import torch

from benchmark.methods.ours.bench import STEP_BUILDERS, TrainStep, synthetic_batch


def make_step(batch_size: int, size: int, amp: str | None, compile_: bool, device: torch.device,
              preset: str) -> TrainStep:
    from benchmark.methods.backbones import RandomWeightsWarning
    from benchmark.methods.scops.method import SCOPS

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
    return TrainStep(model=torch.compile(net) if compile_ else net, loss_fn=trainer.loss_fn, optimizer=optimizer,
                     clip_groups=list(clip_groups.values()), clip_norm=config.clip_grad_norm, lr=config.lr,
                     horizon=config.schedule_horizon, poly_power=config.poly_power,
                     batch=synthetic_batch(batch_size, size, device), device=device, amp=amp)


STEP_BUILDERS["scops"] = make_step
