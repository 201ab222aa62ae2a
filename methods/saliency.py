"""Training-free foreground masks for the unsupervised setting (``--masks unsupervised:NAME``).

The paper's fully unsupervised CUB setting takes its masks from a GAN-based unsupervised segmentation
method. partbench does not reimplement that; it offers a simpler, training-free source instead, named for
what it is:

``spectral`` -- a two-way *spectral partition* (normalised cut) of the image's own backbone features with a
centre prior. Per image: VGG19 ``relu4_4`` features of the whole image resized to ``input_size`` (the
frozen ImageNet network of ``ours``'s reference features; ``weights="random"`` for tests), L2-normalised
per location; the affinity of two locations is their cosine similarity clipped at 0 (plus a small constant
so the graph is connected); the Fiedler vector of the symmetric normalised Laplacian splits the locations
in two at 0; the side whose locations are closer to the image centre (weighted by an isotropic Gaussian of
standard deviation ``centre_sigma`` x the image side) is the foreground. Batched on the device
(``torch.linalg.eigh`` over the batch), no per-image Python loop.

Its IoU against the synthetic data's GT masks is measured by ``tests/test_masks.py`` and recorded in
``docs/training.md``; with random VGG weights (the only ones available offline) it is a weak source.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.core.cache import content_key
from benchmark.core.errors import UserError


class SpectralSaliency:
    """Two-way spectral partition of backbone features with a centre prior (see the module docstring)."""

    def __init__(self, input_size: int = 224, layer: str = "relu4_4", weights: str = "imagenet",
                 centre_sigma: float = 0.25):
        self.input_size = int(input_size)
        self.layer = layer
        self.weights = weights
        self.centre_sigma = float(centre_sigma)
        self._vgg = None
        self._device = torch.device("cpu")

    def weights_needed(self):
        """The VGG19 file these masks read (:meth:`benchmark.core.method.Method.weights_needed`'s counterpart)."""
        from benchmark.methods.pretrained import vgg_backbone

        return vgg_backbone("vgg19", self.weights, "weights")

    @property
    def identity(self) -> str:
        return "spectral:" + content_key({"input_size": self.input_size, "layer": self.layer,
                                          "weights": self.weights, "centre_sigma": self.centre_sigma}, length=12)

    def to(self, device) -> "SpectralSaliency":
        self._device = torch.device(device)
        if self._vgg is not None:
            self._vgg = self._vgg.to(self._device)
        return self

    def _features(self, images01: Tensor) -> Tensor:
        if self._vgg is None:
            import warnings

            from benchmark.methods.backbones import RandomWeightsWarning, VGGFeatures

            with warnings.catch_warnings():
                if self.weights == "random":
                    warnings.simplefilter("ignore", RandomWeightsWarning)
                self._vgg = VGGFeatures("vgg19", weights=self.weights, layers=(self.layer,)).to(self._device).eval()
        return self._vgg(images01)[self.layer]

    @torch.inference_mode()
    def coarse(self, images01: Tensor) -> Tensor:
        """(B, 1, h, w): the oriented Fiedler vector, > 0 on the foreground side."""
        features = self._features(images01.float()).float()
        b, c, h, w = features.shape
        x = F.normalize(features.flatten(2).transpose(1, 2), dim=2)  # (B, N, C)
        affinity = (x @ x.transpose(1, 2)).clamp_(min=0) + 1e-3
        degree = affinity.sum(dim=2)
        scale = degree.rsqrt()
        laplacian = torch.eye(h * w, device=x.device) - scale[:, :, None] * affinity * scale[:, None, :]
        _, vectors = torch.linalg.eigh(laplacian.double())
        fiedler = (vectors[:, :, 1] * scale.double()).float()  # the normalised-cut relaxation's indicator
        ys = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) / h - 0.5
        xs = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) / w - 0.5
        prior = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * self.centre_sigma ** 2)).flatten()
        side = fiedler > 0
        # Mean prior on each side: the side nearer the centre is the foreground.
        inside = (prior * side).sum(1) / side.sum(1).clamp(min=1)
        outside = (prior * ~side).sum(1) / (~side).sum(1).clamp(min=1)
        sign = torch.where(inside >= outside, 1.0, -1.0)
        return (fiedler * sign[:, None]).view(b, 1, h, w)

    @staticmethod
    def upsample(coarse: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[:, 0] > 0


#: name -> (factory, one-line description) of the training-free sources (``--masks unsupervised:NAME``)
UNSUPERVISED: dict[str, tuple[Any, str]] = {
    "spectral": (lambda: SpectralSaliency(),
                 "two-way spectral partition of VGG19 relu4_4 features, centre prior picks the foreground "
                 "(ImageNet weights)"),
    "spectral-random": (lambda: SpectralSaliency(weights="random"),
                        "the same with random VGG weights (offline tests only; weak)"),
}


def unsupervised_source(name: str) -> SpectralSaliency:
    if name not in UNSUPERVISED:
        raise UserError(f"unknown unsupervised mask source {name!r}; known: {', '.join(sorted(UNSUPERVISED))}")
    return UNSUPERVISED[name][0]()
