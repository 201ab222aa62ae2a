"""Non-negative matrix factorisation by Lee-Seung multiplicative updates, in torch (the NMF of DFF).

``nmf(V, k) -> (W, H, history)`` factorises ``V (M, C) >= 0`` as ``W (M, k) @ H (k, C)`` minimising the
Frobenius norm, exactly as DFF's ``nmf.py`` does:

* init: ``scale = sqrt(mean(V) / k)``; ``W = |N(0, 1)| * scale`` then ``H = |N(0, 1)| * scale`` (drawn in
  that order from a generator seeded with ``seed`` on V's device, instead of DFF's global RNG);
* iteration: ``W <- W * (V H^T) / (W H H^T)``, then ``H <- H * (W^T V) / (W^T W H)`` with the updated W;
  a denominator entry that is exactly 0 is replaced by ``eps = 1e-7`` (no additive epsilon), so entries that
  reach 0 stay 0;
* stopping: after the updates of iteration ``n`` (0-based) with ``n % 10 == 0`` -- i.e. after 1, 11, 21, ...
  updates -- compute ``e = ||V - W H||_F`` and stop if ``(e_prev - e) / e_init < tol`` (``e_init`` at the
  initial factors; no check when ``tol <= 0``); at most ``max_iter`` iterations;
* ``H`` given: it stays fixed and only W is updated (projection of new rows onto known factors);
  ``W0``/``H0`` instead give initial factors that are both updated (used to test against scikit-learn).

Memory: the updates only form ``(M, k)`` and ``(k, C)`` products, so no temporary of V's size is ever made;
the residual norm is accumulated over row chunks of ``chunk_rows`` rows (default: ~64 MB of V per chunk),
so peak memory stays near the size of V (plus W) on CPU and GPU alike.

scikit-learn's ``NMF(solver="mu", beta_loss="frobenius")`` applies the same two updates in the same order
(its zero-denominator replacement is float32's eps, 1.2e-7, which only matters for exact zeros); it checks
convergence after 10, 20, ... updates instead of 1, 11, 21, ..., so with ``tol > 0`` the two stop at
different iterations although their factor trajectories are identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

EPS = 1e-7
CHECK_EVERY = 10


@dataclass
class NMFHistory:
    """What happened: ``errors`` are ``(updates done, ||V - WH||_F)`` pairs, starting with ``(0, e_init)``."""

    errors: list[tuple[int, float]] = field(default_factory=list)
    n_iter: int = 0  # updates performed
    converged: bool = False  # stopped by the tolerance rule (not by max_iter)
    trace: list[float] = field(default_factory=list)  # the error after every update (only with trace=True)


def residual_norm(V: Tensor, W: Tensor, H: Tensor, chunk_rows: int) -> float:
    """``||V - W H||_F`` accumulated over row chunks (no temporary of V's size), in float64."""
    total = torch.zeros((), dtype=torch.float64, device=V.device)
    for start in range(0, V.shape[0], chunk_rows):
        stop = start + chunk_rows
        diff = V[start:stop] - W[start:stop] @ H
        total += diff.pow(2).sum(dtype=torch.float64)
    return math.sqrt(float(total))


def _safe(denominator: Tensor, eps: float) -> Tensor:
    return torch.where(denominator == 0, torch.full_like(denominator, eps), denominator)


def nmf(V: Tensor, k: int, *, max_iter: int = 200, tol: float = 1e-4, seed: int = 0, H: Tensor | None = None,
        W0: Tensor | None = None, H0: Tensor | None = None, device: str | torch.device | None = None,
        chunk_rows: int | None = None, eps: float = EPS, trace: bool = False) -> tuple[Tensor, Tensor, NMFHistory]:
    """Factorise ``V ~ W @ H`` (see the module docstring). Returns ``(W, H, history)`` on ``device``
    (default: V's device), in V's floating dtype."""
    if V.ndim != 2:
        raise ValueError(f"nmf expects a 2-D matrix, got shape {tuple(V.shape)}")
    if k < 1:
        raise ValueError(f"nmf needs k >= 1, got {k}")
    device = torch.device(device) if device is not None else V.device
    dtype = V.dtype if V.is_floating_point() else torch.float32
    V = V.to(device, dtype)
    m, c = V.shape
    if chunk_rows is None:
        chunk_rows = max(1, (64 << 20) // max(1, c * V.element_size()))
    if bool((V < 0).any()):
        raise ValueError("nmf needs a non-negative matrix")

    fixed_H = H is not None
    scale = math.sqrt(float(V.mean(dtype=torch.float64)) / k)
    generator = torch.Generator(device=device).manual_seed(int(seed) & ((1 << 63) - 1))
    if W0 is not None:
        W = W0.to(device, dtype).clone()
    else:
        W = torch.randn(m, k, generator=generator, device=device, dtype=dtype).abs_().mul_(scale)
    if fixed_H:
        H = H.to(device, dtype).clone()
    elif H0 is not None:
        H = H0.to(device, dtype).clone()
    else:
        H = torch.randn(k, c, generator=generator, device=device, dtype=dtype).abs_().mul_(scale)
    if W.shape != (m, k) or H.shape != (k, c):
        raise ValueError(f"factor shapes {tuple(W.shape)}, {tuple(H.shape)} do not fit V {tuple(V.shape)} and k={k}")

    history = NMFHistory()
    error_init = residual_norm(V, W, H, chunk_rows)
    history.errors.append((0, error_init))
    previous = error_init
    VHt = HHt = None
    for n in range(max_iter):
        if VHt is None or not fixed_H:  # with H fixed these two products never change
            VHt = V @ H.T
            HHt = H @ H.T
        W.mul_(VHt / _safe(W @ HHt, eps))
        if not fixed_H:
            WtV = W.T @ V
            H.mul_(WtV / _safe((W.T @ W) @ H, eps))
        history.n_iter = n + 1
        if trace:
            history.trace.append(residual_norm(V, W, H, chunk_rows))
        if tol > 0 and n % CHECK_EVERY == 0:
            error = history.trace[-1] if trace else residual_norm(V, W, H, chunk_rows)
            history.errors.append((n + 1, error))
            if error_init == 0 or (previous - error) / error_init < tol:
                history.converged = True
                break
            previous = error
    return W, H, history
