"""The random TPS warp of the equivariance loss against an independent numpy thin-plate spline."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.methods.ours.warp import (
    PAPER_WARP,
    WarpParams,
    apply,
    control_lattice,
    random_warp_grid,
    sample_source_points,
    tps_grid,
    tps_solve,
    tps_transform,
)


def numpy_tps_grid(ctrl: np.ndarray, src: np.ndarray, h: int, w: int) -> np.ndarray:
    """Textbook TPS (Bookstein): phi(r) = r^2 log r, f(p) = a0 + a1 x + a2 y + sum_i w_i phi(|p - c_i|)."""
    n = len(ctrl)

    def phi(r):
        with np.errstate(divide="ignore", invalid="ignore"):
            out = r ** 2 * np.log(r)
        return np.where(r > 0, out, 0.0)

    r = np.linalg.norm(ctrl[:, None, :] - ctrl[None, :, :], axis=2)
    big = np.zeros((n + 3, n + 3))
    big[:n, :n] = phi(r)
    big[:n, n:] = np.hstack([np.ones((n, 1)), ctrl])
    big[n:, :n] = big[:n, n:].T
    rhs = np.vstack([src, np.zeros((3, 2))])
    sol = np.linalg.solve(big, rhs)
    xs = np.array([2 * j / (w - 1) - 1 for j in range(w)])
    ys = np.array([2 * i / (h - 1) - 1 for i in range(h)])
    out = np.zeros((h, w, 2))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            rr = np.hypot(x - ctrl[:, 0], y - ctrl[:, 1])
            out[i, j] = sol[:n].T @ phi(rr) + sol[n] + sol[n + 1] * x + sol[n + 2] * y
    return out


def test_lattice():
    c = control_lattice(5)
    assert c.shape == (25, 2)
    assert sorted(set(c[:, 0].tolist())) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert sorted(set(c[:, 1].tolist())) == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_tps_grid_matches_numpy_solution():
    gen = torch.Generator().manual_seed(0)
    targets, sources = sample_source_points(3, WarpParams(sigma=0.08), generator=gen, dtype=torch.float64)
    grid = tps_grid(targets, sources, 11, 13)
    assert grid.shape == (3, 11, 13, 2) and grid.dtype == torch.float32
    for b in range(3):
        ref = numpy_tps_grid(targets.numpy(), sources[b].numpy(), 11, 13)
        np.testing.assert_allclose(grid[b].numpy(), ref, rtol=0, atol=2e-6)


def test_tps_interpolates_the_control_points_and_accepts_per_image_targets():
    gen = torch.Generator().manual_seed(1)
    targets, sources = sample_source_points(2, WarpParams(sigma=0.1), generator=gen, dtype=torch.float64)
    # 9x9 pixels put a pixel on every lattice point (step 0.25 vs lattice step 0.5)
    grid = tps_grid(targets, sources, 9, 9, dtype=torch.float64)
    at_ctrl = grid[:, ::2, ::2].reshape(2, 25, 2)  # row-major (y outer, x inner) like control_lattice
    torch.testing.assert_close(at_ctrl, sources, rtol=0, atol=1e-10)
    per_image = targets.expand(2, 25, 2)
    coeffs = tps_solve(per_image, sources)
    torch.testing.assert_close(tps_transform(coeffs, per_image, targets), sources, rtol=0, atol=1e-10)


def test_identity_warp_gives_identity_grid():
    targets = control_lattice(5, dtype=torch.float64)
    grid = tps_grid(targets, targets.expand(2, 25, 2), 7, 10)
    ident = F.affine_grid(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).expand(2, 2, 3), (2, 1, 7, 10), align_corners=True)
    torch.testing.assert_close(grid, ident, rtol=0, atol=1e-6)
    x = torch.rand(2, 3, 7, 10)
    torch.testing.assert_close(apply(x, grid), x, rtol=0, atol=1e-5)


def test_affine_only_warp_matches_affine_grid():
    gen = torch.Generator().manual_seed(2)
    params = WarpParams(sigma=0.0)
    targets, sources = sample_source_points(4, params, generator=gen, dtype=torch.float64)
    # recover A, t by least squares from the points (independent of how they were drawn)
    design = torch.cat([targets, torch.ones(25, 1, dtype=torch.float64)], dim=1)        # (25, 3)
    theta = torch.linalg.lstsq(design.expand(4, 25, 3), sources).solution.transpose(1, 2)  # (4, 2, 3)
    grid = tps_grid(targets, sources, 16, 12)
    ref = F.affine_grid(theta.float(), (4, 1, 16, 12), align_corners=True)
    torch.testing.assert_close(grid, ref, rtol=0, atol=1e-5)
    # and A is a scaled rotation with the paper's ranges
    a = theta[:, :, :2]
    rho = torch.sqrt(torch.det(a))
    torch.testing.assert_close(a[:, 0, 0], a[:, 1, 1])
    torch.testing.assert_close(a[:, 0, 1], -a[:, 1, 0])
    assert ((rho >= 0.5 - 1e-9) & (rho <= 1 / 0.7 + 1e-9)).all()


def test_sampled_parameter_ranges():
    gen = torch.Generator().manual_seed(3)
    targets, sources = sample_source_points(4000, PAPER_WARP, generator=gen, dtype=torch.float64)
    # The lattice centre (0, 0) maps to A eps + t: |.| <= translation + rho * sigma * sqrt(2)
    centre = sources[:, 12]
    assert centre.abs().max() <= 0.1 + 1.43 * 0.01 * math.sqrt(2)
    # Fit the similarity per image; angles cover +-60 degrees, scales [1/2.0, 1/0.7]
    diff = sources[:, 14] - sources[:, 10]  # (1, 0) - (-1, 0) lattice points: 2 rho (cos, sin) + jitter
    angle = torch.rad2deg(torch.atan2(diff[:, 1], diff[:, 0]))
    rho = diff.norm(dim=1) / 2
    assert angle.min() > -61.5 and angle.max() < 61.5 and angle.min() < -58 and angle.max() > 58
    assert rho.min() > 0.5 - 0.02 and rho.max() < 1 / 0.7 + 0.02
    assert rho.min() < 0.52 and rho.max() > 1 / 0.7 - 0.02


def test_generator_reproducible_and_mirror_option():
    a = random_warp_grid(3, 8, 8, generator=torch.Generator().manual_seed(5))
    b = random_warp_grid(3, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(6)
    _, src = sample_source_points(400, WarpParams(random_mirror=True, sigma=0.0), generator=gen, dtype=torch.float64)
    # a mirrored similarity has negative determinant
    design = torch.cat([control_lattice(5, dtype=torch.float64), torch.ones(25, 1, dtype=torch.float64)], 1)
    theta = torch.linalg.lstsq(design.expand(400, 25, 3), src).solution
    det = torch.det(theta[:, :2, :2])
    assert 120 < (det < 0).sum() < 280


def test_apply_zero_padding_and_align_corners():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # pure translation by one pixel to the left in source coordinates (2/(W-1) in normalised units)
    theta = torch.tensor([[[1.0, 0, 2 / 3], [0, 1.0, 0]]])
    grid = F.affine_grid(theta, (1, 1, 4, 4), align_corners=True)
    out = apply(x, grid)
    torch.testing.assert_close(out[0, 0, :, :3], x[0, 0, :, 1:])
    assert torch.all(out[0, 0, :, 3] == 0)  # sampled outside -> zeros
    out_b = apply(x.double(), grid)  # the grid follows the input dtype
    assert out_b.dtype == torch.float64
