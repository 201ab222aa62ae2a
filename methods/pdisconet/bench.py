"""``benchmark bench pdisconet``: one PDiscoNet training step, partbench's against the release's way, same run.

Both steps train the same network (same random weights, same synthetic batch with class labels, Adam with the
release's three groups):

* **partbench** -- :class:`~.train_step.PDiscoNetObjective` as the trainer runs it (augmentation on the
  device, the step's rigid transformation from a CPU generator, the part features as one ``einsum``, no host
  synchronisation), then backward and Adam;
* **release** -- the release's ``train()`` loop body as it computes it (``train.py``/``lib.py`` of
  ``robertdvdk/part_detection``, read and re-implemented here, no code copied): the part features as the mean
  of the broadcast product ``maps[:, None] * x[:, :, None]`` (an ``N x D x (K + 1) x h x w`` tensor), the
  distance terms expanded to full maps, the rigid transformation drawn from NumPy and applied to the host copy
  of the images, then moved to the device, the coordinate grids and the identity rebuilt and moved every step,
  the accuracy and the five running losses read back to the host, and ``torch.cuda.empty_cache()`` after the
  update. Its augmentation runs in the release's DataLoader workers, outside the step, so it is not timed.

The report gives the median milliseconds per step (device-synchronised, after warm-up), the peak memory of
each (:func:`~benchmark.methods.step_timing.time_steps`: CUDA's allocator peak, or on the CPU what a profiled
step holds beyond its start) and, as a check, the two steps' losses on the
same images and transformation in eval mode (equal up to float rounding).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.core.registry import register_bench
from benchmark.methods.step_timing import time_steps
from benchmark.methods.ours.bench import STEP_BUILDERS, TrainStep


def labelled_batch(batch_size: int, size: int, num_classes: int, device: torch.device):
    """Uniform random images with class labels ``i % num_classes`` (seeded), as a training batch."""
    from benchmark.core.types import Batch

    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, size, size, generator=g)
    return Batch(images=images.to(device), ids=[str(i) for i in range(batch_size)],
                 meta=[{"class_id": i % num_classes} for i in range(batch_size)])


def _classes(num_classes: int) -> SimpleNamespace:
    """What :class:`~.train_step.ClassTargets` reads of a dataset: its class ids and its name."""
    return SimpleNamespace(class_ids=lambda: tuple(range(num_classes)), name="synthetic batch")


def _network(backbone: str, num_parts: int, num_classes: int, device: torch.device):
    from benchmark.methods.pdisconet.network import build_network

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_network(backbone, num_parts, num_classes).to(device).train()


def _adam(net, lr: float):
    from benchmark.methods.pdisconet.presets import adam
    from benchmark.methods.pdisconet.train_step import param_groups
    from benchmark.methods.training import TrainConfig

    return adam(param_groups(net), TrainConfig(steps=1, batch_size=1, lr=lr, weight_decay=0.0))


def make_step(batch_size: int, size: int, amp: str | None, compile_: bool, device: torch.device, preset: str,
              *, num_parts: int = 8, num_classes: int = 200, backbone: str | None = None,
              channels_last: bool = False) -> TrainStep:
    """partbench's step (``train-step -p method=pdisconet`` and the training-time estimate)."""
    from benchmark.methods.pdisconet.presets import PRESETS
    from benchmark.methods.training.class_targets import ClassTargets
    from benchmark.methods.pdisconet.train_step import PDiscoNetObjective

    if preset not in PRESETS:
        raise UserError(f"unknown pdisconet preset {preset!r}; choose one of {', '.join(PRESETS)}")
    settings = PRESETS[preset]
    net = _network(backbone or settings.backbone, num_parts, num_classes, device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    objective = PDiscoNetObjective(ClassTargets(_classes(num_classes), "pdisconet"), seed=0, augment=settings.augment)
    return TrainStep(model=torch.compile(net) if compile_ else net, loss_fn=objective,
                     optimizer=_adam(net, settings.lr), clip_groups=[], clip_norm=None, lr=settings.lr,
                     horizon=10 ** 9, poly_power=0.0, batch=labelled_batch(batch_size, size, num_classes, device),
                     device=device, amp=amp)


STEP_BUILDERS["pdisconet"] = make_step


@functools.lru_cache(maxsize=8)
def step_ms(preset: str, batch_size: int, size: int, num_parts: int, backbone: str, amp: str | None,
            channels_last: bool, device: str) -> float:
    """Milliseconds of one training step with these settings after one warm-up step (random weights, a
    synthetic batch of 8 classes): the basis of ``pdisconet``'s training-time estimate."""
    dev = torch.device(device)
    step = make_step(batch_size, size, amp, False, dev, preset, num_parts=num_parts, num_classes=8,
                     backbone=backbone, channels_last=channels_last)
    return time_steps(step, dev, 1, 1, cpu_peak=False)[0]


# -- the release's way ------------------------------------------------------------------------------------
def release_forward(net, images: torch.Tensor):
    """``(features, maps, scores)`` computed as the release's ``IndividualLandmarkNet.forward`` does."""
    x = net.feature_map(images)
    n, k1 = x.shape[0], net.num_parts + 1
    ab = net.fc_landmarks(x)
    b_sq = x.pow(2).sum(1, keepdim=True).expand(-1, k1, -1, -1)
    a_sq = net.fc_landmarks.weight.pow(2).sum(1).unsqueeze(1).expand(-1, n, x.shape[-2], x.shape[-1]).permute(1, 0, 2, 3)
    maps = torch.softmax(-(b_sq - 2 * ab + a_sq), dim=1)
    features = (maps.unsqueeze(1) * x.unsqueeze(2)).mean(-1).mean(-1)
    modulated = net.dropout_full_landmarks((features * net.modulation).permute(0, 2, 1)).permute(0, 2, 1)
    scores = net.fc_class_landmarks(modulated.permute(0, 2, 1)).permute(0, 2, 1)
    return features, maps, scores


def release_losses(net, images_host: torch.Tensor, labels: torch.Tensor, device: torch.device,
                   transform: tuple[float, list[int], float] | None = None):
    """The release's weighted losses of one batch (its draw of the rigid transformation unless given)."""
    from torchvision.transforms.functional import InterpolationMode, affine

    k = net.num_parts
    features, maps, scores = release_forward(net, images_host.to(device))
    if transform is None:
        angle = np.random.rand() * 180 - 90
        translate = [int(t) for t in np.int32(np.floor(np.random.rand(2) * 100 - 50))]
        scale = np.random.rand() * 0.6 + 0.8
    else:
        angle, translate, scale = transform
    moved = affine(images_host, angle=angle, translate=list(translate), scale=scale, shear=[0.0, 0.0],
                   interpolation=InterpolationMode.BILINEAR)
    _, equiv_maps, _ = release_forward(net, moved.to(device))
    ratio = maps.shape[-1] / images_host.shape[-1]
    shifted = affine(equiv_maps, angle=0.0, translate=[-t * ratio for t in translate], scale=1.0, shear=[0.0, 0.0])
    back = affine(shifted, angle=-angle, translate=[0, 0], scale=1 / scale, shear=[0.0, 0.0])
    cos = F.cosine_similarity(maps[:, :-1].reshape(-1, k, maps[0, 0].numel()),
                              back[:, :-1].reshape(-1, k, maps[0, 0].numel()), -1)
    equiv = 1 - cos.mean()
    logits = scores[:, :, :-1].mean(-1)
    classification = F.cross_entropy(logits, labels, reduction="none").mean() * 2
    accuracy = (logits.argmax(1) == labels).float().mean().cpu()  # the release's per-step host copy
    rows, cols = torch.meshgrid(torch.arange(maps.shape[2]), torch.arange(maps.shape[3]), indexing="ij")
    rows, cols = rows[None, None].to(device), cols[None, None].to(device)
    mass = maps.sum(3).sum(2).detach()
    centre_r = (rows * maps).sum(3).sum(2) / mass
    centre_c = (cols * maps).sum(3).sum(2) / mass
    spread = ((centre_r[..., None, None] - rows) / rows.shape[-1]) ** 2 + ((centre_c[..., None, None] - cols) / cols.shape[-2]) ** 2
    concentration = (spread * maps)[:, :-1].mean() * 1000
    presence = 1 - F.avg_pool2d(maps[:, :, 2:-2, 2:-2], 3, stride=1).max(-1)[0].max(-1)[0].max(0)[0].mean()
    normed = F.normalize(features, dim=1)
    gram = normed.permute(0, 2, 1) @ normed - torch.eye(k + 1).to(device)
    orthogonality = gram.square().mean()
    terms = {"concentration": concentration, "presence": presence, "orthogonality": orthogonality,
             "equivariance": equiv, "classification": classification}
    return terms, accuracy


class ReleaseStep:
    """One step of the release's ``train()`` loop body (see the module docstring)."""

    def __init__(self, net, images: torch.Tensor, labels: torch.Tensor, lr: float, device: torch.device):
        self.net, self.device = net, device
        self.images_host = images.cpu()  # the release's batch lives on the host; the step moves it
        self.labels = labels
        self.optimizer = _adam(net, lr)
        self.running: list[float] | None = None
        np.random.seed(1)

    def __call__(self) -> None:
        terms, _ = release_losses(self.net, self.images_host, self.labels.to(self.device), self.device)
        total = sum(terms.values())
        total.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        values = [float(v.item()) for v in terms.values()]  # the release's running losses
        self.running = values if self.running is None else [0.99 * r + 0.01 * v for r, v in zip(self.running, values)]


# -- measuring -----------------------------------------------------------------------------------------------

def _same_losses(net, batch, num_classes: int, device: torch.device) -> float:
    """The largest relative difference between the two steps' terms on the same images and transformation
    (eval mode: no dropout, batch-norm running statistics; no augmentation)."""
    from benchmark.methods.pdisconet import losses as L
    from benchmark.methods.training.class_targets import ClassTargets
    from benchmark.methods.pdisconet.train_step import PDiscoNetObjective
    from benchmark.methods.training import StepInfo

    objective = PDiscoNetObjective(ClassTargets(_classes(num_classes), "pdisconet"), seed=0, augment=False)
    angle, translate, scale = objective.rigid_params(0)
    net.eval()
    with torch.no_grad():
        _, ours = objective(net, batch, StepInfo(0, torch.Generator(device=device), torch.Generator(device=device)))
        labels = torch.tensor([m["class_id"] for m in batch.meta], device=device)
        theirs, _ = release_losses(net, batch.images.cpu(), labels, device, (angle, list(translate), scale))
    net.train()
    assert set(ours) == set(theirs) == set(L.PAPER_WEIGHTS)
    return max(abs(float(ours[k]) - float(theirs[k])) / max(abs(float(theirs[k])), 1e-12) for k in ours)


def _mib(value: int) -> str:
    return f"{value / 2 ** 20:,.0f} MiB"


@register_bench("pdisconet")
def bench_pdisconet(batch_size: int = 16, size: int = 448, num_parts: int = 8, classes: int = 200,
                    backbone: str = "resnet101", amp: str = "none", compile: bool = False,
                    channels_last: bool = False, steps: int = 10, warmup: int = 3, device: str = "auto",
                    quick: bool = False) -> str:
    """PDiscoNet training step (ms, peak memory) of partbench vs the release's way, same weights, same run.

    Paper sizes by default (CUB: batch 16 of 448 px, ResNet-101, K = 8, 200 classes); ``quick=true`` runs
    CPU-sized steps (batch 2 of 112 px on a ResNet-18, 2 steps after 1 warm-up). Both steps run in float32,
    the release's precision; ``amp=bf16``, ``channels_last=true`` and/or ``compile=true`` add a row of
    partbench's step in that configuration (``benchmark train -m pdisconet -p amp=bf16 -p channels_last=true``
    trains so)."""
    from benchmark.factories import resolve_device
    from benchmark.methods.pdisconet.network import check_backbone

    dev = torch.device(resolve_device(device))
    if str(quick).lower() in ("1", "true", "yes"):
        batch_size, size, backbone, steps, warmup = 2, 112, "resnet18", 2, 1
    batch_size, size, num_parts, classes = int(batch_size), int(size), int(num_parts), int(classes)
    steps, warmup = int(steps), int(warmup)
    precision = None if str(amp).lower() in ("", "none", "fp32", "float32") else str(amp).lower()
    if precision not in (None, "bf16"):
        raise UserError(f"bench pdisconet: amp must be bf16 or none, got {amp!r}")
    compile_ = str(compile).lower() in ("1", "true", "yes")
    nhwc = str(channels_last).lower() in ("1", "true", "yes")
    check_backbone(backbone)
    if size < 112:
        raise UserError(f"bench pdisconet: size {size} gives maps under 7x7, too small for the presence loss; "
                        "pass -p size=112 or more")
    batch = labelled_batch(batch_size, size, classes, dev)
    labels = torch.tensor([m["class_id"] for m in batch.meta])

    release_net = _network(backbone, num_parts, classes, dev)
    check = _same_losses(release_net, batch, classes, dev)
    rows = [("release's way, float32",
             *time_steps(ReleaseStep(release_net, batch.images, labels, 1e-4, dev), dev, warmup, steps))]
    del release_net
    asked = (precision, compile_, nhwc)
    configurations = [(None, False, False)] + ([asked] if asked != (None, False, False) else [])
    for run_precision, run_compile, run_nhwc in configurations:
        if dev.type == "cuda":
            torch.cuda.empty_cache()  # the previous run's cached blocks do not count for this one
        ours = make_step(batch_size, size, run_precision, run_compile, dev, "paper", num_parts=num_parts,
                         num_classes=classes, backbone=backbone, channels_last=run_nhwc)
        name = (f"partbench, {run_precision or 'float32'}{' channels-last' if run_nhwc else ''}"
                f"{' compiled' if run_compile else ''}")
        rows.append((name, *time_steps(ours, dev, warmup, steps)))
        del ours

    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{torch.get_num_threads()} threads"
    memory = ("the allocator's peak over the timed steps" if dev.type == "cuda" else
              "what an extra (profiled, untimed) step holds at its peak beyond its start")
    lines = [f"pdisconet train step: {backbone}, K = {num_parts}, {classes} classes, batch {batch_size} x "
             f"{size}x{size}, device {dev} ({where}); median of {steps} synchronised steps after {warmup} warm-up",
             f"memory: {memory}"]
    width = max(len(r[0]) for r in rows)
    release_ms, release_peak = rows[0][1], rows[0][2]
    def versus(peak: int) -> str:  # a CPU step of a tiny network may hold nothing beyond its start
        return f"x{peak / release_peak:.2f}" if release_peak else "n/a (the release's step held 0 MiB)"

    for name, ms, peak in rows:
        lines.append(f"  {name:<{width}} {ms:9.1f} ms/step   peak {_mib(peak):>9}   x{release_ms / ms:.2f} steps/s, "
                     f"memory {versus(peak)}")
    best = min(rows[1:], key=lambda r: r[1])
    lines += [f"  speed-up vs the release's way: x{release_ms / best[1]:.2f} steps per second ({best[0]}), "
              f"peak memory {versus(best[2])} of the release's",
              f"  check: the two steps' loss terms on the same images and transformation differ by at most "
              f"{check:.1e} (relative)"]
    return "\n".join(lines)
