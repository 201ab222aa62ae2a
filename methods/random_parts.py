"""``random``: uniform random part maps -- the lower bound every method must beat."""

from __future__ import annotations

import torch

from benchmark.core.method import Method
from benchmark.core.plugin import Range
from benchmark.core.registry import register_method
from benchmark.core.seeding import derive_seed
from benchmark.core.types import Batch, PartMaps


@register_method("random")
class RandomParts(Method):
    """Uniform random part probabilities per pixel (the lower bound; NMI ~ 0)."""

    supervision = "none"
    param_ranges = {"resolution": Range(0, 4096)}

    def __init__(self, num_parts: int = 4, resolution: int = 0):
        self.num_parts = num_parts
        self.resolution = resolution  # 0 = one random draw per image pixel; r > 0 = r x r maps upsampled

    def fit(self, data=None, *, seed: int = 0, device: str = "cpu") -> "RandomParts":
        self.seed_ = int(seed)
        return self

    def predict(self, batch: Batch) -> PartMaps:
        seed = getattr(self, "seed_", 0)
        h, w = batch.size if self.resolution <= 0 else (self.resolution, self.resolution)
        maps = []
        # One generator per image keyed by its id: predictions do not depend on batching or order.
        for image_id in batch.ids:
            gen = torch.Generator().manual_seed(derive_seed(seed, "random", image_id))
            maps.append(torch.rand(self.num_parts, h, w, generator=gen))
        scores = torch.stack(maps).to(batch.device)
        scores = scores / scores.sum(dim=1, keepdim=True)
        return PartMaps(scores, image_size=batch.size, kind="probs", align_corners=False)
