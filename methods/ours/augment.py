"""Photometric augmentation and the Lab colour target of ``ours`` (docs/training.md), on device tensors.

The reference jitters each PIL image twice, independently (``img_cj1`` for the main branch, ``img_cj2`` for
the warped branch): ``RandomApply([ColorJitter(brightness=0.3, contrast=0.3, saturation=0.2, hue=0.2)],
p=0.8)`` then ``RandomGrayscale(p=0.2)``. Here the same distribution is drawn per image, on the device, and
applied to a whole (B, 3, H, W) batch in [0, 1] at once:

* factors as torchvision's ``ColorJitter``: brightness and contrast ~ U(0.7, 1.3), saturation ~ U(0.8, 1.2),
  hue ~ U(-0.2, 0.2) (fraction of the hue circle), and the four operations in a random order per image
  (torchvision draws ``randperm(4)``; ``random_order=False`` applies brightness, contrast, saturation, hue);
* each operation follows the formulas of ``torchvision.transforms.v2.functional`` on float tensors
  (``adjust_brightness/contrast/saturation/hue``, ``rgb_to_grayscale``) with per-image factors; the tests
  check equality with those functions applied image by image;
* the reference works on uint8 PIL images: PIL rounds to 8 bits after every operation, and its contrast uses
  the rounded mean grey level. With ``quantize=True`` (paper preset) the result is rounded to the 8-bit grid
  once at the end, so the network sees integer 0-255 levels as in the reference; per-operation PIL rounding is
  not replicated (differences of at most a few grey levels).

Presets: ``paper`` (the code's values above), ``appendix`` (the paper appendix: +-30 % for all four factors,
always applied, no grayscale; hue read as 0.3 of the circle), ``scops`` (SCOPS's equivariance branch:
``ColorJitter(0.3, 0.3, 0.2, 0.2)`` always applied, no grayscale).

:func:`rgb_to_lab` is scikit-image's ``rgb2lab`` (sRGB, D65, 2-degree observer) in torch.

For ``torch.compile``: :func:`sample_jitter` (generator calls) outside the compiled region, :func:`apply_jitter`
inside it; :func:`color_jitter` does both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.core.errors import UserError

__all__ = [
    "JitterParams",
    "JITTER_PRESETS",
    "JitterSample",
    "sample_jitter",
    "apply_jitter",
    "color_jitter",
    "rgb_to_grayscale",
    "rgb_to_lab",
    "color_target",
]


@dataclass(frozen=True)
class JitterParams:
    """Colour-jitter distribution; the defaults are the ``paper`` preset (the reference code's values)."""

    p_jitter: float = 0.8        # RandomApply probability of the ColorJitter block
    brightness: float = 0.3      # factor ~ U(max(0, 1 - b), 1 + b)
    contrast: float = 0.3
    saturation: float = 0.2
    hue: float = 0.2             # shift ~ U(-hue, hue), fraction of the hue circle, hue <= 0.5
    p_grayscale: float = 0.2     # RandomGrayscale probability, after the jitter
    random_order: bool = True    # torchvision's ColorJitter applies the four operations in a random order
    quantize: bool = True        # round the output to 8-bit levels (the reference jitters uint8 images)

    def __post_init__(self) -> None:
        if not 0 <= self.hue <= 0.5:
            raise UserError(f"hue jitter must be in [0, 0.5], got {self.hue}")
        for name in ("p_jitter", "p_grayscale"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} jitter must be >= 0, got {getattr(self, name)}")


JITTER_PRESETS = {
    "paper": JitterParams(),
    "appendix": JitterParams(p_jitter=1.0, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.3, p_grayscale=0.0),
    "scops": JitterParams(p_jitter=1.0, p_grayscale=0.0),
}

# Operation ids in torchvision's ColorJitter order.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


@dataclass
class JitterSample:
    """Per-image jitter parameters, all (B,) or (B, 4) tensors on the device.

    ``order[b, s]`` is the operation applied at step s to image b; images not selected by the RandomApply gate
    carry neutral factors (1, 1, 1, 0)."""

    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    order: torch.Tensor
    grayscale: torch.Tensor
    random_order: bool = True


def _uniform(batch, low, high, generator, device):
    return low + (high - low) * torch.rand(batch, generator=generator, device=device)


def sample_jitter(batch: int, params: JitterParams = JitterParams(), *, generator: torch.Generator | None = None,
                  device=None) -> JitterSample:
    """Draw the jitter of ``batch`` images independently (no host sync)."""
    if generator is not None and device is None:
        device = generator.device
    apply = torch.rand(batch, generator=generator, device=device) < params.p_jitter

    def factor(width):
        f = _uniform(batch, max(0.0, 1.0 - width), 1.0 + width, generator, device)
        return torch.where(apply, f, torch.ones_like(f))

    b, c, s = factor(params.brightness), factor(params.contrast), factor(params.saturation)
    h = _uniform(batch, -params.hue, params.hue, generator, device)
    h = torch.where(apply, h, torch.zeros_like(h))
    if params.random_order:  # argsort of i.i.d. uniforms = a uniform random permutation per image
        order = torch.rand(batch, 4, generator=generator, device=device).argsort(dim=1)
    else:
        order = torch.arange(4, device=device).expand(batch, 4)
    gray = torch.rand(batch, generator=generator, device=device) < params.p_grayscale
    return JitterSample(b, c, s, h, order, gray, params.random_order)


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma as torchvision computes it, (B, 1, H, W)."""
    r, g, b = images.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = ratio.view(-1, 1, 1, 1).to(x.dtype)
    return (ratio * x + (1.0 - ratio) * other).clamp(0.0, 1.0)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """torchvision's (Pillow-derived) RGB -> HSV on (B, 3, H, W)."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    eqc = maxc == minc
    crange = maxc - minc
    ones = torch.ones_like(maxc)
    s = crange / torch.where(eqc, ones, maxc)
    divisor = torch.where(eqc, ones, crange)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~is_r & ~is_g
    h = (bc - gc) * is_r + (2.0 + rc - bc) * is_g + (4.0 + gc - rc) * is_b
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(dim=1)
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = torch.remainder(i.to(torch.int64), 6)
    p = ((1.0 - s) * v).clamp(0.0, 1.0)
    q = ((1.0 - s * f) * v).clamp(0.0, 1.0)
    t = ((1.0 - s + s * f) * v).clamp(0.0, 1.0)
    # sector i -> (r, g, b): 0 (v,t,p) 1 (q,v,p) 2 (p,v,t) 3 (p,q,v) 4 (t,p,v) 5 (v,p,q); selected with
    # where-chains rather than a lookup table, which would need a host-to-device copy per call.
    r = torch.where((i == 0) | (i == 5), v, torch.where(i == 1, q, torch.where(i == 4, t, p)))
    g = torch.where((i == 1) | (i == 2), v, torch.where(i == 0, t, torch.where(i == 3, q, p)))
    b = torch.where((i == 3) | (i == 4), v, torch.where(i == 2, t, torch.where(i == 5, q, p)))
    return torch.stack((r, g, b), dim=1)


def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1).to(x.dtype), 1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


def _one_step(x: torch.Tensor, op: torch.Tensor, sample: JitterSample) -> torch.Tensor:
    """Apply, per image, the operation ``op[b]``: the other three get neutral factors (exact identities for the
    blends; the hue round trip is not exact, so it is selected with ``where``)."""
    one = torch.ones_like(sample.brightness)
    x = (x * torch.where(op == BRIGHTNESS, sample.brightness, one).view(-1, 1, 1, 1).to(x.dtype)).clamp(0.0, 1.0)
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = _blend(x, mean, torch.where(op == CONTRAST, sample.contrast, one))
    x = _blend(x, rgb_to_grayscale(x), torch.where(op == SATURATION, sample.saturation, one))
    hue_here = (op == HUE) & (sample.hue != 0)
    return torch.where(hue_here.view(-1, 1, 1, 1), _adjust_hue(x, sample.hue), x)


def apply_jitter(images01: torch.Tensor, sample: JitterSample, *, quantize: bool = True) -> torch.Tensor:
    """Apply sampled jitter to RGB images in [0, 1], (B, 3, H, W) -> (B, 3, H, W) in [0, 1]."""
    if images01.ndim != 4 or images01.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB images, got {tuple(images01.shape)}")
    x = images01
    if sample.random_order:
        for step in range(4):
            x = _one_step(x, sample.order[:, step], sample)
    else:  # brightness, contrast, saturation, hue: one pass each
        x = (x * sample.brightness.view(-1, 1, 1, 1).to(x.dtype)).clamp(0.0, 1.0)
        x = _blend(x, rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True), sample.contrast)
        x = _blend(x, rgb_to_grayscale(x), sample.saturation)
        x = torch.where((sample.hue != 0).view(-1, 1, 1, 1), _adjust_hue(x, sample.hue), x)
    x = torch.where(sample.grayscale.view(-1, 1, 1, 1), rgb_to_grayscale(x).expand_as(x), x)
    if quantize:
        x = torch.round(x * 255.0) / 255.0
    return x


def color_jitter(images01: torch.Tensor, params: JitterParams | str = "paper", *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw and apply an independent jitter per image. ``params``: a :class:`JitterParams` or a preset
    name (``paper``, ``appendix``, ``scops``). Call twice for the two jittered copies of a batch."""
    if isinstance(params, str):
        if params not in JITTER_PRESETS:
            raise UserError(f"unknown jitter preset {params!r}; choose one of {sorted(JITTER_PRESETS)}")
        params = JITTER_PRESETS[params]
    sample = sample_jitter(images01.shape[0], params, generator=generator, device=images01.device)
    return apply_jitter(images01, sample, quantize=params.quantize)


# sRGB (D65) -> XYZ, and the D65 / 2-degree reference white, as in scikit-image's colorconv.
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                 (0.212671, 0.715160, 0.072169),
                 (0.019334, 0.119193, 0.950227))
_WHITE_D65 = (0.95047, 1.0, 1.08883)


def rgb_to_lab(images01: torch.Tensor) -> torch.Tensor:
    """CIE-Lab of RGB images in [0, 1], (B, 3, H, W) -> (B, 3, H, W) with L in [0, 100], a/b about +-128.

    scikit-image's ``rgb2lab`` (sRGB companding, D65 white, 2-degree observer, the 0.008856 / 7.787 linear
    segment); float64 stays float64, everything else is computed in float32.
    """
    x = images01 if images01.dtype == torch.float64 else images01.float()
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055).pow(2.4), x / 12.92)
    r, g, b = linear.unbind(dim=1)
    # scalar arithmetic instead of a matrix tensor: no host-to-device copy per call
    xyz = torch.stack([(m0 * r + m1 * g + m2 * b) / white for (m0, m1, m2), white in zip(_XYZ_FROM_RGB, _WHITE_D65)],
                      dim=1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856).pow(1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(dim=1)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)


def color_target(images01: torch.Tensor, use_lab: bool = True) -> torch.Tensor:
    """The target of L_v: :func:`rgb_to_lab` of the un-jittered image when ``use_lab`` (default),
    else the reference's ``RGB - 128`` on the 0-255 integer scale."""
    if use_lab:
        return rgb_to_lab(images01)
    return torch.round(images01.float() * 255.0) - 128.0
