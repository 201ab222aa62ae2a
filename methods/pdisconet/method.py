"""The registered ``pdisconet`` method: part maps of a PDiscoNet network (``docs/pdisconet.md``).

Prediction, as the release's part evaluation (``evaluate_cub.py``, ``evaluate_partimagenet.py``) does it:

* the batch's images go in as they come, RGB in ``[0, 1]`` **without** ImageNet normalisation (the release's
  transforms end in ``ToDtype(float32, scale=True)``, in training and in evaluation); the network is fully
  convolutional, so the view's size is the input size (the whole-image protocol hands over the short side
  resized and centre-cropped to ``image_size``, 448 px for CUB, as the release's test transform);
* the ``K + 1`` softmax maps on the stride-16 grid are returned as probabilities, the background moved from
  the release's last channel to the suite's channel 0; the harness upsamples them bilinearly
  (``align_corners=False``) before the argmax, as the release does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmark.core.cache import file_digest
from benchmark.core.errors import UserError
from benchmark.core.method import Method
from benchmark.core.registry import register_method
from benchmark.core.types import Batch, PartMaps
from benchmark.methods.pdiscoformer.method import background_first  # the same channel order in both releases
from benchmark.methods.pdisconet.checkpoint import load_network


@register_method("pdisconet")
class PDiscoNet(Method):
    """PDiscoNet (van der Klis et al., ICCV 2023): ResNet-101 + part head; evaluates trained checkpoints."""

    provides_background = True
    supervision = "class-labels"

    def __init__(self, num_parts: int = 4, checkpoint: str | None = None):
        self.num_parts = num_parts
        self.checkpoint = checkpoint

    @classmethod
    def demo_params(cls) -> dict[str, Any] | None:
        return None  # evaluates a checkpoint only (training is not implemented): nothing to demo without one

    def weights_id(self) -> str:
        if not self.checkpoint:
            return "none"
        path = Path(self.checkpoint).expanduser()
        return f"pdisconet:{file_digest(path) if path.is_file() else path}"

    def fit(self, data, *, seed: int = 0, device: str = "cpu") -> "PDiscoNet":
        if not self.checkpoint:
            raise UserError("pdisconet evaluates trained checkpoints only (its training is not implemented yet); "
                            "pass --checkpoint PATH (a state dict saved by PDiscoNet's main.py)")
        self.network_ = load_network(self.checkpoint, num_parts=int(self.num_parts)).to(device)
        return self

    @torch.no_grad()
    def predict(self, batch: Batch) -> PartMaps:
        network = getattr(self, "network_", None)
        if network is None:
            raise RuntimeError("pdisconet: call fit() first (it loads -p checkpoint=PATH)")
        if next(network.parameters()).device != batch.device:
            self.network_ = network = network.to(batch.device)
        maps = network(batch.images.float()).maps
        return PartMaps(background_first(maps).float(), image_size=batch.size, kind="probs", has_background=True)
