"""The PDiscoNet network (van der Klis, Semantically consistent part discovery for fine-grained recognition,
ICCV 2023; the release's ``IndividualLandmarkNet`` in ``nets.py`` of ``robertdvdk/part_detection``).

A torchvision ResNet (ResNet-101 in the paper) followed by a part head:

1. Features: the stem and ``layer1..layer4``; ``layer4``'s output (stride 32) is upsampled **bilinearly with
   ``align_corners=True``** (the release calls the deprecated ``upsample_bilinear``, which means that) to the
   grid of ``layer3`` (stride 16) and concatenated in front of it: ``x`` is ``(N, C4 + C3, h, w)``, 2048 + 1024
   = 3072 channels for the bottleneck ResNets (a 448 px input gives a 28 x 28 grid).
2. Part assignment: ``K + 1`` prototypes ``a_k`` (the rows of ``fc_landmarks``, a bias-free 1x1 convolution),
   the squared distances ``d_k = |x|^2 - 2 a_k.x + |a_k|^2`` at every position and ``softmax_k(-d_k)``
   (``Softmax2d``). The **last** channel is the background.
3. Part features: ``f_k = mean over positions of maps_k * x`` (``(N, D, K + 1)``, returned **unmodulated**:
   the orthogonality loss reads them so); the classifier reads ``f * modulation`` (a learned per-entry scale,
   initialised to 1).
4. Classification: ``Dropout1d`` over the ``K + 1`` part vectors (whole parts, training only) and one
   bias-free linear classifier shared by the parts: ``(N, classes, K + 1)`` scores, the background's included.
   The image's logits are the mean over the K foreground parts (what the release's loss and accuracy use).

``state_dict`` keys are the release's (``conv1``, ``bn1``, ``layer1..4``, ``batchnorm``, ``fc_landmarks``,
``fc_class_landmarks``, ``modulation``), so a file saved by the release's ``main.py``
(``torch.save(net.state_dict())``) loads key for key. ``batchnorm`` (``BatchNorm2d(11)``) is declared by the
release and never used in its forward; it is kept so that the keys match.

Deviation: the release hard-codes 1024 + 2048 feature channels (the bottleneck ResNets); here they are read
off the backbone, so smaller ResNets (``resnet18``, the ``tiny`` preset) work too. With a bottleneck ResNet
the network is the release's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.core.errors import UserError

DEFAULT_BACKBONE = "resnet101"
#: torchvision ResNets the network is built on (``-p backbone``).
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
#: The release's unused ``BatchNorm2d(11)`` (its parameters are in every saved state dict).
UNUSED_BATCHNORM_CHANNELS = 11


@dataclass
class PDiscoNetOutput:
    """What :meth:`PDiscoNetNet.forward` returns (the release's 3-tuple, named, plus the distances)."""

    features: Tensor  # (N, D, K + 1) part features, unmodulated (the release returns them so)
    maps: Tensor  # (N, K + 1, h, w) part assignment probabilities; channel K (the last) is the background
    scores: Tensor  # (N, classes, K + 1) class scores of every part, background included
    dist: Tensor  # (N, K + 1, h, w) squared distances of the features to the K + 1 prototypes

    @property
    def logits(self) -> Tensor:
        """(N, classes): the image's class logits, the mean of the K foreground parts' scores."""
        return self.scores[..., :-1].mean(dim=-1)


def check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise UserError(f"pdisconet backbone {backbone!r} is not one of {', '.join(BACKBONES)}; "
                        f"pass -p backbone={DEFAULT_BACKBONE} (the paper's)")


def build_resnet(backbone: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """torchvision's ``backbone`` without weights (they are loaded by the caller, never downloaded here)."""
    import torchvision

    check_backbone(backbone)
    with torch.device(device):
        return getattr(torchvision.models, backbone)(weights=None)


class PDiscoNetNet(nn.Module):
    """ResNet + part head + classifier (see the module docstring); the release's parameter names."""

    def __init__(self, resnet: nn.Module, num_parts: int, num_classes: int, *, part_dropout: float = 0.3):
        super().__init__()
        if int(num_parts) < 1 or int(num_classes) < 1:
            raise UserError(f"pdisconet needs K >= 1 parts and >= 1 classes, got K={num_parts}, "
                            f"{num_classes} classes")
        self.num_landmarks = self.num_parts = int(num_parts)
        self.num_classes = int(num_classes)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        # layer4's channels (the classifier's input) and layer3's (half of them in every torchvision ResNet)
        c4 = int(resnet.fc.in_features)
        self.feature_dim = c4 + c4 // 2
        slots = self.num_parts + 1
        self.batchnorm = nn.BatchNorm2d(UNUSED_BATCHNORM_CHANNELS)
        self.fc_landmarks = nn.Conv2d(self.feature_dim, slots, 1, bias=False)
        self.fc_class_landmarks = nn.Linear(self.feature_dim, self.num_classes, bias=False)
        self.modulation = nn.Parameter(torch.ones(1, self.feature_dim, slots))
        self.dropout_full_landmarks = nn.Dropout1d(float(part_dropout))

    def feature_map(self, images: Tensor) -> Tensor:
        """``(N, 3, H, W)`` -> ``(N, C4 + C3, H/16, W/16)``: layer4 upsampled onto layer3's grid, then layer3."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        l3 = self.layer3(self.layer2(self.layer1(x)))
        l4 = self.layer4(l3)
        l4 = F.interpolate(l4, size=l3.shape[-2:], mode="bilinear", align_corners=True)
        return torch.cat([l4, l3], dim=1)

    def distances(self, x: Tensor) -> Tensor:
        """``(N, K + 1, h, w)`` squared distances to the prototypes (the release's expansion, not clamped)."""
        proto = self.fc_landmarks.weight.flatten(1)  # (K + 1, D)
        cross = self.fc_landmarks(x)
        return x.pow(2).sum(1, keepdim=True) - 2 * cross + proto.pow(2).sum(1)[None, :, None, None]

    def forward(self, images: Tensor) -> PDiscoNetOutput:
        x = self.feature_map(images)
        dist = self.distances(x)
        maps = (-dist).softmax(dim=1)
        features = torch.einsum("nkhw,nchw->nck", maps, x) / (x.shape[-2] * x.shape[-1])  # mean over positions
        modulated = features * self.modulation
        parts = self.dropout_full_landmarks(modulated.transpose(1, 2))  # (N, K + 1, D): whole parts dropped
        scores = self.fc_class_landmarks(parts).transpose(1, 2)  # (N, classes, K + 1)
        return PDiscoNetOutput(features, maps, scores, dist)


def build_network(backbone: str, num_parts: int, num_classes: int, *, part_dropout: float = 0.3,
                  device: str | torch.device = "cpu") -> PDiscoNetNet:
    """The network on an unweighted torchvision ``backbone`` (random initialisation, torchvision's)."""
    resnet = build_resnet(backbone, device=device)
    with torch.device(device):
        return PDiscoNetNet(resnet, num_parts, num_classes, part_dropout=part_dropout)


def init_backbone(network: PDiscoNetNet, backbone: str, weights: str) -> str:
    """Load the ResNet part of ``network`` from ``weights`` (``imagenet``: torchvision's ``DEFAULT`` file of
    ``backbone`` from the torch hub cache, as the release's ``resnet101(weights=ResNet101_Weights.DEFAULT)``;
    a path: a torchvision-format state dict; ``random``: keep torchvision's initialisation). Every backbone
    key is checked; the ImageNet classifier ``fc`` is not used. Returns where the weights came from."""
    from benchmark.core.requirements import downloads_allowed
    from benchmark.methods import pretrained
    from benchmark.methods.weights import load_strict, read_state_dict

    if weights == "random":
        return "random"
    needed = pretrained.resnet_backbone(backbone, weights)
    need = needed[0]
    path = need.found()
    if path is not None:
        fix = "pass a torchvision-format ResNet state dict, or -p weights=imagenet|random"
        state = read_state_dict(path, what=f"{backbone} weights file", fix=fix, unwrap=())
        source = f"{backbone} weights file {path}"
    elif weights == "imagenet" and need.downloadable and downloads_allowed():
        import torchvision

        url = torchvision.models.get_model_weights(backbone).DEFAULT.url
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
        except Exception as exc:  # network errors come in many types; the fix is the same
            raise UserError(f"downloading {url} failed ({exc}); {need.fix}") from None
        source = f"downloaded {url}"
    else:
        raise UserError(need.missing() or f"{need.what} is missing: {need.fix}")
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    head = ("batchnorm.", "fc_landmarks.", "fc_class_landmarks.", "modulation")
    load_strict(network, state, source=source, target=f"torchvision's {backbone}",
                fix="pass a torchvision-format ResNet state dict of that architecture",
                optional=lambda key: key.startswith(head))
    return source
