"""Landmark regression from part centres (the protocols are described in docs/protocol.md).

Three named protocols (:data:`PROTOCOLS`); each fixes how part centres are computed from soft maps
(:func:`part_centres`), which units centres and landmarks are expressed in (:func:`normalise_points`),
and how the linear regression and its error are computed (:func:`regression_error`):

* ``mafl-iod`` (SCOPS ``face_evaluation_wild.py``): SCOPS ``Batch_Get_Centers`` centres in pixels; one
  joint regression from all 2K centre coordinates to all 2P landmark coordinates; error per image = mean
  over landmarks of L2 / inter-ocular distance (landmarks 0 and 1), mean over images.
* ``kanazawa-crop`` (unsup-parts ``Trainer.kp_evaluation``): centres with the mass clamped at one pixel,
  0-based pixel indices; centres and landmarks divided by the square crop side; one regression per
  keypoint on the images where it is visible; error = mean L2 over visible (image, keypoint) pairs.
* ``cub-bbox`` (the notebook's ``calc_center`` helpers): centres with 1-based pixel indices and a 1e-8
  denominator; centres and landmarks mapped into the GT bbox, ``((x - bx) / bw, (y - by) / bh)``; the
  same per-keypoint regression and error as ``kanazawa-crop``.
* ``whole-image-bbox`` (the "Kp" column of PDiscoNet / PDiscoFormer: PDiscoFormer's ``eval_kpr`` /
  ``create_centers`` and ``landmark_coordinates``, run by ``evaluate_parts.py --eval_mode keypoint``): the
  regression of ``--protocol whole-image`` on CUB-like datasets. Centres are taken on the maps as the model
  emits them (no upsampling): the K part probabilities (not renormalised), ``sum a * index / sum a`` with
  0-based row/column indices, scaled by ``H / h`` and ``W / w`` to input pixels. A part is *active* in an
  image when its probability exceeds 0.5 somewhere; after standardisation the centre coordinates of
  inactive parts are set to 0, on the fit and on the eval split. Centres and landmarks are mapped into the
  GT box of the view as ``cub-bbox``; the same per-keypoint regression and error.

Every regression is scikit-learn's ``StandardScaler`` on inputs and on targets followed by
``LinearRegression(fit_intercept=False)`` (which equals ordinary least squares with an intercept),
implemented here with numpy least squares (minimum-norm solution, as scipy's ``lstsq``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from benchmark.core.errors import UserError
from benchmark.core.protocol import DEFAULT_PROTOCOL
from benchmark.core.metric import Metric
from benchmark.core.registry import register_metric
from benchmark.core.types import Batch, PartMaps

__all__ = ["PROTOCOLS", "regression_error", "part_centres", "active_parts", "normalise_points", "LandmarkError"]

PROTOCOLS = ("mafl-iod", "kanazawa-crop", "cub-bbox", "whole-image-bbox")
#: PDiscoFormer's ``create_centers``: a part counts (its centre enters the regression) where its
#: probability exceeds this somewhere in the image
ACTIVE_PART_THRESHOLD = 0.5


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown landmark protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


# -- regression ---------------------------------------------------------------------------------------
def _scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of scikit-learn's ``StandardScaler().fit(x)`` (population std; near-constant
    columns get scale 1, detected with scikit-learn's rule). Like scikit-learn, a NaN (the centre of a part
    without any mass) is left out of its column's statistics."""
    if np.isnan(x).any():
        mean, var = np.nanmean(x, axis=0), np.nanvar(x, axis=0)
        n = (~np.isnan(x)).sum(axis=0)
    else:
        mean, var, n = x.mean(axis=0), x.var(axis=0), x.shape[0]
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant] = 1.0
    return mean, scale


def _fit_predict(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray,
                 fit_active: np.ndarray | None = None, eval_active: np.ndarray | None = None) -> np.ndarray:
    """Standardise inputs and targets on the fit set, no-intercept least squares, predict in original units.
    ``*_active``: bool like ``x_*``; standardised inputs where it is False are set to 0 before the fit and
    the prediction (``whole-image-bbox``: the coordinates of inactive parts)."""
    mx, sx = _scaler(x_fit)
    my, sy = _scaler(y_fit)
    design, query = (x_fit - mx) / sx, (x_eval - mx) / sx
    if fit_active is not None:
        design, query = np.where(fit_active, design, 0.0), np.where(eval_active, query, 0.0)
    coef, *_ = np.linalg.lstsq(design, (y_fit - my) / sy, rcond=None)
    return query @ coef * sy + my


def _as_f64(a: Any) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _as_visible(v: Any, shape: tuple[int, int]) -> np.ndarray:
    if v is None:
        return np.ones(shape, dtype=bool)
    if isinstance(v, Tensor):
        v = v.detach().cpu().numpy()
    v = np.asarray(v, dtype=bool)
    if v.shape != shape:
        raise ValueError(f"visibility has shape {v.shape}, expected {shape}")
    return v


def regression_error(fit_pred: Any, fit_gt: Any, eval_pred: Any, eval_gt: Any, *, protocol: str,
                     fit_visible: Any = None, eval_visible: Any = None, normalizer: Any = None,
                     fit_active: Any = None, eval_active: Any = None) -> float:
    """Landmark regression error of one protocol (module docstring), as a fraction.

    ``*_pred``: ``(N, K, 2)`` part centres; ``*_gt``: ``(N, P, 2)`` landmarks; ``*_visible``: ``(N, P)``
    bool (default: all visible); all already in the protocol's units (:func:`normalise_points`).
    ``*_active``: ``(N, K)`` bool, ``whole-image-bbox`` only (default: every part active): which parts are
    active (:func:`active_parts`); the standardised centre coordinates of the others are set to 0.
    ``normalizer``: ``mafl-iod``: ``(N_eval,)`` per-image normaliser replacing the inter-ocular distance;
    per-keypoint protocols: a scalar or ``(N_eval,)`` dividing each image's distances.
    """
    _check_protocol(protocol)
    fp, fg, ep, eg = (_as_f64(a) for a in (fit_pred, fit_gt, eval_pred, eval_gt))
    for name, a in (("fit_pred", fp), ("fit_gt", fg), ("eval_pred", ep), ("eval_gt", eg)):
        if a.ndim != 3 or a.shape[-1] != 2:
            raise ValueError(f"{name} must be (N, points, 2), got shape {a.shape}")
    if fp.shape[0] != fg.shape[0] or ep.shape[0] != eg.shape[0]:
        raise ValueError("part centres and landmarks must cover the same images")
    if fp.shape[1] != ep.shape[1] or fg.shape[1] != eg.shape[1]:
        raise ValueError("fit and eval sets must have the same number of parts and landmarks")
    n_fit, n_eval, n_kp = fp.shape[0], ep.shape[0], fg.shape[1]
    if n_fit == 0 or n_eval == 0:
        raise ValueError("landmark regression needs at least one fit image and one eval image")
    fv = _as_visible(fit_visible, (n_fit, n_kp))
    ev = _as_visible(eval_visible, (n_eval, n_kp))
    x_fit, x_eval = fp.reshape(n_fit, -1), ep.reshape(n_eval, -1)
    fa = ea = None
    if protocol == "whole-image-bbox":
        n_parts = fp.shape[1]
        # one flag per part, repeated for its two coordinates: the layout of x_fit / x_eval
        fa = np.repeat(_as_visible(fit_active, (n_fit, n_parts)), 2, axis=1)
        ea = np.repeat(_as_visible(eval_active, (n_eval, n_parts)), 2, axis=1)
    elif fit_active is not None or eval_active is not None:
        raise ValueError(f"active parts apply to whole-image-bbox only, not {protocol}")

    if protocol == "mafl-iod":
        if not (fv.all() and ev.all()):
            raise ValueError("mafl-iod needs every landmark visible in every image")
        pred = _fit_predict(x_fit, fg.reshape(n_fit, -1), x_eval).reshape(n_eval, n_kp, 2)
        if normalizer is None:
            norm = np.linalg.norm(eg[:, 0] - eg[:, 1], axis=-1)
        else:
            norm = _as_f64(normalizer).reshape(-1)
            if norm.shape != (n_eval,):
                raise ValueError(f"normalizer must have shape ({n_eval},), got {norm.shape}")
        bad = np.flatnonzero(~(norm > 0))
        if bad.size:
            raise ValueError(f"eval image {int(bad[0])}: inter-ocular normaliser is {norm[bad[0]]} (must be > 0); "
                             f"{bad.size} image(s) affected")
        per_image = (np.linalg.norm(pred - eg, axis=-1) / norm[:, None]).mean(axis=1)
        return float(per_image.mean())

    norm = np.ones(n_eval) if normalizer is None else np.broadcast_to(_as_f64(normalizer), (n_eval,))
    total, pairs = 0.0, 0
    for j in range(n_kp):  # one small regression per keypoint (P = 15): not a per-image loop
        rows_eval = ev[:, j]
        if not rows_eval.any():
            continue
        rows_fit = fv[:, j]
        if not rows_fit.any():
            raise ValueError(f"keypoint {j} is visible in the eval set but never in the fit set; "
                             "its regression cannot be fitted")
        pred = _fit_predict(x_fit[rows_fit], fg[rows_fit, j], x_eval[rows_eval],
                            None if fa is None else fa[rows_fit], None if ea is None else ea[rows_eval])
        dist = np.linalg.norm(pred - eg[rows_eval, j], axis=-1) / norm[rows_eval]
        total += float(dist.sum())
        pairs += int(rows_eval.sum())
    if pairs == 0:
        raise ValueError("no visible keypoint in the eval set")
    if not np.isfinite(total):
        # e.g. a part without any mass on the whole fit split yet active in an eval image: no number
        raise ValueError("the landmark regression gave a non-finite error (a part centre without mass)")
    return total / pairs


# -- part centres and units ------------------------------------------------------------------------
def _whole_image_probabilities(maps: PartMaps, masks: Tensor | None, size: tuple[int, int]) -> Tensor:
    """``whole-image-bbox``: the ``(N, K, h, w)`` float64 part probabilities centres and activity are read
    from: the maps as the model emits them (PDiscoFormer reads its centres before any upsampling), or, when
    the run's mask source gives masks (a method without its own background), the maps upsampled to the
    view with the protocol's ``align_corners`` and weighted by the masks -- the masks then play the role of
    the background channel."""
    if masks is None:
        return maps.part_probabilities().double()
    probs = maps.resized(size).part_probabilities().double()
    if tuple(masks.shape) != (probs.shape[0], *probs.shape[-2:]):
        raise ValueError(f"masks have shape {tuple(masks.shape)}, expected {(probs.shape[0], *probs.shape[-2:])}")
    return probs * masks.to(probs.device, torch.float64).unsqueeze(1)


def active_parts(maps: PartMaps, masks: Tensor | None = None, *, size: tuple[int, int] | None = None) -> Tensor:
    """``(N, K)`` bool, ``whole-image-bbox``: whether each part's probability exceeds
    :data:`ACTIVE_PART_THRESHOLD` somewhere in the image (PDiscoFormer's ``create_centers``)."""
    size = tuple(size or maps.image_size)
    return _whole_image_probabilities(maps, masks, size).amax(dim=(2, 3)) > ACTIVE_PART_THRESHOLD


def part_centres(maps: PartMaps, masks: Tensor | None = None, *, protocol: str,
                 size: tuple[int, int] | None = None) -> Tensor:
    """``(N, K, 2)`` float64 part centres ``(x, y)`` from soft part maps, per the protocol.

    The maps are resized to ``size`` (default: the masks' size, else ``maps.image_size``) with the method's
    ``align_corners``; part probabilities are softmax over the K parts, or channels 1..K of the (K+1)-way
    softmax for background methods; when ``masks`` ``(N, H, W)`` are given they weight the probabilities.

    * ``kanazawa-crop``: ``sum a * (col, row) / max(sum a, 1)``, 0-based pixel indices;
    * ``cub-bbox``: ``sum a * (col, row) / (sum a + 1e-8)``, 1-based pixel indices;
    * ``mafl-iod``: SCOPS ``Batch_Get_Centers``: coordinates ``col / W * 2 - 1``, ``sum p x / sum p``,
      mapped back to pixels as ``(x + 1) / 2 * W``;
    * ``whole-image-bbox``: on the maps as emitted (``h x w``, not resized; with ``masks``: resized and
      weighted, see :func:`_whole_image_probabilities`), ``sum a * (col, row) / sum a`` with 0-based
      indices, times ``(W / w, H / h)`` for the view ``size``; a part without mass gets NaN, as the reference
      (its centre only enters where the part is active, which needs mass).
    """
    _check_protocol(protocol)
    if size is None:
        size = tuple(masks.shape[-2:]) if masks is not None else tuple(maps.image_size)
    if protocol == "whole-image-bbox":
        probs = _whole_image_probabilities(maps, masks, tuple(size))
        h, w = probs.shape[-2:]
        mass = probs.sum(dim=(2, 3))
        cols = torch.arange(w, dtype=torch.float64, device=probs.device)
        rows = torch.arange(h, dtype=torch.float64, device=probs.device)
        x = (probs.sum(dim=2) * cols).sum(-1) / mass * (size[1] / w)
        y = (probs.sum(dim=3) * rows).sum(-1) / mass * (size[0] / h)
        return torch.stack([x, y], dim=-1)
    maps = maps.resized(size)
    probs = maps.part_probabilities().double()
    h, w = probs.shape[-2:]
    if masks is not None:
        if tuple(masks.shape) != (probs.shape[0], h, w):
            raise ValueError(f"masks have shape {tuple(masks.shape)}, expected {(probs.shape[0], h, w)}")
        probs = probs * masks.to(probs.device, torch.float64).unsqueeze(1)
    mass = probs.sum(dim=(2, 3))
    along_x = probs.sum(dim=2)  # (N, K, W): mass of every column
    along_y = probs.sum(dim=3)  # (N, K, H): mass of every row
    cols = torch.arange(w, dtype=torch.float64, device=probs.device)
    rows = torch.arange(h, dtype=torch.float64, device=probs.device)
    if protocol == "kanazawa-crop":
        denom = mass.clamp_min(1.0)  # parts with < 1 pixel of mass shrink towards (0, 0), as the trainer
        x, y = (along_x * cols).sum(-1) / denom, (along_y * rows).sum(-1) / denom
    elif protocol == "cub-bbox":
        denom = mass + 1e-8
        x, y = (along_x * (cols + 1)).sum(-1) / denom, (along_y * (rows + 1)).sum(-1) / denom
    else:
        gx, gy = cols / w * 2 - 1, rows / h * 2 - 1
        x = ((along_x * gx).sum(-1) / mass + 1) / 2 * w
        y = ((along_y * gy).sum(-1) / mass + 1) / 2 * h
    return torch.stack([x, y], dim=-1)


def normalise_points(points: Any, protocol: str, *, image_size: tuple[int, int], bboxes: Any = None) -> Any:
    """Express ``(N, P, 2)`` pixel points ``(x, y)`` in the protocol's units: ``kanazawa-crop`` divides by
    the square crop side, ``cub-bbox`` and ``whole-image-bbox`` map into the GT bbox ``(x0, y0, w, h)``
    (``bboxes`` ``(N, 4)``), ``mafl-iod`` keeps pixels. Works on tensors and numpy arrays alike."""
    _check_protocol(protocol)
    if protocol == "mafl-iod":
        return points
    if protocol == "kanazawa-crop":
        h, w = image_size
        if h != w:
            raise ValueError(f"kanazawa-crop expects square crops, got image size {(h, w)}")
        return points / w
    if bboxes is None:
        raise UserError(f"the {protocol} landmark protocol needs object bounding boxes in the dataset's samples")
    if isinstance(points, Tensor):
        bboxes = torch.as_tensor(bboxes, device=points.device).to(points.dtype)
    else:
        bboxes = np.asarray(bboxes, dtype=np.float64)
    origin, extent = bboxes[:, None, 0:2], bboxes[:, None, 2:4]
    return (points - origin) / extent


# -- the registered metric ------------------------------------------------------------------------------
@register_metric("landmark_error")
class LandmarkError(Metric):
    """Landmark regression error from part centres (fraction of the protocol's normaliser; lower is better)."""

    kind = "landmarks"
    role = "landmarks"
    higher_is_better = False
    value_range = (0.0, float("inf"))

    def __init__(self, protocol: str = DEFAULT_PROTOCOL, ground_truth: str = "keypoints", **options: Any):
        landmark_protocol = options.get("landmark_protocol")
        if landmark_protocol is None:
            raise UserError(f"landmark_error needs landmark_protocol= (one of {', '.join(PROTOCOLS)})")
        _check_protocol(landmark_protocol)
        self.landmark_protocol = landmark_protocol
        super().__init__(protocol, ground_truth, **options)

    def reset(self) -> None:
        self._parts: dict[str, dict[str, list[np.ndarray]]] = {
            split: {"pred": [], "gt": [], "visible": [], "active": []} for split in ("fit", "eval")}

    def update(self, target: Batch, prediction: PartMaps, *, split: str = "eval") -> None:
        """``target``: the batch (keypoints, visibility, boxes, masks); ``prediction``: its part maps;
        ``split``: ``"fit"`` (the regression's fitting split) or ``"eval"``."""
        batch, maps = target, prediction
        if split not in self._parts:
            raise ValueError(f"split must be 'fit' or 'eval', got {split!r}")
        if batch.keypoints is None or batch.visible is None:
            raise UserError("landmark_error needs keypoints in the dataset's samples")
        lp = self.landmark_protocol
        centres = part_centres(maps, batch.masks, protocol=lp, size=batch.size)
        pred = normalise_points(centres, lp, image_size=batch.size, bboxes=batch.bboxes)
        gt = normalise_points(batch.keypoints.double(), lp, image_size=batch.size, bboxes=batch.bboxes)
        store = self._parts[split]
        store["pred"].append(pred.detach().cpu().numpy().astype(np.float64))
        store["gt"].append(gt.detach().cpu().numpy().astype(np.float64))
        store["visible"].append(batch.visible.detach().cpu().numpy().astype(bool))
        if lp == "whole-image-bbox":
            store["active"].append(active_parts(maps, batch.masks, size=batch.size).cpu().numpy())

    def _arrays(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        store = self._parts[split]
        if not store["pred"]:
            what = "fit the regression on (its fitting split has no images)" if split == "fit" else "evaluate"
            raise ValueError(f"the landmark regression has no images to {what}")
        return tuple(np.concatenate(store[k]) for k in ("pred", "gt", "visible"))  # type: ignore[return-value]

    def compute(self) -> float:
        fp, fg, fv = self._arrays("fit")
        ep, eg, ev = self._arrays("eval")
        active = {}
        if self.landmark_protocol == "whole-image-bbox":
            active = {"fit_active": np.concatenate(self._parts["fit"]["active"]),
                      "eval_active": np.concatenate(self._parts["eval"]["active"])}
        return regression_error(fp, fg, ep, eg, protocol=self.landmark_protocol, fit_visible=fv, eval_visible=ev,
                                **active)

    def merge(self, other: "Metric") -> None:
        if not isinstance(other, LandmarkError) or other.landmark_protocol != self.landmark_protocol:
            raise ValueError("can only merge landmark_error metrics of the same landmark protocol")
        for split, store in other._parts.items():
            for key, values in store.items():
                self._parts[split][key].extend(values)

    @property
    def count(self) -> int:
        visible = self._parts["eval"]["visible"]
        if not visible:
            return 0
        v = np.concatenate(visible)
        return int(v.size) if self.landmark_protocol == "mafl-iod" else int(v.sum())
