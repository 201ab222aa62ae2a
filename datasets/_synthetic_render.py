"""The procedural renderer behind the ``synthetic`` dataset: one articulated "creature" on clutter.

A creature is seen from above with its head pointing "up" in its own frame (x right, y down, body units):
an elliptic torso, an elliptic head on a turning neck, a three-segment tapering tail and four two-segment
legs ending in round paws. The creature's *left* side is at negative local x (seen from above with the
head up, the animal's left is the viewer's left), so a horizontal mirror turns left parts into right parts:
:data:`PART_FLIP` and :data:`KEYPOINT_FLIP` say how labels and keypoints are renamed.

Appearance: every part type has its own base hue (:data:`PART_HUES`, left and right legs share theirs),
jittered per instance in hue, saturation and brightness, with a per-instance texture (plain, stripes,
spots or smooth noise) laid out in the part's own coordinates (so it moves and bends with the part),
shading towards the part's outline and a thin dark rim. The background is a smooth colour gradient
with low-frequency noise and clutter shapes (ellipses, sticks that look like limbs, rotated boxes) whose
colours are drawn from the part palette with a probability that grows with ``difficulty``.

Everything is vectorised over the pixel grid with NumPy and decided by the ``numpy.random.Generator``
passed in, so a scene is a pure function of its seed (bit-identical across processes and runs).
Coordinates follow :mod:`benchmark.core.types`: pixel (row i, column j) covers ``[j, j+1) x [i, i+1)``
and shapes are tested at pixel centres ``(j + 0.5, i + 0.5)``.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

PART_NAMES: tuple[str, ...] = ("background", "head", "torso", "tail", "left_front_leg", "right_front_leg",
                               "left_back_leg", "right_back_leg")
HEAD, TORSO, TAIL, LEFT_FRONT, RIGHT_FRONT, LEFT_BACK, RIGHT_BACK = range(1, 8)
NUM_PARTS = len(PART_NAMES) - 1
# Label l of a mirrored image is label PART_FLIP[l] of the original (an involution: left <-> right legs).
PART_FLIP: tuple[int, ...] = (0, HEAD, TORSO, TAIL, RIGHT_FRONT, LEFT_FRONT, RIGHT_BACK, LEFT_BACK)

# (name, part label it lies on)
KEYPOINTS: tuple[tuple[str, int], ...] = (
    ("nose", HEAD), ("left_eye", HEAD), ("right_eye", HEAD),
    ("chest", TORSO), ("rump", TORSO),
    ("tail_mid", TAIL), ("tail_tip", TAIL),
    ("left_front_elbow", LEFT_FRONT), ("left_front_paw", LEFT_FRONT),
    ("right_front_elbow", RIGHT_FRONT), ("right_front_paw", RIGHT_FRONT),
    ("left_back_knee", LEFT_BACK), ("left_back_paw", LEFT_BACK),
    ("right_back_knee", RIGHT_BACK), ("right_back_paw", RIGHT_BACK),
)
KEYPOINT_NAMES: tuple[str, ...] = tuple(name for name, _ in KEYPOINTS)
KEYPOINT_PARTS: tuple[int, ...] = tuple(part for _, part in KEYPOINTS)
# Keypoint i of a mirrored image is keypoint KEYPOINT_FLIP[i] of the original (CUB-style permutation).
KEYPOINT_FLIP: tuple[int, ...] = (0, 2, 1, 3, 4, 5, 6, 9, 10, 7, 8, 13, 14, 11, 12)

# Base hue of every label (index 0 unused): red-orange head, blue torso, green tail, yellow front legs,
# purple back legs; left and right legs share a hue so that only their position tells them apart.
PART_HUES = np.array([0.0, 0.02, 0.60, 0.33, 0.14, 0.14, 0.80, 0.80])

_TWO_PI = 2.0 * np.pi


@dataclass
class Scene:
    """One rendered scene (NumPy, full-image pixel coordinates)."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    labels: np.ndarray  # (H, W) int64, 0 = background, 1..NUM_PARTS
    keypoints: np.ndarray  # (P, 2) float32 (x, y)
    visible: np.ndarray  # (P,) bool: inside the image and on a pixel labelled with its own part
    flipped: bool  # whether the scene was mirrored after rendering (labels/keypoints renamed)
    torso_class: int = 0  # the scene's class: 2 x (torso brightness >= 0.75) + (torso saturation >= 0.7), 0..3


# -- small helpers ---------------------------------------------------------------------------------------
def _rot(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _unit(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` from local "up" (0, -1), turning clockwise on screen (towards +x)."""
    return np.array([np.sin(angle), -np.cos(angle)])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(float(h) % 1.0, min(max(float(s), 0.0), 1.0), min(max(float(v), 0.0), 1.0)))


def _fract(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _interp_matrix(n: int, cells: int) -> np.ndarray:
    """(n, cells + 1) weights of linear interpolation from a lattice of ``cells`` cells to n pixel centres."""
    pos = (np.arange(n) + 0.5) / n * cells
    i0 = np.minimum(pos.astype(int), cells - 1)
    frac = pos - i0
    weights = np.zeros((n, cells + 1))
    weights[np.arange(n), i0] = 1 - frac
    weights[np.arange(n), i0 + 1] = frac
    return weights


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a (cells+1)^2 random lattice bilinearly interpolated at pixel centres."""
    lattice = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1, channels))
    return np.einsum("hi,ijc,wj->hwc", _interp_matrix(h, cells), lattice, _interp_matrix(w, cells), optimize=True)


# -- primitives ------------------------------------------------------------------------------------------
# Each primitive is evaluated twice: a cheap inside test over the whole grid (primitives along axis 0,
# drawing order bottom first), then its texture coordinates only at the pixels where it is on top.
@dataclass
class _Fields:
    """Texture coordinates of N pixels in the primitive that is on top there."""

    u: np.ndarray  # along the part's axis, body units (texture coordinate)
    v: np.ndarray  # across the part's axis, body units
    rho: np.ndarray  # 0 on the axis, 1 on the outline (shading)
    rim: np.ndarray  # approximate distance to the outline in pixels


def _capsule_geometry(x, y, a, b, ra, rb):
    """Tapered capsules from ``a`` (radius ``ra``) to ``b`` (radius ``rb``) evaluated at points (x, y);
    all arguments broadcast (a == b gives a disc). Returns (t, squared distance, radius, ex, ey, length2)."""
    ax, ay, ex, ey = a[..., 0], a[..., 1], b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    length2 = np.maximum(ex * ex + ey * ey, 1e-9)
    dx, dy = x - ax, y - ay
    t = np.clip((dx * ex + dy * ey) / length2, 0.0, 1.0)
    px, py = dx - t * ex, dy - t * ey
    return t, px * px + py * py, ra + t * (rb - ra), ex, ey, length2


def _capsules_inside(xx, yy, a, b, ra, rb) -> np.ndarray:
    _, dist2, radius, *_ = _capsule_geometry(xx[None], yy[None], a[:, None, None], b[:, None, None],
                                             ra[:, None, None], rb[:, None, None])
    return dist2 < radius * radius


def _capsule_fields(x, y, a, b, ra, rb, arc0, scale) -> _Fields:
    t, dist2, radius, ex, ey, length2 = _capsule_geometry(x, y, a, b, ra, rb)
    length, dist = np.sqrt(length2), np.sqrt(dist2)
    across = ((y - a[..., 1]) * ex - (x - a[..., 0]) * ey) / length  # signed distance to the axis line
    return _Fields(u=(arc0 + t * length) / scale, v=across / scale, rho=dist / radius, rim=radius - dist)


def _ellipse_local(x, y, centre, forward):
    dx, dy = x - centre[..., 0], y - centre[..., 1]
    fx, fy = forward[..., 0], forward[..., 1]
    return dx * fx + dy * fy, dy * fx - dx * fy  # (along, across)


def _ellipses_inside(xx, yy, centre, forward, a_forward, a_side) -> np.ndarray:
    along, across = _ellipse_local(xx[None], yy[None], centre[:, None, None], forward[:, None, None])
    return (along / a_forward[:, None, None]) ** 2 + (across / a_side[:, None, None]) ** 2 < 1.0


def _ellipse_fields(x, y, centre, forward, a_forward, a_side, scale) -> _Fields:
    along, across = _ellipse_local(x, y, centre, forward)
    rho = np.sqrt((along / a_forward) ** 2 + (across / a_side) ** 2)
    return _Fields(u=-along / scale, v=across / scale, rho=rho, rim=(1.0 - rho) * np.minimum(a_forward, a_side))


def _topmost(inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(covered (H, W) bool, index of the last -- topmost -- primitive covering each pixel)."""
    covered = inside.any(axis=0)
    top = inside.shape[0] - 1 - np.argmax(inside[::-1], axis=0)
    return covered, top


# -- the creature ----------------------------------------------------------------------------------------
@dataclass
class _Creature:
    """Geometry in local body units (before the global similarity transform)."""

    cap_a: np.ndarray  # (C, 2) capsule starts
    cap_b: np.ndarray  # (C, 2) capsule ends
    cap_ra: np.ndarray
    cap_rb: np.ndarray
    cap_arc0: np.ndarray  # arc length of each capsule's start along its chain
    cap_label: np.ndarray  # (C,) part labels
    ell_centre: np.ndarray  # (E, 2)
    ell_forward: np.ndarray  # (E, 2) unit vectors
    ell_af: np.ndarray
    ell_as: np.ndarray
    ell_label: np.ndarray
    keypoints: np.ndarray  # (P, 2)
    eyes: np.ndarray  # (2, 2) eye centres (left, right)
    eye_radius: float
    order: np.ndarray  # drawing order (bottom first) of the primitives [capsules..., ellipses...]


def _sample_creature(rng: np.random.Generator) -> _Creature:
    caps: list[tuple] = []  # (a, b, ra, rb, arc0, label) in drawing order

    torso_as, torso_af = rng.uniform(0.17, 0.23), rng.uniform(0.30, 0.38)
    # Legs first (under everything): back legs, then front legs; each side sampled independently.
    kp: dict[str, np.ndarray] = {}
    for end, labels, y_frac, sweep in (("back", (LEFT_BACK, RIGHT_BACK), 0.50, +1.0),
                                       ("front", (LEFT_FRONT, RIGHT_FRONT), -0.45, -1.0)):
        upper_len, lower_len = rng.uniform(0.20, 0.26), rng.uniform(0.18, 0.24)
        r_upper, r_lower, r_paw = rng.uniform(0.07, 0.085), rng.uniform(0.06, 0.075), rng.uniform(0.08, 0.095)
        for side, label in ((-1.0, labels[0]), (+1.0, labels[1])):
            root = np.array([side * 0.7 * torso_as, y_frac * torso_af])
            # Outward, swept forwards (front legs) or backwards (back legs) by alpha; the lower segment
            # bends further by beta. Angles mirror with the side, so the pose distribution is symmetric.
            # A negative alpha sweeps the other way, so front and back legs can cross and occlude.
            alpha = np.deg2rad(rng.uniform(-35.0, 65.0))
            beta = np.deg2rad(rng.uniform(-15.0, 70.0))
            up = np.array([side * np.cos(alpha), sweep * np.sin(alpha)])
            joint = root + upper_len * up
            low = np.array([side * np.cos(alpha + beta), sweep * np.sin(alpha + beta)])
            paw = joint + lower_len * low
            caps.append((root, joint, r_upper, r_upper, 0.0, label))
            caps.append((joint, paw, r_lower, r_lower * 0.95, upper_len, label))
            caps.append((paw, paw, r_paw, r_paw, upper_len + lower_len, label))
            name = ("left" if side < 0 else "right") + "_" + end
            kp[name + ("_elbow" if end == "front" else "_knee")] = joint
            kp[name + "_paw"] = paw

    # Tail: three segments, tapering, each turning a little from the previous one -- or, sometimes, curling
    # round to one side and over the body (then it is drawn above the torso and hides part of it).
    curl = rng.random() < 0.3
    tail_len = rng.uniform(0.38, 0.55) * (1.25 if curl else 1.0)
    curl_sign = rng.choice((-1.0, 1.0))
    heading = np.deg2rad(curl_sign * rng.uniform(30.0, 60.0) if curl else rng.uniform(-35.0, 35.0))
    point = np.array([0.0, 0.85 * torso_af])
    radii = np.linspace(rng.uniform(0.075, 0.09), rng.uniform(0.04, 0.05), 4)
    chain = [point]
    for k in range(3):
        direction = np.array([np.sin(heading), np.cos(heading)])  # local "down", turned by heading
        nxt = point + tail_len / 3 * direction
        caps.append((point, nxt, radii[k], radii[k + 1], k * tail_len / 3, TAIL))
        chain.append(nxt)
        point = nxt
        heading += np.deg2rad(curl_sign * rng.uniform(55.0, 85.0) if curl else rng.uniform(-35.0, 35.0))
    kp["tail_mid"] = chain[1] + 0.5 * (chain[2] - chain[1])
    kp["tail_tip"] = chain[2] + 0.85 * (chain[3] - chain[2])

    # Torso, then the head on top.
    head_angle = np.deg2rad(rng.uniform(-30.0, 30.0))
    head_as, head_af = rng.uniform(0.12, 0.15), rng.uniform(0.15, 0.19)
    forward = _unit(head_angle)
    right = np.array([-forward[1], forward[0]])
    neck = np.array([0.0, -0.85 * torso_af])
    head_centre = neck + 0.8 * head_af * forward
    kp["nose"] = head_centre + 0.72 * head_af * forward
    eye_base = head_centre + 0.2 * head_af * forward
    kp["left_eye"] = eye_base - 0.5 * head_as * right
    kp["right_eye"] = eye_base + 0.5 * head_as * right
    kp["chest"] = np.array([0.0, -0.45 * torso_af])
    kp["rump"] = np.array([0.0, 0.5 * torso_af])

    a, b, ra, rb, arc0, lab = zip(*caps)
    # Drawing order (bottom first) over [capsules..., torso, head]: legs, tail, torso, head; or legs, torso,
    # tail, head when the tail curls over the body.
    n_cap = len(caps)
    tail = [i for i in range(n_cap) if lab[i] == TAIL]
    legs = [i for i in range(n_cap) if lab[i] != TAIL]
    order = legs + ([n_cap] + tail if curl else tail + [n_cap]) + [n_cap + 1]
    return _Creature(order=np.array(order),
        cap_a=np.array(a), cap_b=np.array(b), cap_ra=np.array(ra), cap_rb=np.array(rb), cap_arc0=np.array(arc0),
        cap_label=np.array(lab), ell_centre=np.array([[0.0, 0.0], head_centre]),
        ell_forward=np.array([[0.0, -1.0], forward]), ell_af=np.array([torso_af, head_af]),
        ell_as=np.array([torso_as, head_as]), ell_label=np.array([TORSO, HEAD]),
        keypoints=np.array([kp[name] for name in KEYPOINT_NAMES]),
        eyes=np.array([kp["left_eye"], kp["right_eye"]]), eye_radius=0.035)


def _bounds(c: _Creature, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds (lo, hi) of the rotated creature, in body units."""
    pts = np.concatenate([c.cap_a, c.cap_b]) @ rotation.T
    rad = np.concatenate([c.cap_ra, c.cap_rb])
    lo, hi = (pts - rad[:, None]).min(0), (pts + rad[:, None]).max(0)
    fwd = c.ell_forward @ rotation.T
    centre = c.ell_centre @ rotation.T
    # Half-extents of a rotated ellipse along x and y.
    half = np.sqrt((c.ell_af[:, None] * fwd) ** 2 + (c.ell_as[:, None] * fwd[:, ::-1]) ** 2)
    lo = np.minimum(lo, (centre - half).min(0))
    hi = np.maximum(hi, (centre + half).max(0))
    return lo, hi


# -- appearance ------------------------------------------------------------------------------------------
@dataclass
class _Look:
    """Per-label texture parameters (arrays indexed by part label 0..NUM_PARTS)."""

    base: np.ndarray  # (L+1, 3)
    alt: np.ndarray  # (L+1, 3) second colour of stripes/spots
    kind: np.ndarray  # 0 plain, 1 stripes, 2 spots, 3 noise
    period: np.ndarray
    phase: np.ndarray
    duty: np.ndarray
    cell: np.ndarray
    salt: np.ndarray
    waves: np.ndarray  # (L+1, 3, 4): (freq_u, freq_v, phase, amplitude) of three sinusoids


# Texture probabilities (plain, stripes, spots, noise) per label.
_TEXTURE_P = {HEAD: (0.25, 0.1, 0.35, 0.3), TORSO: (0.15, 0.45, 0.25, 0.15), TAIL: (0.2, 0.6, 0.05, 0.15),
              LEFT_FRONT: (0.35, 0.35, 0.0, 0.3), LEFT_BACK: (0.35, 0.35, 0.0, 0.3)}
_SHARED = {RIGHT_FRONT: LEFT_FRONT, RIGHT_BACK: LEFT_BACK}  # right legs look like their left twins


def _sample_look(rng: np.random.Generator, difficulty: float) -> _Look:
    n = NUM_PARTS + 1
    look = _Look(base=np.zeros((n, 3)), alt=np.zeros((n, 3)), kind=np.zeros(n, int), period=np.ones(n),
                 phase=np.zeros(n), duty=np.zeros(n), cell=np.ones(n), salt=np.zeros(n), waves=np.zeros((n, 3, 4)))
    hue_jitter = 0.025 + 0.045 * difficulty
    for label in range(1, n):
        if label in _SHARED:
            src = _SHARED[label]
            for name in ("base", "alt", "kind", "period", "phase", "duty", "cell", "salt", "waves"):
                getattr(look, name)[label] = getattr(look, name)[src]
            continue
        hue = PART_HUES[label] + rng.uniform(-hue_jitter, hue_jitter)
        sat, val = rng.uniform(0.5, 0.9), rng.uniform(0.55, 0.95)
        look.base[label] = _hsv(hue, sat, val)
        # Second colour: same hue family, darker or lighter.
        if rng.random() < 0.6:
            look.alt[label] = _hsv(hue + rng.uniform(-0.03, 0.03), sat * rng.uniform(0.8, 1.1), val * rng.uniform(0.35, 0.6))
        else:
            look.alt[label] = _hsv(hue + rng.uniform(-0.03, 0.03), sat * rng.uniform(0.25, 0.5), min(1.0, val * 1.25 + 0.1))
        look.kind[label] = rng.choice(4, p=_TEXTURE_P[label])
        look.period[label] = rng.uniform(0.13, 0.22)
        look.phase[label] = rng.uniform(0, _TWO_PI)
        look.duty[label] = rng.uniform(-0.3, 0.3)
        look.cell[label] = rng.uniform(0.09, 0.13)
        look.salt[label] = rng.uniform(0, 100)
        look.waves[label, :, 0:2] = rng.uniform(-25.0, 25.0, size=(3, 2))
        look.waves[label, :, 2] = rng.uniform(0, _TWO_PI, size=3)
        look.waves[label, :, 3] = rng.uniform(0.04, 0.1, size=3)
    return look


def _shade(look: _Look, label: np.ndarray, u: np.ndarray, v: np.ndarray, rho: np.ndarray, rim: np.ndarray) -> np.ndarray:
    """Colours (N, 3) of N creature pixels from their part label and part-local coordinates."""
    kind = look.kind[label]
    stripe = (np.sin(_TWO_PI * u / look.period[label] + look.phase[label]) > look.duty[label]).astype(float)
    cell = look.cell[label]
    cu, cv = np.floor(u / cell), np.floor(v / cell)
    h1 = _fract(np.sin(cu * 12.9898 + cv * 78.233 + look.salt[label]) * 43758.5453)
    h2 = _fract(np.sin(cu * 39.3468 + cv * 11.135 + look.salt[label]) * 24634.6345)
    spot_u, spot_v = (cu + 0.3 + 0.4 * h1) * cell, (cv + 0.3 + 0.4 * h2) * cell
    spot = ((np.hypot(u - spot_u, v - spot_v) < 0.32 * cell) & (h1 > 0.15)).astype(float)
    waves = look.waves[label]  # (N, 3, 4)
    noise = (waves[..., 3] * np.sin(waves[..., 0] * u[:, None] + waves[..., 1] * v[:, None] + waves[..., 2])).sum(1)
    mix = np.where(kind == 1, stripe, np.where(kind == 2, spot, 0.0))[:, None]
    colour = look.base[label] * (1 - mix) + look.alt[label] * mix
    gain = 1.0 + np.where(kind == 3, 2.5, 0.6) * noise
    gain = gain * (1.0 - 0.3 * np.clip(rho, 0, 1) ** 2)  # rounded look
    gain = gain * np.where(rim < 0.75, 0.65, 1.0)  # thin dark rim separates overlapping parts
    return colour * gain[:, None]


def _background(rng: np.random.Generator, size: int, difficulty: float, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Gradient + smooth noise + clutter shapes, (H, W, 3)."""
    hue = rng.random()
    c0 = _hsv(hue, rng.uniform(0.05, 0.45), rng.uniform(0.25, 0.85))
    c1 = _hsv(hue + rng.uniform(-0.15, 0.15), rng.uniform(0.05, 0.45), rng.uniform(0.25, 0.85))
    direction = _unit(rng.uniform(0, _TWO_PI))
    ramp = ((xx - size / 2) * direction[0] + (yy - size / 2) * direction[1]) / size + 0.5
    image = c0 + (c1 - c0) * np.clip(ramp, 0, 1)[..., None]
    image = image + (0.04 + 0.08 * difficulty) * _value_noise(rng, size, size, int(rng.integers(3, 7)), 3)

    n = int(round(difficulty * 14)) + int(rng.integers(0, 4))
    if n == 0:
        return image
    kind = rng.integers(0, 3, size=n)  # 0 ellipse, 1 stick (limb-like capsule), 2 rotated box
    centre = rng.uniform(-0.1 * size, 1.1 * size, size=(n, 2))
    angle = rng.uniform(0, np.pi, size=n)
    forward = np.stack([np.sin(angle), -np.cos(angle)], 1)
    half_len = rng.uniform(0.04, 0.2, size=n) * size
    half_wid = half_len * rng.uniform(0.25, 1.0, size=n)
    stick = kind == 1
    half_wid[stick] = rng.uniform(0.015, 0.05, size=int(stick.sum())) * size
    centre, forward = centre.astype(np.float32), forward.astype(np.float32)
    along, across = _ellipse_local(xx[None], yy[None], centre[:, None, None], forward[:, None, None])
    hl, hw = half_len[:, None, None].astype(np.float32), half_wid[:, None, None].astype(np.float32)
    inside = np.empty(along.shape, dtype=bool)
    for k, test in ((0, lambda a, c, l, w: (a / l) ** 2 + (c / w) ** 2 < 1),  # ellipse
                    (1, lambda a, c, l, w: np.maximum(np.abs(a) - l, 0) ** 2 + c ** 2 < w ** 2),  # stick
                    (2, lambda a, c, l, w: (np.abs(a) < l) & (np.abs(c) < w))):  # box
        sel = kind == k
        inside[sel] = test(along[sel], across[sel], hl[sel], hw[sel])
    covered, top = _topmost(inside)
    if not covered.any():
        return image

    colours = np.zeros((n, 3))
    for s in range(n):
        if rng.random() < 0.15 + 0.6 * difficulty:  # a distractor in a part's colours
            colours[s] = _hsv(PART_HUES[rng.integers(1, NUM_PARTS + 1)] + rng.uniform(-0.05, 0.05),
                              rng.uniform(0.45, 0.9), rng.uniform(0.5, 0.95))
        else:
            colours[s] = _hsv(rng.random(), rng.uniform(0.05, 0.6), rng.uniform(0.2, 0.9))
    striped = rng.random(n) < 0.35
    period = rng.uniform(3.0, 8.0, size=n)
    stripe_angle = rng.uniform(0, np.pi, size=n)
    rows, cols = np.nonzero(covered)
    s = top[rows, cols]
    x, y = cols + 0.5, rows + 0.5
    wave = np.sin(_TWO_PI * (x * np.cos(stripe_angle[s]) + y * np.sin(stripe_angle[s])) / period[s])
    gain = np.where(striped[s], np.where(wave > 0, 1.0, 0.6), 1.0)
    image[rows, cols] = colours[s] * gain[:, None]
    return image


# -- the scene -------------------------------------------------------------------------------------------
def render_scene(rng: np.random.Generator, size: int, difficulty: float, margin: float = 0.3) -> Scene:
    """Render one ``size`` x ``size`` scene.

    The creature is placed so that the square of side ``(1 + margin) * max(w, h) + 2`` pixels centred on its
    bounding box lies inside the image. The square crops of the ``fg`` and ``train`` views then never leave
    the image: padding 5 % and jittering every side by up to 5 % of the box gives a square of side at most
    1.2 max(w, h) whose centre moves by at most 0.05 max(w, h), so it stays within 0.65 max(w, h) of the
    box centre -- the default ``margin = 0.3`` covers that (the rendered box lies within the analytic one).
    """
    creature = _sample_creature(rng)
    max_turn = np.deg2rad(30.0 + 30.0 * difficulty)
    rotation = _rot(rng.uniform(-max_turn, max_turn))
    lo, hi = _bounds(creature, rotation)
    extent = float((hi - lo).max())
    max_scale = (size - 2.0) / ((1.0 + margin) * extent)
    scale = max_scale * rng.uniform(0.6, 1.0)
    crop_half = ((1.0 + margin) * extent * scale + 2.0) / 2.0
    centre = rng.uniform(crop_half, size - crop_half, size=2)
    offset = centre - scale * (lo + hi) / 2.0

    def place(points: np.ndarray) -> np.ndarray:
        return scale * points @ rotation.T + offset

    grid = (np.arange(size) + 0.5).astype(np.float32)
    xx, yy = np.meshgrid(grid, grid)
    look = _sample_look(rng, difficulty)
    image = _background(rng, size, difficulty, xx, yy)

    c = creature
    # float32 over the grid: half the memory traffic of float64, and plenty for 2-D geometry in pixels.
    f32 = np.float32
    cap_a, cap_b = place(c.cap_a).astype(f32), place(c.cap_b).astype(f32)
    cap_ra, cap_rb = (scale * c.cap_ra).astype(f32), (scale * c.cap_rb).astype(f32)
    ell_c, ell_f = place(c.ell_centre).astype(f32), (c.ell_forward @ rotation.T).astype(f32)
    ell_af, ell_as = (scale * c.ell_af).astype(f32), (scale * c.ell_as).astype(f32)
    # Only the window of the creature's analytic bounds can be covered: test the shapes there.
    (x0, y0), (x1, y1) = offset + scale * lo, offset + scale * hi
    c0, r0 = max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0)
    c1, r1 = min(int(np.ceil(x1)) + 1, size), min(int(np.ceil(y1)) + 1, size)
    wx, wy = xx[r0:r1, c0:c1], yy[r0:r1, c0:c1]
    inside = np.concatenate([_capsules_inside(wx, wy, cap_a, cap_b, cap_ra, cap_rb),
                             _ellipses_inside(wx, wy, ell_c, ell_f, ell_af, ell_as)])[c.order]
    prim_label = np.concatenate([c.cap_label, c.ell_label])
    covered, top = np.zeros((size, size), bool), np.zeros((size, size), np.int64)
    covered[r0:r1, c0:c1], window_top = _topmost(inside)
    top[r0:r1, c0:c1] = c.order[window_top]  # back to primitive indices
    labels = np.where(covered, prim_label[top], 0).astype(np.int64)

    rows, cols = np.nonzero(covered)
    x, y, t = cols + 0.5, rows + 0.5, top[rows, cols]
    n_cap = len(c.cap_label)
    on_cap = t < n_cap
    fields = _Fields(*(np.zeros(len(t)) for _ in range(4)))
    tc, te = t[on_cap], t[~on_cap] - n_cap
    for mask, part in ((on_cap, _capsule_fields(x[on_cap], y[on_cap], cap_a[tc], cap_b[tc], cap_ra[tc], cap_rb[tc],
                                                 scale * c.cap_arc0[tc], scale)),
                       (~on_cap, _ellipse_fields(x[~on_cap], y[~on_cap], ell_c[te], ell_f[te], ell_af[te], ell_as[te], scale))):
        for name in ("u", "v", "rho", "rim"):
            getattr(fields, name)[mask] = getattr(part, name)
    pix_label = prim_label[t]
    colour = _shade(look, pix_label, fields.u, fields.v, fields.rho, fields.rim)
    eyes = place(c.eyes)
    eye_dist = np.min(np.hypot((cols + 0.5)[:, None] - eyes[None, :, 0], (rows + 0.5)[:, None] - eyes[None, :, 1]), axis=1)
    is_eye = (pix_label == HEAD) & (eye_dist < max(0.8, scale * c.eye_radius))
    colour[is_eye] = (0.06, 0.05, 0.08)
    image[rows, cols] = colour

    image = image + rng.normal(0.0, 0.01 + 0.04 * difficulty, size=image.shape)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    keypoints = place(c.keypoints).astype(np.float32)

    flipped = bool(rng.random() < 0.5)
    if flipped:  # the mirrored scene: a creature whose left and right parts trade names
        image = image[:, ::-1].copy()
        labels = np.asarray(PART_FLIP)[labels[:, ::-1]]
        keypoints = keypoints[list(KEYPOINT_FLIP)]
        keypoints[:, 0] = size - keypoints[:, 0]
    visible = keypoint_visibility(keypoints, labels)
    return Scene(image=image, labels=labels, keypoints=keypoints, visible=visible, flipped=flipped,
                 torso_class=torso_class(look.base[TORSO]))


def torso_class(rgb: np.ndarray) -> int:
    """The class of a scene from its torso's base colour: ``2 * (value >= 0.75) + (saturation >= 0.7)`` (HSV;
    both drawn uniformly around those thresholds, so the four classes are about equally frequent)."""
    _, saturation, value = colorsys.rgb_to_hsv(*(float(c) for c in rgb))
    return 2 * int(value >= 0.75) + int(saturation >= 0.7)


def keypoint_visibility(keypoints: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A keypoint is visible when it lies inside the image on a pixel labelled with its own part (read at
    pixel ``round(x - 0.5), round(y - 0.5)``, the convention of :mod:`benchmark.core.types`); a part drawn
    over it (occlusion) or the image border hides it."""
    h, w = labels.shape
    col = np.rint(keypoints[:, 0] - 0.5).astype(int)
    row = np.rint(keypoints[:, 1] - 0.5).astype(int)
    inside = (keypoints[:, 0] >= 0) & (keypoints[:, 0] < w) & (keypoints[:, 1] >= 0) & (keypoints[:, 1] < h)
    on_part = labels[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)] == np.asarray(KEYPOINT_PARTS)
    return inside & on_part
