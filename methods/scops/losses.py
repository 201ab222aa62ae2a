"""The five SCOPS training losses (docs/training.md, "SCOPS") as pure, vectorised functions.

All functions take *logits* or probabilities of shape ``(B, K+1, H, W)`` with channel 0 = background and
return a scalar tensor; nothing here has state or touches the optimiser. Coordinates are SCOPS's: pixel
column ``j`` of ``W`` maps to ``x = j/W*2-1`` and row ``i`` of ``H`` to ``y = i/H*2-1`` (so ``[-1, 1)``;
the reference builds the maps as if ``H == W``, which it always was at 256x256).

Reference quirks are named keyword switches whose default is the reference behaviour:

* ``concentration_loss(..., divide_by_batch_twice=True)``: the reference divides the summed variances by
  ``B`` twice; ``False`` gives the intended per-image mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CENTER_EPS = 1e-3  # added to every pixel of a part map before it is normalised into a spatial pdf
BASIS_NORM_EPS = 1e-6  # inside the square root of the row norm of the basis


def coordinate_maps(height: int, width: int, *, device=None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """``(x, y)`` maps of shape ``(H, W)``: ``x = col/W*2-1``, ``y = row/H*2-1``."""
    x = torch.arange(width, device=device, dtype=dtype) / width * 2 - 1
    y = torch.arange(height, device=device, dtype=dtype) / height * 2 - 1
    return x.expand(height, width), y[:, None].expand(height, width)


def part_pdf(part_probs: Tensor, eps: float = CENTER_EPS) -> Tensor:
    """``(B, K, H, W)`` part probabilities -> spatial pdfs ``(P + eps) / sum(P + eps)`` per image and part."""
    p = part_probs + eps
    return p / p.sum(dim=(-2, -1), keepdim=True)


def part_centers(part_probs: Tensor, eps: float = CENTER_EPS) -> Tensor:
    """``(B, K, 2)`` centres ``(x, y)`` of the spatial pdfs of ``(B, K, H, W)`` part maps (not detached)."""
    pdf = part_pdf(part_probs, eps)
    x, y = coordinate_maps(*pdf.shape[-2:], device=pdf.device, dtype=pdf.dtype)
    return torch.stack([(pdf * x).sum(dim=(-2, -1)), (pdf * y).sum(dim=(-2, -1))], dim=-1)


def concentration_loss(logits: Tensor, *, divide_by_batch_twice: bool = True) -> Tensor:
    """Geometric concentration: the summed spatial variance of every part pdf (channels 1..K of the
    softmax over K+1), divided by ``B`` (or ``B**2``, the reference's quirk)."""
    probs = logits.softmax(dim=1)[:, 1:]
    pdf = part_pdf(probs)
    x, y = coordinate_maps(*pdf.shape[-2:], device=pdf.device, dtype=pdf.dtype)
    cx = (pdf * x).sum(dim=(-2, -1), keepdim=True)
    cy = (pdf * y).sum(dim=(-2, -1), keepdim=True)
    variance = (pdf * ((x - cx) ** 2 + (y - cy) ** 2)).sum()
    batch = logits.shape[0]
    return variance / batch / batch if divide_by_batch_twice else variance / batch


def equivariance_kl_loss(logits_of_warped: Tensor, warped_logits: Tensor) -> Tensor:
    """``KLDivLoss()(log_softmax(logits_of_warped), softmax(warped_logits))`` with the default 'mean'
    reduction: the mean over *all* ``B*(K+1)*H*W`` elements of ``q (log q - log p)``, background
    included. ``warped_logits`` is ``T(logits)`` and should be detached by the caller (it is the target)."""
    log_p = F.log_softmax(logits_of_warped, dim=1)
    q = F.softmax(warped_logits, dim=1)
    # reduction="mean" spelled out: torch warns that its meaning of "mean" will change.
    return F.kl_div(log_p, q, reduction="sum") / q.numel()


def landmark_equivariance_loss(logits_of_warped: Tensor, warped_logits: Tensor) -> Tensor:
    """MSE (mean over ``B*K*2``) between the part centres of ``softmax(logits_of_warped)`` and those of
    ``softmax(T(logits))``; in the reference ``warped_logits`` is *not* detached (gradients flow into both)."""
    c_warped_input = part_centers(logits_of_warped.softmax(dim=1)[:, 1:])
    c_warped_output = part_centers(warped_logits.softmax(dim=1)[:, 1:])
    return F.mse_loss(c_warped_input, c_warped_output)


def part_basis(weight: Tensor) -> Tensor:
    """The non-negative part basis ``ReLU(W)`` used by the semantic-consistency loss, ``(K, C)``."""
    return F.relu(weight)


def semantic_consistency_loss(logits: Tensor, features: Tensor, basis: Tensor) -> Tensor:
    """Mean over all ``B*H*W*C`` entries of ``(sum_k P_k W_k - f)^2``: the part probabilities (channels
    1..K of the K+1 softmax) times the basis ``(K, C)`` must reconstruct the (masked) reference features
    ``(B, C, H, W)``, which are at the logits' resolution."""
    parts = logits.softmax(dim=1)[:, 1:]
    if parts.shape[-2:] != features.shape[-2:] or parts.shape[0] != features.shape[0]:
        raise ValueError(f"features {tuple(features.shape)} do not match part maps {tuple(parts.shape)}")
    recon = torch.einsum("bkhw,kc->bchw", parts, basis)
    return F.mse_loss(recon, features)


def orthonormality_loss(basis: Tensor) -> Tensor:
    """``||W^ W^T - I||_F^2`` (a sum) for the row-normalised basis ``W^ = W / sqrt(|W|^2 + 1e-6)``."""
    norm = (basis.pow(2).sum(dim=1, keepdim=True) + BASIS_NORM_EPS).sqrt()
    unit = basis / norm
    gram = unit @ unit.t()
    eye = torch.eye(basis.shape[0], device=basis.device, dtype=basis.dtype)
    return (gram - eye).pow(2).sum()
