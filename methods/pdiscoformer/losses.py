"""PDiscoFormer's losses (the release's ``engine/losses`` and the step of its trainer), batched, no host syncs.

``maps`` are the network's ``(N, K + 1, h, w)`` assignment probabilities, background **last** (the release's
order; only :meth:`~.method.PDiscoFormer.predict` moves it to channel 0), ``features`` its ``(N, D, K + 1)``
part features.

* :func:`orthogonality_loss` -- the mean squared off-identity entry of the Gram matrix of the L2-normalised
  part features (background included), over the batch.
* :func:`equivariance_loss` -- ``1 -`` the mean cosine similarity of each foreground map with the map of the
  transformed image warped back (the release's inverse: translation, then rotation and ``1 / scale``, both with
  torchvision's default nearest interpolation, :mod:`.warp`; the translation rescaled from image to map pixels).
* :func:`presence_loss` -- ``1 -`` the mean over parts of the largest 3x3-averaged foreground activation in the
  batch (the "original" variant of PDiscoNet that the paper's command selects).
* :func:`enforced_presence_loss` -- binary cross-entropy pushing to 1 the largest 3x3-averaged background
  activation, weighted by the squared distance to the map's centre (normalised to 1 at the corners), per image:
  the background must be present at the image's border.
* :func:`total_variation_loss` -- the sum of absolute differences between vertically and horizontally adjacent
  map entries over all channels, divided by ``N * h * w``.
* :func:`pixel_entropy_loss` -- the mean over pixels of the entropy of the K + 1 assignment probabilities
  (``torch.distributions.Categorical``'s entropy: probabilities renormalised, logs of values clamped to
  ``[eps, 1 - eps]``).
* :func:`concentration_loss` -- the assignment-weighted squared distance of every pixel to its part's centroid
  (coordinates divided by the map size), mean over the foreground parts (weight 0 in the paper's recipe).
* :func:`classification_loss` -- cross-entropy of the image logits (the mean of the parts' scores).

:data:`PAPER_WEIGHTS` are the weights of the release's training command (``training_instructions.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The weights of the release's training command for CUB (training_instructions.md; the argument defaults of
# train_net.py for the terms the command does not set).
PAPER_WEIGHTS = {"classification": 1.0, "presence": 1.0, "equivariance": 1.0, "orthogonality": 1.0,
                 "total_variation": 1.0, "concentration": 0.0, "enforced_presence": 2.0, "pixel_entropy": 1.0}


def orthogonality_loss(features: Tensor) -> Tensor:
    normed = F.normalize(features, dim=1)  # (N, D, S): unit columns
    gram = normed.transpose(1, 2) @ normed  # (N, S, S)
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    return (gram - eye).square().mean()


def inverse_rigid_warp(maps: Tensor, *, angle: float, translate: tuple[float, float], scale: float) -> Tensor:
    """The release's undoing of ``affine(angle, translate, scale)`` on maps: shift by ``-translate``, then rotate
    by ``-angle`` with scale ``1 / scale`` about the centre (torchvision's ``affine``, nearest, zero fill; here
    batched without host synchronisation, :mod:`.warp`)."""
    from benchmark.methods.pdiscoformer.warp import rigid_affine

    shifted = rigid_affine(maps, angle=0.0, translate=(-translate[0], -translate[1]), scale=1.0)
    return rigid_affine(shifted, angle=-angle, translate=(0.0, 0.0), scale=1.0 / scale)


def equivariance_loss(maps: Tensor, equiv_maps: Tensor, *, image_width: int, angle: float,
                      translate: tuple[int, int], scale: float) -> Tensor:
    """``maps`` of the images and ``equiv_maps`` of the images transformed by ``affine(angle, translate, scale)``
    (``translate`` in image pixels, ``image_width`` the images' width)."""
    ratio = maps.shape[-1] / image_width
    back = inverse_rigid_warp(equiv_maps, angle=angle, translate=(translate[0] * ratio, translate[1] * ratio),
                              scale=scale)
    cos = F.cosine_similarity(maps[:, :-1].flatten(2), back[:, :-1].flatten(2), dim=-1)
    return 1 - cos.mean()


def presence_loss(maps: Tensor) -> Tensor:
    pooled = F.avg_pool2d(maps[:, :-1], 3, stride=1)  # foreground parts only
    best = pooled.flatten(2).amax(dim=2).amax(dim=0)  # (K,): each part's strongest 3x3 patch in the batch
    return 1 - best.mean()


def _border_weight(height: int, width: int, device, dtype) -> Tensor:
    """``(h, w)``: squared distance to the centre of coordinates spanning [-1, 1], divided by its maximum."""
    if height < 2 or width < 2:
        raise ValueError(f"the enforced presence loss needs 3x3-pooled maps of at least 2x2 entries (maps of at "
                         f"least 4x4), got {height}x{width}")
    rows = torch.arange(height, device=device, dtype=dtype)
    cols = torch.arange(width, device=device, dtype=dtype)
    rows = rows / rows.max() * 2 - 1
    cols = cols / cols.max() * 2 - 1
    weight = rows[:, None] ** 2 + cols[None, :] ** 2
    return weight / weight.max()


def enforced_presence_loss(maps: Tensor) -> Tensor:
    background = F.avg_pool2d(maps[:, -1:], 3, stride=1)[:, 0]  # (N, h - 2, w - 2)
    weighted = background * _border_weight(*background.shape[-2:], device=maps.device, dtype=maps.dtype)
    peak = weighted.flatten(1).amax(dim=1).float()
    return F.binary_cross_entropy(peak, torch.ones_like(peak))


def total_variation_loss(maps: Tensor) -> Tensor:
    n, _, h, w = maps.shape
    vertical = (maps[:, :, 1:] - maps[:, :, :-1]).abs().sum()
    horizontal = (maps[:, :, :, 1:] - maps[:, :, :, :-1]).abs().sum()
    return (vertical + horizontal) / (n * h * w)


def pixel_entropy_loss(maps: Tensor) -> Tensor:
    probs = maps / maps.sum(dim=1, keepdim=True)
    eps = torch.finfo(probs.dtype).eps
    return -(probs * probs.clamp(eps, 1 - eps).log()).sum(dim=1).mean()


def concentration_loss(maps: Tensor) -> Tensor:
    _, _, h, w = maps.shape
    rows = torch.arange(h, device=maps.device, dtype=maps.dtype)[:, None]  # the release's "x": the row index
    cols = torch.arange(w, device=maps.device, dtype=maps.dtype)[None, :]
    mass = maps.sum(dim=(2, 3)).detach()
    centre_r = (maps * rows).sum(dim=(2, 3)) / mass
    centre_c = (maps * cols).sum(dim=(2, 3)) / mass
    # the release divides the row offsets by the width and the column offsets by the height
    spread = ((centre_r[..., None, None] - rows) / w) ** 2 + ((centre_c[..., None, None] - cols) / h) ** 2
    return (spread * maps)[:, :-1].mean()


def classification_loss(scores: Tensor, targets: Tensor) -> Tensor:
    """``scores`` ``(N, classes, K)``, ``targets`` ``(N,)`` class indices."""
    return F.cross_entropy(scores.mean(dim=-1), targets)
