"""torchvision's tensor ``affine`` (rotation about the centre, scale, translation in pixels, zero fill), batched
and without host synchronisations: one ``affine_grid`` + ``grid_sample`` for a whole batch.

The release warps with ``torchvision.transforms.functional.affine``, which builds its matrix on the host and
copies it to the device on every call (a synchronising copy from pageable memory on CUDA). Here the matrix is
built from tensors on the images' device (:func:`affine_images`, per-image draws of the augmentation) or, for
one transform given as host floats (:func:`rigid_affine`, the equivariance transform of a step), on the host in
float64 and copied from pinned memory without waiting. ``tests/test_pdiscoformer_train.py`` checks both
against torchvision's ``affine`` on the same images (equal, nearest and bilinear).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def affine_theta(angle: Tensor, shift: Tensor, scale: Tensor, height: int, width: int) -> Tensor:
    """``(N, 2, 3)`` ``affine_grid`` matrices (output -> input, normalised coordinates) of "rotate by ``angle``
    degrees counter-clockwise and scale by ``scale`` about the centre, then shift by ``shift`` = (x, y)
    pixels", for ``(N,)`` angles and scales and ``(N, 2)`` shifts."""
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
    tx, ty = shift[:, 0] * (2.0 / width), shift[:, 1] * (2.0 / height)
    aspect = height / width
    # a counter-clockwise rotation on screen is clockwise in (x right, y down) coordinates
    row_x = torch.stack([cos, sin * aspect, -(cos * tx + sin * aspect * ty)], dim=1)
    row_y = torch.stack([-sin / aspect, cos, sin / aspect * tx - cos * ty], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def warp(images: Tensor, theta: Tensor, mode: str = "nearest") -> Tensor:
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def affine_images(images: Tensor, angle: Tensor, shift: Tensor, scale: Tensor, mode: str = "nearest") -> Tensor:
    """Each of ``(N, C, H, W)`` images under its own transform (tensors on the images' device)."""
    return warp(images, affine_theta(angle, shift, scale, images.shape[-2], images.shape[-1]), mode)


def rigid_affine(images: Tensor, *, angle: float, translate: tuple[float, float], scale: float,
                 mode: str = "nearest") -> Tensor:
    """Every image under the same transform given as host floats (``translate`` in pixels)."""
    theta = affine_theta(torch.tensor([float(angle)], dtype=torch.float64),
                         torch.tensor([[float(translate[0]), float(translate[1])]], dtype=torch.float64),
                         torch.tensor([float(scale)], dtype=torch.float64), images.shape[-2], images.shape[-1])
    theta = theta.to(images.dtype)
    if images.device.type == "cuda":
        theta = theta.pin_memory()  # an asynchronous copy: the host does not wait for the stream
    theta = theta.to(images.device, non_blocking=True).expand(images.shape[0], 2, 3)
    return warp(images, theta, mode)
