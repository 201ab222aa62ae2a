"""Reading PDiscoNet weights from a file (never from the network).

The release publishes no trained weights (its README lists none); what exists is what its ``main.py`` writes
after every epoch, ``./<dataset>/<model_name>.pt`` = ``torch.save(net.state_dict())``: a bare state dict in the
key layout of :mod:`.network`. Accepted files:

* that file (``module.`` prefixes of a DataParallel wrapper are stripped);
* a ``model.pt`` or training checkpoint written by partbench (``{"format", "model_state_dict", ...}``).

Files are read with ``torch.load(weights_only=True)`` (:func:`benchmark.methods.weights.read_state_dict`). The
tensors say which network it is: K (rows of ``fc_landmarks`` minus the background), the number of classes
(rows of ``fc_class_landmarks``) and the backbone (the blocks of ``layer1..layer4`` and their kind); every key
and shape is then checked against that network, strictly, and every difference is one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from benchmark.core.errors import UserError
from benchmark.methods.pdisconet.network import PDiscoNetNet, build_network
from benchmark.methods.weights import load_strict, read_state_dict

FIX = ("pass a file in the layout PDiscoNet's main.py saves (torch.save(net.state_dict())) or a model.pt / "
       "checkpoint written by partbench")
HEAD_KEYS = ("fc_landmarks.weight", "fc_class_landmarks.weight", "modulation", "layer1.0.conv1.weight")
#: torchvision's ResNets by (block kind, blocks per stage).
RESNET_LAYOUTS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
                  ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
                  ("bottleneck", (3, 8, 36, 3)): "resnet152"}
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


@dataclass(frozen=True)
class CheckpointShape:
    """What the tensors of a checkpoint say about its network."""

    num_parts: int
    num_classes: int
    backbone: str


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The state dict in ``path`` (see the module docstring); one :class:`UserError` for anything else."""
    return read_state_dict(Path(path).expanduser(), what="pdisconet checkpoint", fix=FIX,
                           unwrap=("model_state_dict",))


def checkpoint_shape(state: dict[str, Tensor], *, source: str) -> CheckpointShape:
    """K, classes and backbone read off the tensors (one :class:`UserError` when they do not say)."""
    missing = [key for key in HEAD_KEYS if key not in state]
    if missing:
        raise UserError(f"{source} is not a PDiscoNet checkpoint: it lacks {', '.join(missing)}; {FIX}")
    landmarks, classifier = state["fc_landmarks.weight"], state["fc_class_landmarks.weight"]
    if landmarks.ndim != 4 or classifier.ndim != 2 or landmarks.shape[0] < 2:
        raise UserError(f"{source} is not a PDiscoNet checkpoint: fc_landmarks.weight {tuple(landmarks.shape)}, "
                        f"fc_class_landmarks.weight {tuple(classifier.shape)}; {FIX}")
    blocks = [0, 0, 0, 0]
    for key in state:
        match = _BLOCK.match(key)
        if match:
            stage = int(match.group(1)) - 1
            blocks[stage] = max(blocks[stage], int(match.group(2)) + 1)
    kind = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    backbone = RESNET_LAYOUTS.get((kind, tuple(blocks)))
    if backbone is None:
        raise UserError(f"{source} holds a ResNet with {kind} blocks {tuple(blocks)} per stage, which is none of "
                        f"{', '.join(RESNET_LAYOUTS.values())}; {FIX}")
    return CheckpointShape(int(landmarks.shape[0]) - 1, int(classifier.shape[0]), backbone)


def load_network(path: str | Path, *, num_parts: int) -> PDiscoNetNet:
    """The network of a checkpoint file, every key and shape checked, in eval mode."""
    path = Path(path).expanduser()
    source = f"pdisconet checkpoint {path}"
    state = read_checkpoint(path)
    shape = checkpoint_shape(state, source=source)
    if shape.num_parts != int(num_parts):
        raise UserError(f"{source} predicts K={shape.num_parts} parts (plus background) but the run asks for "
                        f"K={num_parts}; pass --num-parts {shape.num_parts}")
    # Built without initialising (every tensor is then replaced by the file's, strictly).
    network = build_network(shape.backbone, shape.num_parts, shape.num_classes, device="meta").to_empty(device="cpu")
    load_strict(network, state, source=source,
                target=f"PDiscoNet on {shape.backbone} (K={shape.num_parts}, {shape.num_classes} classes)", fix=FIX)
    return network.eval()
