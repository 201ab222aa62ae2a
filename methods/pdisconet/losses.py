"""PDiscoNet's losses (the release's ``train.py``/``lib.py``), batched, no host syncs.

``maps`` are the network's ``(N, K + 1, h, w)`` assignment probabilities, background **last** (the release's
order), ``features`` its unmodulated ``(N, D, K + 1)`` part features, ``scores`` its ``(N, classes, K + 1)``
part scores. PDiscoFormer took four of the five terms over from PDiscoNet unchanged; they are computed by
one function each, owned by :mod:`benchmark.methods.pdiscoformer.losses` and used here as they are:

* :func:`concentration_loss` -- the assignment-weighted squared distance of every position to its part's
  centroid (row offsets divided by the map's width, column offsets by its height, as the release), mean over
  the foreground parts;
* :func:`orthogonality_loss` -- the mean squared off-identity entry of the Gram matrix of the L2-normalised
  part features, background included (PDiscoNet reads the unmodulated features);
* :func:`equivariance_loss` -- ``1 -`` the mean cosine similarity of each foreground map with the map of the
  transformed image warped back (:func:`rigid_warp` forward, the inverse with nearest interpolation);
* :func:`classification_loss` -- cross-entropy of the image logits, the mean of the K foreground parts'
  scores (PDiscoNet scores the background too and leaves it out here).

PDiscoNet's own:

* :func:`presence_loss` -- ``1 -`` the mean over **all K + 1** maps of the batch's largest 3x3 average, on
  the maps **without their 2-position border** (PDiscoFormer's "original" variant drops the crop and the
  background).

:data:`PAPER_WEIGHTS` are the release's ``loss_hyperparams`` (``main.py``), the same for every dataset.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.methods.pdiscoformer.losses import (concentration_loss, equivariance_loss,  # noqa: F401
                                                   orthogonality_loss)
from benchmark.methods.pdiscoformer.losses import classification_loss as _mean_part_classification

PAPER_WEIGHTS = {"classification": 2.0, "presence": 1.0, "equivariance": 1.0, "concentration": 1000.0,
                 "orthogonality": 1.0}
#: The release's random transformation for the equivariance loss: angle in [-90, 90) degrees, a translation
#: of floor(U[-50, 50)) pixels on each axis, a scale in [0.8, 1.4).
ANGLE_RANGE, TRANSLATE_RANGE, SCALE_RANGE = (-90.0, 90.0), (-50.0, 50.0), (0.8, 1.4)
PRESENCE_BORDER = 2


def classification_loss(scores: Tensor, targets: Tensor) -> Tensor:
    """``scores`` ``(N, classes, K + 1)`` (background last, left out), ``targets`` ``(N,)`` class indices."""
    return _mean_part_classification(scores[..., :-1], targets)


def presence_loss(maps: Tensor) -> Tensor:
    b = PRESENCE_BORDER
    h, w = maps.shape[-2:]
    if h < 2 * b + 3 or w < 2 * b + 3:
        raise ValueError(f"the PDiscoNet presence loss needs maps of at least {2 * b + 3}x{2 * b + 3} (a 3x3 "
                         f"window inside a {b}-position border), got {h}x{w}")
    pooled = F.avg_pool2d(maps[:, :, b:-b, b:-b], 3, stride=1)
    best = pooled.flatten(2).amax(dim=2).amax(dim=0)  # (K + 1,): each map's strongest 3x3 patch in the batch
    return 1 - best.mean()


def random_rigid_transform(generator: torch.Generator) -> tuple[float, tuple[int, int], float]:
    """``(angle, (tx, ty), scale)`` drawn as the release draws them (one generator instead of NumPy's global
    stream; three uniforms: angle, the two translations, scale)."""
    u = torch.rand(4, generator=generator, device=generator.device).tolist()
    angle = ANGLE_RANGE[0] + u[0] * (ANGLE_RANGE[1] - ANGLE_RANGE[0])
    span = TRANSLATE_RANGE[1] - TRANSLATE_RANGE[0]
    translate = (int(math.floor(TRANSLATE_RANGE[0] + u[1] * span)), int(math.floor(TRANSLATE_RANGE[0] + u[2] * span)))
    scale = SCALE_RANGE[0] + u[3] * (SCALE_RANGE[1] - SCALE_RANGE[0])
    return angle, translate, scale


def rigid_warp(images: Tensor, *, angle: float, translate: tuple[int, int], scale: float) -> Tensor:
    """The release's forward transformation of the images: torchvision's ``affine`` (rotation about the
    centre, translation in pixels, scale, no shear) with bilinear interpolation and zero fill, computed by the
    shared batched warp (:mod:`benchmark.methods.pdiscoformer.warp`: no host synchronisation on a GPU)."""
    from benchmark.methods.pdiscoformer.warp import rigid_affine

    return rigid_affine(images, angle=float(angle), translate=(float(translate[0]), float(translate[1])),
                        scale=float(scale), mode="bilinear")
