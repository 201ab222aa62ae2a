"""The random warp T of the equivariance loss (the reference's ``RandTPS`` in ``affine`` mode;
docs/training.md).

Per image b: source control points ``s_i = A_b (c_i + eps_i) + t_b`` on a 5x5 lattice c_i over [-1, 1]^2, with
``A_b = rho_b R(alpha_b)``, ``alpha_b ~ U(-60, 60)`` degrees, ``rho_b ~ U(1/scale_high, 1/scale_low)`` =
U(1/2.0, 1/0.7) (the scale is inverted because the map goes from output to input coordinates; the apparent
object scale after warping is in [0.7, 2.0]), ``t_b ~ U(-0.1, 0.1)^2`` in normalised units, ``eps_i ~
U(-sigma, sigma)^2`` with sigma = 0.01. A thin-plate spline f with ``f(c_i) = s_i`` (radial basis
``U(r) = r^2 log r = 1/2 r^2 log r^2``, 0 log 0 = 0, plus an affine part) is solved exactly from the
(N+3)x(N+3) system and evaluated at every output pixel p, with the ``align_corners=True`` convention
(column j -> 2j/(W-1) - 1); the warped tensor is ``grid_sample(x, f(p), bilinear, zeros, align_corners=True)``.

Everything is batched on the device and drawn from a ``torch.Generator`` on that device, without host syncs.
The reference drew the similarity parameters with numpy's global RNG and the jitter with torch's CPU RNG;
the distributions are the same, the random streams are not (stream parity is not a goal).

For ``torch.compile``: draw with :func:`sample_source_points` outside the compiled region (dynamo cannot trace
explicit generators) and call :func:`tps_grid` / :func:`apply` inside it; :func:`random_warp_grid` does both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "WarpParams",
    "PAPER_WARP",
    "control_lattice",
    "sample_source_points",
    "tps_kernel",
    "tps_solve",
    "tps_transform",
    "pixel_coordinates",
    "tps_grid",
    "random_warp_grid",
    "apply",
]


@dataclass(frozen=True)
class WarpParams:
    """Parameters of the random warp; the defaults are the paper preset (config.yaml of the reference)."""

    rotation_deg: float = 60.0       # alpha ~ U(-rotation, rotation)
    scale_low: float = 0.7           # random_scale_low: rho ~ U(1/scale_high, 1/scale_low)
    scale_high: float = 2.0          # random_scale_high
    translation: float = 0.1         # t ~ U(-translation, translation)^2, normalised [-1, 1] units
    sigma: float = 0.01              # tps_sigma: control-point jitter U(-sigma, sigma)^2
    lattice: int = 5                 # lattice x lattice control points
    random_mirror: bool = False      # eqv_random_mirror (off in the paper); per image here, per batch there


PAPER_WARP = WarpParams()


def control_lattice(n: int = 5, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The n*n target control points on a regular lattice over [-1, 1]^2, shape (n*n, 2) as (x, y)."""
    axis = torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1)


def sample_source_points(batch: int, params: WarpParams = PAPER_WARP, *, generator: torch.Generator | None = None,
                         device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one warp per image: returns ``(targets (N, 2), sources (B, N, 2))`` with
    ``sources = rho R(alpha) (targets + eps) + t`` (optionally x-mirrored)."""
    if generator is not None and device is None:
        device = generator.device
    targets = control_lattice(params.lattice, device=device, dtype=dtype)
    n = targets.shape[0]
    u = torch.rand(batch, 5, generator=generator, device=device, dtype=dtype)
    alpha = (2 * u[:, 0] - 1) * math.radians(params.rotation_deg)
    rho_lo, rho_hi = 1.0 / params.scale_high, 1.0 / params.scale_low
    rho = rho_lo + (rho_hi - rho_lo) * u[:, 1]
    t = (2 * u[:, 2:4] - 1) * params.translation                          # (B, 2)
    eps = (2 * torch.rand(batch, n, 2, generator=generator, device=device, dtype=dtype) - 1) * params.sigma
    cos, sin = rho * torch.cos(alpha), rho * torch.sin(alpha)
    a = torch.stack([torch.stack([cos, -sin], dim=1), torch.stack([sin, cos], dim=1)], dim=1)  # (B, 2, 2)
    sources = torch.einsum("bij,bnj->bni", a, targets + eps) + t[:, None, :]
    if params.random_mirror:
        flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0).to(dtype)
        sources = torch.stack([sources[..., 0] * flip[:, None], sources[..., 1]], dim=-1)
    return targets, sources


def tps_kernel(points: torch.Tensor, controls: torch.Tensor) -> torch.Tensor:
    """``U = 1/2 r^2 log r^2`` between (..., P, 2) points and (..., N, 2) controls -> (..., P, N); 0 log 0 = 0."""
    d2 = (points.unsqueeze(-2) - controls.unsqueeze(-3)).square().sum(-1)
    return 0.5 * torch.xlogy(d2, d2)


def tps_solve(targets: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Coefficients of the thin-plate spline f with ``f(targets_i) = sources_i``, shape (B, N+3, 2).

    Solves ``[[U, 1, P], [1^T, 0, 0], [P^T, 0, 0]] W = [S; 0]`` (N radial weights, then the constant and the
    x, y coefficients of the affine part), batched, in float64, with ``linalg.solve_ex`` (no error check, hence
    no host sync; the lattice system is well conditioned). ``targets`` is (N, 2) or (B, N, 2).
    """
    b, n, _ = sources.shape
    t = targets.to(torch.float64).expand(b, n, 2)
    system = torch.zeros(b, n + 3, n + 3, dtype=torch.float64, device=sources.device)
    system[:, :n, :n] = tps_kernel(t, t)
    system[:, :n, n] = 1.0
    system[:, n, :n] = 1.0
    system[:, :n, n + 1:] = t
    system[:, n + 1:, :n] = t.transpose(1, 2)
    rhs = torch.zeros(b, n + 3, 2, dtype=torch.float64, device=sources.device)
    rhs[:, :n] = sources.to(torch.float64)
    coeffs, _info = torch.linalg.solve_ex(system, rhs, check_errors=False)
    return coeffs


def tps_transform(coeffs: torch.Tensor, targets: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Evaluate the spline at (P, 2) or (B, P, 2) points -> (B, P, 2) (computed in float64)."""
    t = targets.to(torch.float64)
    p = points.to(torch.float64)
    # With shared controls and points (the random warp) the basis is built once, (P, N+3), and broadcast.
    kernel = tps_kernel(p, t)                                                       # ([B,] P, N)
    p = p.expand(*kernel.shape[:-1], 2)
    basis = torch.cat([kernel, torch.ones_like(p[..., :1]), p], dim=-1)              # ([B,] P, N+3)
    return basis @ coeffs


def pixel_coordinates(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised (x, y) of every output pixel, align_corners=True convention, shape (H*W, 2), row-major."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1)


def tps_grid(targets: torch.Tensor, sources: torch.Tensor, height: int, width: int,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``grid_sample`` grid (B, H, W, 2) of the spline mapping ``targets`` -> ``sources``."""
    coeffs = tps_solve(targets, sources)
    pixels = pixel_coordinates(height, width, device=sources.device, dtype=torch.float64)
    grid = tps_transform(coeffs, targets, pixels)
    return grid.view(sources.shape[0], height, width, 2).to(dtype)


def random_warp_grid(batch: int, height: int, width: int, params: WarpParams = PAPER_WARP, *,
                     generator: torch.Generator | None = None, device=None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One random warp per image as a (B, H, W, 2) sampling grid for :func:`apply`."""
    targets, sources = sample_source_points(batch, params, generator=generator, device=device, dtype=torch.float64)
    return tps_grid(targets, sources, height, width, dtype=dtype)


def apply(x: torch.Tensor, grid: torch.Tensor, *, padding_mode: str = "zeros", mode: str = "bilinear") -> torch.Tensor:
    """Warp a (B, C, H, W) tensor: ``grid_sample`` bilinear, zero padding, ``align_corners=True``.

    Used on the jittered image (zeros = the mean colour after mean subtraction), the mask and the detached
    logits alike. ``padding_mode="border"`` is the reference's ``eqv_border_padding`` switch (off).
    """
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode=padding_mode, align_corners=True)
