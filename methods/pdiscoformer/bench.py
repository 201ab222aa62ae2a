"""``benchmark bench pdiscoformer``: one PDiscoFormer training step of partbench against the release's own
step, written here from ``engine/distributed_trainer_pdisco.py`` (``_run_batch``), ``models/
individual_landmark_vit.py`` (``forward``) and ``engine/losses/*`` of ``ananthu-aniraj/pdiscoformer``, measured
in the same run on the same weights and batch.

partbench's step is the trainer's (:mod:`.train_step`): per-image affine augmentation on the device, two
network passes (the part features as one ``einsum``), the eight losses, backward, clipping with multi-tensor
kernels, Adam; nothing is read back to the host. The release's step, as its trainer runs it (data
augmentation happens in its DataLoader workers and is left out of its time, which favours it):

* the head computes the part features by materialising ``maps[:, None] * x[:, :, None]``
  (``N x D x (K + 1) x h x w``) and averaging it, in both network passes, and expands the squared norms
  with ``.contiguous()`` copies;
* the equivariance transform is drawn with ``torch.empty(1).uniform_(...).item()``;
* the losses are computed its way (``Categorical`` entropy, ``adaptive_max_pool2d``, an eye matrix per call,
  a zero concentration tensor built every step), then ``clip_grad_norm_`` over every parameter of the model
  (frozen ones included) and the update;
* every loss term is read back with ``.item()`` for the log (nine host synchronisations per step; its
  per-step accuracy metrics are left out, which again favours it).

Before timing, both ways compute the total loss of one batch with Gumbel noise and part dropout off and the
same rigid transform: the report prints their relative difference (they must agree). Random weights (speed
does not depend on their values); on CUDA the report gives each side's peak of allocated memory.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.core.registry import register_bench
from benchmark.methods.step_timing import time_steps
from benchmark.methods.pdiscoformer.network import DEFAULT_BACKBONE


# -- the release's step, read from its code -----------------------------------------------------------------
def release_forward(net, x: torch.Tensor, *, gumbel: bool):
    """``IndividualLandmarkViT.forward`` of the release on ``net``'s parameters (its op sequence)."""
    feats = net.patch_features(x)  # patch embedding, position embeddings, blocks, final norm: the same ops
    n, _, h, w = feats.shape
    slots = net.num_parts + 1
    ab = F.conv2d(feats, net.fc_landmarks.weight)
    b_sq = feats.pow(2).sum(1, keepdim=True).expand(-1, slots, -1, -1).contiguous()
    a_sq = net.fc_landmarks.weight.pow(2).sum(1, keepdim=True).expand(-1, n, h, w).contiguous().permute(1, 0, 2, 3).contiguous()
    dist = b_sq - 2 * ab + a_sq
    maps = F.gumbel_softmax(-dist, dim=1, tau=net.gumbel_tau) if gumbel else F.softmax(-dist, dim=1)
    all_features = (maps.unsqueeze(1) * feats.unsqueeze(2)).contiguous().mean(-1).mean(-1).contiguous()
    modulated = net.modulation(all_features)
    scores = net.fc_class_landmarks(
        net.dropout_full_landmarks(modulated[..., :-1].permute(0, 2, 1).contiguous())).permute(0, 2, 1).contiguous()
    return modulated, maps, scores, dist


def _release_rigid(x, angle, translate, scale, invert=False):
    from torchvision.transforms.functional import InterpolationMode, affine

    if not invert:
        return affine(x, angle=angle, translate=list(translate), scale=scale, shear=0.0,
                      interpolation=InterpolationMode.BILINEAR)
    x = affine(x, angle=0, translate=[-t for t in translate], scale=1, shear=0.0)
    return affine(x, angle=-angle, translate=[0, 0], scale=1 / scale, shear=0.0)


def release_losses(maps, equiv_maps, features, scores, targets, x, angle, translate, scale, num_parts):
    """The release's eight terms with the paper's weights, computed its way (``engine/losses``)."""
    device = maps.device
    classification = F.cross_entropy(scores.mean(dim=-1), targets)
    conc = torch.tensor(0.0, device=device)  # weight 0: the release builds a zero tensor
    n, _, h, w = maps.shape
    tv = ((maps[..., 1:, :] - maps[..., :-1, :]).abs().sum([1, 2, 3])
          + (maps[..., :, 1:] - maps[..., :, :-1]).abs().sum([1, 2, 3])).sum() / (n * h * w)
    presence = 1 - F.adaptive_max_pool2d(F.avg_pool2d(maps[:, :-1], 3, stride=1), 1).flatten(1).max(dim=0)[0].mean()
    normed = F.normalize(features, dim=1)
    orth = torch.square(torch.matmul(normed.permute(0, 2, 1).contiguous(), normed)
                        - torch.eye(features.shape[-1], device=device)).mean()
    shift = [t * maps.shape[-1] / x.shape[-1] for t in translate]
    back = _release_rigid(equiv_maps, angle, shift, scale, invert=True)
    cos = F.cosine_similarity(maps[:, :-1].reshape(-1, num_parts, h * w), back[:, :-1].reshape(-1, num_parts, h * w), -1)
    equiv = 1 - cos.mean()
    pooled = F.avg_pool2d(maps, 3, stride=1)
    gx, gy = torch.meshgrid(torch.arange(pooled.shape[2]), torch.arange(pooled.shape[3]), indexing="ij")
    gx = ((gx / gx.max()) * 2 - 1)[None, None].to(device)
    gy = ((gy / gy.max()) * 2 - 1)[None, None].to(device)
    mask = gx ** 2 + gy ** 2
    mask = mask / mask.max()
    peak = F.adaptive_max_pool2d((pooled * mask)[:, -1], 1).flatten(0)
    with torch.autocast(device_type=device.type, enabled=False):
        enforced = F.binary_cross_entropy(peak.float(), torch.ones_like(peak.float()))
    entropy = torch.distributions.Categorical(probs=maps.permute(0, 2, 3, 1).contiguous()).entropy().mean()
    terms = {"classification": classification, "conc": conc, "presence": presence, "orth": orth, "equiv": equiv,
             "tv": tv, "enforced_presence": 2.0 * enforced, "pixel_entropy": entropy}
    return sum(terms.values()), terms


def release_step(net, optimizer, x, targets, config, amp):
    """One step of the release's trainer (``_run_batch``, accumulation 1) on normalised images ``x``."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        features, maps, scores, _ = release_forward(net, x, gumbel=True)
        angle = float(torch.empty(1).uniform_(-config.degrees, config.degrees).item())
        max_dx, max_dy = config.translate * x.shape[2], config.translate * x.shape[3]
        translate = (int(round(torch.empty(1).uniform_(-max_dx, max_dx).item())),
                     int(round(torch.empty(1).uniform_(-max_dy, max_dy).item())))
        scale = float(torch.empty(1).uniform_(config.scale_low, config.scale_high).item())
        equiv_maps = release_forward(net, _release_rigid(x, angle, translate, scale), gumbel=True)[1]
        loss, terms = release_losses(maps, equiv_maps, features, scores, targets, x, angle, translate, scale,
                                     net.num_parts)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {name: value.item() for name, value in {**terms, "total": loss}.items()}  # the release's log


# -- the benchmark --------------------------------------------------------------------------------------------
def _precision(value, option: str = "amp") -> str | None:
    """``None`` (float32) or ``"bf16"``; anything else is refused (a row labelled fp16 that ran float32
    would be a wrong figure)."""
    text = str(value).lower()
    if text in ("", "none", "fp32", "float32"):
        return None
    if text != "bf16":
        raise UserError(f"bench pdiscoformer: {option} must be bf16 or none, got {value!r}")
    return text


@dataclass
class BenchSetup:
    """What both steps share: the initial network (random weights), the paper configuration, one batch."""

    initial: torch.nn.Module
    config: object  # PDiscoConfig
    batch: object  # Batch with meta["class_id"]
    targets: torch.Tensor  # the class indices of the batch, on the device
    labels: object  # the class vocabulary (a dataset-like object with class_ids())
    train_config: object  # TrainConfig of the optimiser
    device: torch.device


def bench_setup(batch_size: int, size: int, num_parts: int, classes: int, backbone: str, patch_size: int | None,
                device: torch.device, preset: str = "paper") -> BenchSetup:
    from benchmark.core.seeding import derive_seed
    from benchmark.core.types import Batch
    from benchmark.methods.pdiscoformer.network import build_network
    from benchmark.methods.pdiscoformer.presets import resolve_config
    from benchmark.methods.training import TrainConfig

    config = resolve_config(preset, num_parts=num_parts, batch_size=batch_size, image_size=size, backbone=backbone)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(0, "pdiscoformer-bench"))
        initial = build_network(backbone, size, num_parts, classes, patch_size=patch_size).to(device)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, size, size, generator=g).to(device)
    ids = torch.randint(0, classes, (batch_size,), generator=g).tolist()

    class Labels:  # the class vocabulary of the benchmark's fake dataset
        name = "bench"

        def class_ids(self):
            return tuple(range(classes))

    batch = Batch(images=images, ids=[str(i) for i in range(batch_size)], meta=[{"class_id": c} for c in ids])
    train_config = TrainConfig(steps=10 ** 9, batch_size=batch_size, lr=config.lr, weight_decay=0.0,
                               clip_grad_norm=config.clip_grad_norm, lr_step_every=1000)
    return BenchSetup(initial, config, batch, torch.tensor(ids, device=device), Labels(), train_config, device)


def partbench_step(setup: BenchSetup, precision: str | None = None, compiled: bool = False):
    """One training step as the trainer runs it (schedule, the objective under autocast, backward, foreach
    clipping, Adam) on a fresh copy of the initial network; call it to run a step."""
    from benchmark.methods.training.class_targets import ClassTargets
    from benchmark.methods.pdiscoformer.train_step import PDiscoObjective, adam, param_groups
    from benchmark.methods.training import StepInfo
    from benchmark.methods.training.loop import step_generator
    from benchmark.methods.training.schedule import set_lrs

    config, dev = setup.config, setup.device
    net = copy.deepcopy(setup.initial).train()
    objective = PDiscoObjective(config, ClassTargets(setup.labels, "pdiscoformer"), seed=0)
    optimizer = adam(param_groups(net, config), setup.train_config)
    clip = [p for group in optimizer.param_groups for p in group["params"]]
    model = torch.compile(net) if compiled else net
    counter = {"step": 0}

    def step():
        index = counter["step"]
        counter["step"] += 1
        set_lrs(optimizer, config.lr, index, 10 ** 9, 0.9, 0, 1000, 0.5)
        info = StepInfo(index, step_generator(dev, 0, index, 0), step_generator(dev, 0, index, "shared"))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            total, _ = objective(model, setup.batch, info)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(clip, config.clip_grad_norm, foreach=True)
        optimizer.step()
    return step


@register_bench("pdiscoformer")
def bench_pdiscoformer(batch_size: int = 8, size: int = 518, num_parts: int = 8, classes: int = 200,
                       backbone: str = DEFAULT_BACKBONE, patch_size: int = 0, amp: str = "none",
                       compile: bool = False, release_amp: str = "none", steps: int = 10, warmup: int = 3,
                       device: str = "auto") -> str:
    """ms and peak memory per pdiscoformer training step vs the release's own step, same weights and batch.

    Defaults: the paper's per-GPU batch (8 of its 4 x 8) of 518 px images on DINOv2-reg ViT-B/14, K = 8, CUB's
    200 classes. The release's step runs at ``release_amp`` (``none``: float32, its paper command; ``bf16``:
    its ``--use_amp`` on a GPU with bf16); partbench runs at the same precision and, when ``amp``/``compile``
    ask for another configuration, also in that one. ``patch_size`` 0: the backbone's own."""
    from benchmark.factories import resolve_device
    from benchmark.methods.training.class_targets import ClassTargets
    from benchmark.methods.pdiscoformer.train_step import PDiscoObjective, adam, imagenet_normalize, param_groups
    from benchmark.methods.training import StepInfo
    from benchmark.methods.training.loop import step_generator

    dev = torch.device(resolve_device(device))
    amp, release_amp = _precision(amp), _precision(release_amp, "release_amp")
    compile_ = str(compile).lower() in ("1", "true", "yes")
    batch_size, size, num_parts, classes = int(batch_size), int(size), int(num_parts), int(classes)
    setup = bench_setup(batch_size, size, num_parts, classes, backbone, int(patch_size) or None, dev)
    config, batch, targets = setup.config, setup.batch, setup.targets
    normalised = imagenet_normalize(batch.images)

    # the same computation: eval mode (no Gumbel noise, no part dropout), one rigid transform, no augmentation
    net = copy.deepcopy(setup.initial).eval()
    quiet = PDiscoObjective(replace(config, augment=False), ClassTargets(setup.labels, "pdiscoformer"), seed=0)
    angle, translate, scale = quiet.rigid_params(0, (size, size))
    with torch.no_grad():
        ours_total = quiet(net, batch, StepInfo(0, step_generator(dev, 0, 0, 0), step_generator(dev, 0, 0, "s")))[0]
        feats, maps, scores, _ = release_forward(net, normalised, gumbel=False)
        equiv = release_forward(net, _release_rigid(normalised, angle, translate, scale), gumbel=False)[1]
        theirs_total = release_losses(maps, equiv, feats, scores, targets, normalised, angle, translate, scale,
                                      num_parts)[0]
    agreement = abs(float(ours_total) - float(theirs_total)) / max(abs(float(theirs_total)), 1e-12)
    del net, feats, maps, scores, equiv

    def release_way():
        net = copy.deepcopy(setup.initial).train()
        optimizer = adam(param_groups(net, config), setup.train_config)
        return lambda: release_step(net, optimizer, normalised, targets, config, release_amp)

    def label(precision, compiled):
        return f"{precision or 'float32'}{' compiled' if compiled else ' eager'}"

    runs = [(f"release's step, {label(release_amp, False)}", release_way),
            (f"partbench, {label(release_amp, False)}", lambda: partbench_step(setup, release_amp, False))]
    if (amp, compile_) != (release_amp, False):
        runs.append((f"partbench, {label(amp, compile_)}", lambda: partbench_step(setup, amp, compile_)))
    rows = []
    for name, make in runs:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()  # the previous run's cached blocks do not count for this one
        step = make()
        ms, peak = time_steps(step, dev, int(warmup), int(steps))
        peak = peak / 2**20 if peak is not None else None
        rows.append((name, ms, peak))
        del step
    where = f"{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    lines = [f"pdiscoformer bench: batch {batch_size} x {size}x{size} px, {backbone}"
             f"{f' (patch {patch_size})' if int(patch_size) else ''}, K={num_parts}, {classes} classes, frozen "
             f"backbone (paper preset); device {dev} ({where})",
             f"median of {steps} synchronised steps after {warmup} warm-up steps; random weights, one fixed batch",
             "memory: " + ("the allocator's peak over the timed steps" if dev.type == "cuda" else
                           "what an extra (profiled, untimed) step holds at its peak beyond its start"),
             f"  same computation: relative difference of the two total losses (eval mode, one transform) = "
             f"{agreement:.1e}"]
    width = max(len(r[0]) for r in rows)
    ms_ref, peak_ref = rows[0][1], rows[0][2]
    for name, ms, peak in rows:
        memory = f"   {'peak allocated' if dev.type == 'cuda' else 'step peak'} {peak:8.0f} MiB"
        versus = f"   x{ms_ref / ms:.2f} steps/s" + (f", memory x{peak / peak_ref:.2f}" if peak_ref else "")
        lines.append(f"  {name:<{width}} {ms:9.2f} ms/step   {1000.0 / ms:7.2f} steps/s{memory}{versus}")
    best = min(rows[1:], key=lambda r: r[1])
    lines.append(f"  speed-up: x{ms_ref / best[1]:.2f} steps/s vs the release's step ({best[0]})")
    return "\n".join(lines)


@functools.lru_cache(maxsize=8)
def step_ms(preset: str, batch_size: int, size: int, num_parts: int, backbone: str, patch_size: int | None,
            amp: str | None, device: str) -> float:
    """Milliseconds of one training step of ``preset`` with these settings after one warm-up step (random
    weights, a synthetic batch of 8 classes): the basis of ``pdiscoformer``'s training-time estimate."""
    dev = torch.device(device)
    setup = bench_setup(batch_size, size, num_parts, 8, backbone, patch_size, dev, preset=preset)
    return time_steps(partbench_step(setup, amp, False), dev, 1, 1, cpu_peak=False)[0]
