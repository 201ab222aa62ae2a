"""The DeepLab-v2 ResNet-50 "2-branch" part segmenter shared by ``ours`` (K outputs) and ``scops`` (K+1).

Architecture (identical in unsup-parts and SCOPS ``deeplab_2branch.py``; docs/training.md):

* stem: 7x7/2 conv (no bias) -> BN -> ReLU -> 3x3/2 max-pool with ``ceil_mode=True`` (the "+1" of 33x33);
* layer1..4 = 3/4/6/3 bottlenecks, "caffe" style: the stride sits on the *first 1x1* conv of a block, the
  3x3 conv has ``padding = dilation``; layer2 has stride 2, layer3 stride 1 / dilation 2, layer4 stride 1 /
  dilation 4 (every block of a stage, the first included, uses the stage dilation); the first block of every
  stage has a 1x1 conv + BN projection shortcut (``downsample.0`` / ``downsample.1``);
* output stride 8: a 256x256 input gives 33x33 logits (see :func:`output_size`);
* the 2048-channel layer4 output is split into two 1024-channel halves: the first is the "instance feature",
  the second is returned L2-normalised as the "part feature" and feeds the classifier ``layer5``;
* ``layer5`` = sum of four 3x3 convs 1024 -> num_outputs with dilation = padding in {6, 12, 18, 24}, with bias;
* BatchNorm (eps 1e-5, momentum 0.1): the affine parameters of the stem BN and of every BN inside a bottleneck
  are frozen (``requires_grad=False``); the BNs of the projection shortcuts are trainable (true of the
  2-branch file only). Freezing affects only the gradients: in ``train()`` mode every BN normalises with batch
  statistics and updates its running statistics, as in the reference.

Parameter and buffer names equal the reference state-dict keys (``conv1.weight``, ``bn1.running_mean``,
``layer1.0.downsample.1.weight``, ``layer5.conv2d_list.3.bias`` ...), so official checkpoints load strictly
with :meth:`PartSegmenter.load_official`.

Input convention: the network sees 0-255 RGB images minus per-channel means, no std division;
:func:`caffe_input` builds it from [0, 1] images. ``ours`` subtracts the Caffe *BGR* means from the RGB
channels (the reference quirk, ``mean_order="rgb_caffe_bgr_quirk"``); SCOPS subtracts the RGB means
(``mean_order="rgb"``).

Initialisation for training (docs/training.md, "Initialisation"): :func:`init_segmenter` with ``"caffe:PATH"`` (the DeepLab
ResNet-50 Caffe weights, copied where name and shape match, as the reference does, with a report of what was
skipped), ``"torchvision"`` (ImageNet ResNet-50 from the local torch hub cache, mapped onto the same layers)
or ``"random"`` (the reference's own init; tests only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.core.errors import UserError
from benchmark.methods import weights as _weights

__all__ = [
    "CAFFE_MEAN_BGR",
    "MEAN_ORDERS",
    "PartSegmenter",
    "InitReport",
    "caffe_input",
    "init_segmenter",
    "load_segmenter_state",
    "output_size",
    "read_state_dict",
    "torchvision_key_map",
]

#: The Caffe ImageNet means in B, G, R order (as the reference code spells them).
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
#: What gets subtracted from the R, G, B channels for each convention (see ``mean_order`` in docs/training.md).
MEAN_ORDERS = {
    # unsup-parts ("ours"): the BGR constants applied in R, G, B order (R-104.0, G-116.7, B-122.7).
    "rgb_caffe_bgr_quirk": CAFFE_MEAN_BGR,
    # SCOPS: the correct RGB means (R-122.7, G-116.7, B-104.0).
    "rgb": tuple(reversed(CAFFE_MEAN_BGR)),
}

_STAGES = ((64, 3, 1, 1), (128, 4, 2, 1), (256, 6, 1, 2), (512, 3, 1, 4))  # planes, blocks, stride, dilation
_ASPP_DILATIONS = (6, 12, 18, 24)
_BRANCH_CHANNELS = 1024
_CLASSIFIER_KEY = "layer5.conv2d_list.0.weight"


def caffe_input(images01: torch.Tensor, mean_order: str = "rgb_caffe_bgr_quirk") -> torch.Tensor:
    """The network input (0-255 RGB minus per-channel means) from RGB images in [0, 1], shape (B, 3, H, W): ``255 * x - mean``.

    ``mean_order="rgb_caffe_bgr_quirk"`` (ours, the reference quirk) subtracts (104.0, 116.7, 122.7) from
    (R, G, B); ``"rgb"`` (SCOPS) subtracts (122.7, 116.7, 104.0). Runs on the tensor's device and dtype.
    """
    if mean_order not in MEAN_ORDERS:
        raise UserError(f"unknown mean_order {mean_order!r}; choose one of {sorted(MEAN_ORDERS)}")
    if images01.ndim != 4 or images01.shape[1] != 3:
        raise ValueError(f"caffe_input expects (B, 3, H, W) RGB images, got shape {tuple(images01.shape)}")
    # Per-channel scalar arithmetic: a mean tensor built from Python data would be a host-to-device copy (a
    # stream synchronisation, illegal under CUDA-graph capture) in every training step.
    r, g, b = images01.unbind(dim=1)
    mr, mg, mb = MEAN_ORDERS[mean_order]
    return torch.stack((r * 255.0 - mr, g * 255.0 - mg, b * 255.0 - mb), dim=1)


def output_size(height: int, width: int | None = None) -> tuple[int, int]:
    """Spatial size of the logits for an input of ``height`` x ``width`` (output stride 8, ceil-mode pool).

    conv1 (7x7/2, pad 3): ``(n - 1) // 2 + 1``; max-pool (3x3/2, pad 1, ceil): ``ceil((n - 1) / 2) + 1``
    (PyTorch drops a last window that would start in the right padding, which never happens here);
    layer2's strided 1x1 conv: ``(n - 1) // 2 + 1``; layers 3-5 keep the size. 256 -> 128 -> 65 -> 33.
    """

    def one(n: int) -> int:
        n = (n - 1) // 2 + 1
        pooled = -(-(n - 1) // 2) + 1
        if (pooled - 1) * 2 >= n + 1:  # window starting inside the right padding
            pooled -= 1
        return (pooled - 1) // 2 + 1

    return one(height), one(width if width is not None else height)


class Bottleneck(nn.Module):
    """Caffe-style ResNet bottleneck: stride on the first 1x1 conv, dilated 3x3 with padding = dilation."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        for bn in (self.bn1, self.bn2, self.bn3):  # frozen affine params inside bottlenecks (as the reference)
            bn.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place is safe: BN's backward does not need its output
        return self.relu(out)


class Classifier(nn.Module):
    """DeepLab-v2 ASPP-style classifier: the sum of four dilated 3x3 convs (keys ``conv2d_list.i.*``)."""

    def __init__(self, in_channels: int, num_outputs: int, dilations: tuple[int, ...] = _ASPP_DILATIONS):
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, num_outputs, kernel_size=3, stride=1, padding=d, dilation=d, bias=True)
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1:]:
            out = out + conv(x)
        return out


class PartSegmenter(nn.Module):
    """DeepLab-v2 ResNet-50 2-branch segmenter with ``num_outputs`` logits per location.

    ``forward(x)`` takes the mean-subtracted 0-255 RGB tensor of :func:`caffe_input`, shape (B, 3, H, W),
    and returns the logits at output stride 8, shape (B, num_outputs, h, w) with ``(h, w) =
    output_size(H, W)``. :meth:`forward_all` returns the reference's 4-tuple.

    A fresh instance carries the reference's random initialisation (all conv weights N(0, 0.01^2), BN weight 1
    and bias 0, classifier biases PyTorch's default); use :func:`init_segmenter` for pretrained backbones, and
    :meth:`for_loading` (no initialisation at all) for a model whose every tensor a checkpoint sets.
    """

    def __init__(self, num_outputs: int, *, initialise: bool = True) -> None:
        super().__init__()
        if int(num_outputs) < 1:
            raise UserError(f"num_outputs must be >= 1, got {num_outputs}")
        self.num_outputs = int(num_outputs)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.bn1.requires_grad_(False)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        inplanes = 64
        for index, (planes, blocks, stride, dilation) in enumerate(_STAGES, start=1):
            stage, inplanes = self._make_stage(inplanes, planes, blocks, stride, dilation)
            self.add_module(f"layer{index}", stage)
        self.layer5 = Classifier(_BRANCH_CHANNELS, self.num_outputs)
        if initialise:
            self.reset_parameters()

    @staticmethod
    def _make_stage(inplanes: int, planes: int, blocks: int, stride: int, dilation: int):
        out = planes * Bottleneck.expansion
        downsample = None
        # The reference's condition: stride, channel change or dilation 2/4 -> projection shortcut.
        if stride != 1 or inplanes != out or dilation in (2, 4):
            downsample = nn.Sequential(nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(out))  # shortcut BN stays trainable (2-branch file)
        layers = [Bottleneck(inplanes, planes, stride, dilation, downsample)]
        layers += [Bottleneck(out, planes, 1, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers), out

    @classmethod
    def for_loading(cls, num_outputs: int) -> "PartSegmenter":
        """An instance whose parameters and buffers are allocated but not initialised, for a checked load of a
        complete state dict (:func:`load_segmenter_state`), which sets every one of them: the random
        initialisation of 24M parameters is skipped (it cost more than reading the checkpoint). The BN
        counters, which old checkpoints may lack, start at 0 as in a fresh instance."""
        with torch.device("meta"):
            model = cls(num_outputs, initialise=False)
        model = model.to_empty(device="cpu")
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name.endswith("num_batches_tracked"):
                    buffer.zero_()
        return model

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The reference initialisation: conv weights N(0, 0.01^2), BN weight 1 / bias 0, BN stats reset."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.normal_(0.0, 0.01)
                if module.bias is not None:  # the classifier's biases: PyTorch's default init
                    bound = 1.0 / math.sqrt(module.in_channels * module.kernel_size[0] * module.kernel_size[1])
                    module.bias.uniform_(-bound, bound)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.weight.fill_(1.0)
                module.bias.zero_()

    # -- forward -----------------------------------------------------------------------------------------
    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """The 2048-channel layer4 output at output stride 8."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return self.layer5(features[:, _BRANCH_CHANNELS:])

    def forward_all(self, x: torch.Tensor):
        """The reference's ``(instance_feat, part_feat_normalised, logits, None)``.

        SCOPS's file returns the part feature un-normalised and no 4th element; only the logits are ever used.
        """
        features = self.backbone(x)
        instance, part = features[:, :_BRANCH_CHANNELS], features[:, _BRANCH_CHANNELS:]
        return instance, F.normalize(part, dim=1), self.layer5(part), None

    # -- optimisation helpers ----------------------------------------------------------------------------
    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Trainable parameters of conv1, bn1, layer1-4, each once (the 1x learning-rate group)."""
        for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"):
            for param in getattr(self, name).parameters():
                if param.requires_grad:
                    yield param

    def classifier_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the classifier ``layer5`` (the 10x learning-rate group)."""
        yield from self.layer5.parameters()

    # -- official checkpoints ----------------------------------------------------------------------------
    @classmethod
    def load_official(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "PartSegmenter":
        """Load an official checkpoint strictly and return the model in ``eval()`` mode.

        Reads the unsup-parts format ``{'iter', 'model_state_dict', 'optimizer_state_dict'}`` or SCOPS's raw
        state dict, strips ``module.`` prefixes (DataParallel), infers ``num_outputs`` from the classifier
        weight and checks every key and shape; any mismatch raises one :class:`UserError` listing the missing,
        unexpected and shape-mismatched keys. The file is read with ``weights_only=True``.
        """
        state = read_state_dict(path, map_location=map_location)
        weight = state.get(_CLASSIFIER_KEY)
        if weight is None or weight.ndim != 4:
            raise UserError(
                f"checkpoint {path}: no classifier weight {_CLASSIFIER_KEY!r} (4-d) in the checkpoint, so it is not a "
                f"DeepLab 2-branch segmenter checkpoint; pass an unsup-parts model_*.pth or a SCOPS state dict"
            )
        model = cls.for_loading(int(weight.shape[0]))
        load_segmenter_state(model, state, source=str(path))
        return model.eval()


# -- checkpoint reading / checked loading (through benchmark.methods.weights) ---------------------------------
_TARGET = "the DeepLab ResNet-50 2-branch segmenter"
_FIX = "pass a checkpoint of this network (unsup-parts model_*.pth, a SCOPS state dict or a partbench model.pt)"


def read_state_dict(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a model state dict from either official format, ``module.`` prefixes stripped.

    One :class:`UserError` (naming the file and the fix) for a missing, truncated or non-tensor file.
    """
    state = _weights.read_state_dict(path, what="checkpoint", fix="pass a .pth file holding a state dict")
    if str(map_location) != "cpu":
        state = {k: v.to(map_location) for k, v in state.items()}
    return state


def _listing(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_segmenter_state(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
    """Load ``state`` into ``model`` with strict key and shape checking, one :class:`UserError` on mismatch.

    ``num_batches_tracked`` buffers absent from old (pre-PyTorch-0.4.1) checkpoints are not an error: the
    model keeps its own counter, as ``load_state_dict`` itself does for such files.
    """
    _weights.load_strict(model, _weights.strip_prefix(state), source=f"checkpoint {source}", target=_TARGET,
                         fix=_FIX, optional=lambda key: key.endswith("num_batches_tracked"))


# -- initialisation for training -------------------------------------------------------------------------------
@dataclass
class InitReport:
    """What :func:`init_segmenter` did: ``loaded`` model keys, ``not_initialised`` model keys left at the
    random init, ``unused`` keys of the source that matched nothing (with the reason)."""

    init: str
    loaded: list[str] = field(default_factory=list)
    not_initialised: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"init {self.init}: {len(self.loaded)} tensors loaded, "
                 f"{len(self.not_initialised)} left at random init, {len(self.unused)} source tensors unused"]
        if self.not_initialised:
            lines.append("  left at random init: " + _listing(self.not_initialised))
        if self.unused:
            lines.append("  unused from source: " + _listing(self.unused))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _copy_matching(model: nn.Module, source: Mapping[str, torch.Tensor], report: InitReport) -> None:
    """The reference rule: copy every tensor whose name *and* shape match; record the rest."""
    own = model.state_dict()
    with torch.no_grad():
        for key, tensor in own.items():
            src = source.get(key)
            if src is not None and src.shape == tensor.shape:
                tensor.copy_(src)
                report.loaded.append(key)
            elif not key.endswith("num_batches_tracked"):
                report.not_initialised.append(key)
    for key, src in source.items():
        if key not in own:
            report.unused.append(f"{key} (no such layer)")
        elif src.shape != own[key].shape:
            report.unused.append(f"{key} (shape {tuple(src.shape)} vs model {tuple(own[key].shape)})")


def _torchvision_state(weights_name: str) -> tuple[dict[str, torch.Tensor], Path]:
    """ImageNet ResNet-50 weights from the local torch hub cache only (never downloads)."""
    from torchvision.models import ResNet50_Weights

    try:
        weights = ResNet50_Weights[weights_name]
    except KeyError:
        raise UserError(f"unknown torchvision ResNet-50 weights {weights_name!r}; choose one of "
                        f"{[w.name for w in ResNet50_Weights]}") from None
    from benchmark.methods.pretrained import imagenet_weights  # the catalogue: where it is read, how to get it

    need = imagenet_weights("resnet50", "--init caffe:PATH (benchmark train) or -p init=caffe:PATH (benchmark run), "
                                        "or random", tag=weights.name)
    path = need.found()
    if path is None:
        raise UserError(f"{need.what} are not in the local torch hub cache ({need.paths[0]}): {need.fix}")
    return read_state_dict(path), path


def torchvision_key_map(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision ResNet-50 state dict onto :class:`PartSegmenter` names.

    The module names coincide (``conv1``, ``bn1``, ``layerX.Y.{conv,bn}{1,2,3}``, ``layerX.0.downsample.{0,1}``);
    only the ImageNet ``fc`` head has no counterpart and is dropped. Note that torchvision's ResNet-50 (v1.5)
    puts the stride on the 3x3 conv, this network on the first 1x1 conv: same shapes, slightly different
    features until fine-tuned.
    """
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _fold_input_normalisation(state: dict[str, torch.Tensor], mean_order: str) -> None:
    """Make torchvision weights (trained on ``(x01 - mean) / std``) accept the 0-255 mean-subtracted input.

    With ``x = 255 x01 - m`` the torchvision input is ``x / (255 std) + (m / 255 - mean) / std``: the scale is
    folded exactly into ``conv1.weight``; the constant offset, which conv1 turns into a per-channel constant away
    from the zero-padded border, is folded into ``bn1.running_mean`` (exact in eval mode except within 3 pixels
    of the border; in train mode BN removes it anyway).
    """
    imagenet_mean = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float64)
    imagenet_std = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float64)
    sub = torch.tensor(MEAN_ORDERS[mean_order], dtype=torch.float64)
    weight = state["conv1.weight"].double()
    offset = (sub / 255.0 - imagenet_mean) / imagenet_std
    folded = weight / (255.0 * imagenet_std).view(1, 3, 1, 1)
    shift = (weight.sum(dim=(2, 3)) * offset.view(1, 3)).sum(dim=1)
    state["conv1.weight"] = folded.to(state["conv1.weight"].dtype)
    if "bn1.running_mean" in state:
        state["bn1.running_mean"] = (state["bn1.running_mean"].double() - shift).to(state["bn1.running_mean"].dtype)


def init_segmenter(model: PartSegmenter, init: str, *, mean_order: str = "rgb_caffe_bgr_quirk",
                   fold_input_norm: bool = True, caffe_bgr_fix: bool = False) -> InitReport:
    """Initialise ``model``'s backbone for training; returns an :class:`InitReport` (print ``.summary()``).

    * ``"caffe:PATH"``: the DeepLab Caffe ResNet-50 (``resnet50-caffe-22edcc82.pth``) or any state dict of
      this network: tensors whose name and shape match are copied (the reference's rule, so ``layer5`` stays
      random); unlike the reference the skipped tensors are reported. No match at all is an error.
      The Caffe backbone was trained on BGR input minus the BGR means, while the reference feeds RGB (the
      quirk). ``caffe_bgr_fix=True`` reverses conv1's input channels, so that, together with
      ``caffe_input(..., mean_order="rgb")``, the backbone sees exactly what it was trained on.
    * ``"torchvision"`` or ``"torchvision:WEIGHTS"`` (default ``IMAGENET1K_V1``): ImageNet ResNet-50 weights
      from the local torch hub cache, mapped by :func:`torchvision_key_map`; with ``fold_input_norm`` (default)
      the ImageNet input normalisation is folded into conv1/bn1 for the given ``mean_order`` (see
      :func:`_fold_input_normalisation`).
    * ``"random"``: the reference random initialisation (tests only; record it).
    """
    report = InitReport(init=init)
    if init == "random":
        model.reset_parameters()
        report.not_initialised = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
        report.notes.append("random initialisation (tests only)")
        return report
    if init.startswith("caffe:"):
        path = init[len("caffe:"):]
        source = read_state_dict(path)
        # Older DeepLab conversions wrap the ResNet as ``Scale`` (keys ``Scale.conv1.weight``; AdvSemiSeg strips
        # the first component when loading). The reference copies by exact name only, so such a file would
        # silently load nothing there; here the wrapper is recognised and reported.
        if "conv1.weight" not in source and "Scale.conv1.weight" in source:
            source = {k[len("Scale."):] if k.startswith("Scale.") else k: v for k, v in source.items()}
            report.notes.append("stripped the 'Scale.' wrapper prefix of an old DeepLab conversion")
        if caffe_bgr_fix and "conv1.weight" in source:
            source = dict(source)
            source["conv1.weight"] = source["conv1.weight"].flip(1)
            report.notes.append("conv1 input channels reversed (BGR-trained Caffe weights on RGB input); "
                                "use mean_order='rgb'")
        _copy_matching(model, source, report)
        if not any(k.startswith(("conv1", "layer1", "layer4")) for k in report.loaded):
            raise UserError(f"{path}: no backbone tensor matches the DeepLab ResNet-50 by name and shape; "
                            f"pass resnet50-caffe-22edcc82.pth or another state dict of this network")
        return report
    if init == "torchvision" or init.startswith("torchvision:"):
        weights_name = init.partition(":")[2] or "IMAGENET1K_V1"
        state, path = _torchvision_state(weights_name)
        mapped = torchvision_key_map(state)
        if fold_input_norm:
            _fold_input_normalisation(mapped, mean_order)
            report.notes.append(f"ImageNet normalisation folded into conv1/bn1 for mean_order={mean_order}")
        report.notes.append(f"weights from {path}; torchvision puts the stride on conv2, this network on conv1")
        _copy_matching(model, mapped, report)
        report.unused += [f"{k} (ImageNet head, dropped)" for k in state if k not in mapped]
        return report
    raise UserError(f"unknown --init {init!r}; use caffe:PATH, torchvision[:WEIGHTS] or random")
