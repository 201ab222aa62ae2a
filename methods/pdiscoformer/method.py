"""The registered ``pdiscoformer`` method: part maps of a PDiscoFormer checkpoint (``docs/pdiscoformer.md``).

This stage evaluates released (or otherwise trained) checkpoints; training is not implemented, so a run
without ``--checkpoint`` stops with one line instead of predicting with untrained weights.

Prediction, as the release's part evaluation (``evaluate_parts.py``) does it:

* the batch's images are resized (bilinear, anti-aliased) to the checkpoint's square input size when they
  have another size -- the whole-image protocol already hands over ``image_size`` x ``image_size`` views, so
  this is the identity there -- and fed **without** ImageNet normalisation (``normalize="none"``: the release's
  evaluation transforms are ``Resize, CenterCrop, ToTensor``; its training and classification transforms do
  normalise, which ``normalize="imagenet"`` selects);
* the network's ``K + 1`` softmax maps (plain softmax: the evaluation builds the network without Gumbel
  noise) are returned as probabilities on the patch grid, the background moved from the release's last
  channel to the suite's channel 0; the harness upsamples them bilinearly (``align_corners=False``) before
  the argmax, as the release does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.core.cache import file_digest
from benchmark.core.errors import UserError
from benchmark.core.method import Method
from benchmark.core.registry import register_method
from benchmark.core.types import Batch, PartMaps
from benchmark.methods.backbones import IMAGENET_MEAN, IMAGENET_STD
from benchmark.methods.pdiscoformer.checkpoint import checkpoint_shape, load_checkpoint, read_checkpoint
from benchmark.methods.pdiscoformer.network import DEFAULT_BACKBONE, PDiscoFormerNet, build_network

NORMALIZATIONS = ("none", "imagenet")


def background_first(maps: torch.Tensor) -> torch.Tensor:
    """``(N, K + 1, h, w)`` with the release's background (last channel) moved to channel 0."""
    return torch.cat([maps[:, -1:], maps[:, :-1]], dim=1)


def load_network(path: str | Path, *, num_parts: int, backbone: str = DEFAULT_BACKBONE,
                 image_size: int | None = None) -> PDiscoFormerNet:
    """The network of a checkpoint file, every key checked (see :mod:`.checkpoint`), in eval mode."""
    path = Path(path).expanduser()
    source = f"pdiscoformer checkpoint {path}"
    state = read_checkpoint(path)
    patch = int(state["patch_embed.proj.weight"].shape[-1]) if "patch_embed.proj.weight" in state else 0
    if patch < 1:
        raise UserError(f"{source} is not a PDiscoFormer checkpoint: it lacks patch_embed.proj.weight; pass a "
                        f"PDiscoFormer release file or a model.pt written by partbench")
    shape = checkpoint_shape(state, source=source, patch=patch)
    if shape.num_parts != int(num_parts):
        raise UserError(f"{source} predicts K={shape.num_parts} parts (plus background) but the run asks for "
                        f"K={num_parts}; pass --num-parts {shape.num_parts}")
    size = shape.grid[0] * patch
    if image_size not in (None, "", "none", "None") and int(image_size) != size:
        raise UserError(f"{source} was trained at {size} px (its position embeddings cover {shape.grid[0]}x"
                        f"{shape.grid[1]} patches of {patch} px) but -p image_size={image_size}; omit -p image_size")
    network = build_network(backbone, size, shape.num_parts, shape.num_classes, modulation=shape.modulation)
    load_checkpoint(network, state, source=source,
                    target=f"PDiscoFormer on {backbone} at {size} px (K={shape.num_parts}, "
                           f"{shape.num_classes} classes, {shape.modulation} modulation); pass -p backbone=<the "
                           f"checkpoint's timm ViT>")
    return network.eval()


@register_method("pdiscoformer")
class PDiscoFormer(Method):
    """PDiscoFormer (Aniraj et al., ECCV 2024): DINOv2-reg ViT-B + part head; evaluates released checkpoints."""

    provides_background = True
    supervision = "class-labels"

    def __init__(self, num_parts: int = 4, checkpoint: str | None = None, backbone: str = DEFAULT_BACKBONE,
                 image_size: int | None = None, normalize: str = "none"):
        self.num_parts = num_parts
        self.checkpoint = checkpoint
        self.backbone = backbone
        self.image_size = image_size
        self.normalize = normalize

    @classmethod
    def demo_params(cls) -> dict[str, Any] | None:
        return None  # evaluates a checkpoint only (training is not implemented): nothing to demo without one

    def weights_id(self) -> str:
        if not self.checkpoint:
            return "none"
        path = Path(self.checkpoint).expanduser()
        return f"pdiscoformer:{file_digest(path) if path.is_file() else path}"

    def fit(self, data, *, seed: int = 0, device: str = "cpu") -> "PDiscoFormer":
        if self.normalize not in NORMALIZATIONS:
            raise UserError(f"pdiscoformer normalize must be one of {', '.join(NORMALIZATIONS)}, got "
                            f"{self.normalize!r}")
        if not self.checkpoint:
            raise UserError("pdiscoformer evaluates trained checkpoints only (its training is not implemented "
                            "yet); pass --checkpoint PATH (a release <K>_parts_snapshot_best.pt or model.safetensors)")
        self.network_ = load_network(self.checkpoint, num_parts=int(self.num_parts), backbone=str(self.backbone),
                                     image_size=self.image_size).to(device)
        return self

    @torch.no_grad()
    def predict(self, batch: Batch) -> PartMaps:
        network = getattr(self, "network_", None)
        if network is None:
            raise RuntimeError("pdiscoformer: call fit() first (it loads -p checkpoint=PATH)")
        if next(network.parameters()).device != batch.device:
            self.network_ = network = network.to(batch.device)
        x = batch.images.float()
        if tuple(x.shape[-2:]) != network.image_size:
            x = F.interpolate(x, size=network.image_size, mode="bilinear", align_corners=False, antialias=True)
        if self.normalize == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        maps = network(x).maps
        return PartMaps(background_first(maps).float(), image_size=batch.size, kind="probs", has_background=True)
