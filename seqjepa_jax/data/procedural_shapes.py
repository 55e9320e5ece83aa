"""Shape grammars of the procedural 3D-object classes rendered by `procedural.py`.

Every object is a short list (at most `MAX_PRIMITIVES`) of solid primitives. One representation
covers all primitive kinds, so the renderer runs the same arithmetic for every slot: a primitive is
the intersection of its unit box |x|, |y|, |z| <= 1 (in local coordinates, after a rotation, a
translation and a per-axis scale) with the quadric

    Q(x, y, z) = w0·x² + w1·y² + q2·z² + q1·z + q0 <= 0.

Box: Q ≡ -1. Ellipsoid: x² + y² + z² - 1. Cylinder, cone and frustum: x² + y² - (α + βz)² with radii
α ∓ β at the bottom/top faces. Dome (half ellipsoid on its flat base): x² + y² + ((z + 1)/2)² - 1.

A primitive row holds 24 float32 numbers: centre (3), rotation matrix (9, row-major), half-extents
(3), quadric (5), RGB albedo (3) and an active flag (1, 0 for padding slots).

Each class is a small grammar with random proportions, part counts and optional parts, drawn from a
generator seeded by (seed, object id) alone. Colours are drawn per object, never per class, so
colour is no shortcut to the label; parts get different colours (body, secondary parts, a saturated
accent on an asymmetric part) so that the orientation can be read off the image. Objects are then
centred and scaled so that their farthest point lies at distance 1 from the origin.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from seqjepa_jax.data.quaternion import euler_xyz_to_matrix

MAX_PRIMITIVES = 16
PRIMITIVE_FIELDS = 24

_BOX = (0.0, 0.0, 0.0, 0.0, -1.0)
_ELLIPSOID = (1.0, 1.0, 1.0, 0.0, -1.0)
_DOME = (1.0, 1.0, 0.25, 0.5, -0.75)
# An empty slot: a finite unit box with Q ≡ +1 (never inside), flagged inactive.
_PADDING = np.array(
    [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0], np.float32
)


def _frustum(r_bottom: float = 1.0, r_top: float = 1.0) -> tuple[float, ...]:
    """Quadric of a frustum whose radii at z = -1 / z = +1 are r_bottom / r_top (max 1)."""
    alpha, beta = (r_top + r_bottom) / 2.0, (r_top - r_bottom) / 2.0
    return (1.0, 1.0, -beta * beta, -2.0 * alpha * beta, -alpha * alpha)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _frame_z(direction: np.ndarray) -> np.ndarray:
    """A rotation matrix whose third column is the unit vector along `direction`."""
    z = np.asarray(direction, np.float64)
    z = z / np.linalg.norm(z)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


class _Parts:
    """Collects primitive rows and holds the object's random colour palette."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.rows: list[np.ndarray] = []
        h = rng.uniform()
        self.primary = _hsv(h, rng.uniform(0.45, 0.8), rng.uniform(0.75, 0.95))
        self.secondary = _hsv(
            h + rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.8), rng.uniform(0.55, 0.8)
        )
        self.accent = _hsv(h + rng.choice([-1, 1]) * rng.uniform(0.15, 0.3), 0.9, 1.0)
        self.dark = np.full(3, rng.uniform(0.12, 0.25))
        self.light = _hsv(rng.uniform(0.1, 0.18), rng.uniform(0.05, 0.3), 0.97)

    def add(
        self,
        quadric: tuple[float, ...],
        centre: ArrayLike,
        half: ArrayLike,
        colour: np.ndarray,
        rot: ArrayLike | None = None,
    ) -> None:
        """Append a primitive; `rot` is a 3x3 matrix or extrinsic xyz Euler angles."""
        if rot is None:
            rot = np.eye(3)
        elif np.shape(rot) == (3,):
            rot = euler_xyz_to_matrix(np.asarray(rot, np.float64))
        row = np.concatenate([centre, np.ravel(rot), half, quadric, colour, [1.0]])
        self.rows.append(row.astype(np.float64))

    def rod(
        self,
        p0: ArrayLike,
        p1: ArrayLike,
        radius: float,
        colour: np.ndarray,
        quadric: tuple[float, ...] | None = None,
        radius_y: float | None = None,
    ) -> None:
        """A primitive whose local z axis runs from p0 to p1 (cylinder unless `quadric` given)."""
        p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
        half = [radius, radius if radius_y is None else radius_y, np.linalg.norm(p1 - p0) / 2]
        q = _frustum() if quadric is None else quadric
        self.add(q, (p0 + p1) / 2, half, colour, _frame_z(p1 - p0))


def _mug(p: _Parts, u: Callable[..., float]) -> None:
    r, hh = u(0.4, 0.65), u(0.35, 0.7)
    p.add(_frustum(u(0.75, 1.0), 1.0), (0, 0, 0), (r, r, hh), p.primary)
    p.add(_frustum(), (0, 0, hh - 0.02), (0.85 * r, 0.85 * r, 0.035), p.dark)  # the opening
    n, reach, hr, thick = int(p.rng.integers(4, 7)), u(0.25, 0.45), u(0.45, 0.8) * hh, u(0.05, 0.09)
    zc = u(-0.2, 0.1) * hh
    angles = np.linspace(-np.pi / 2, np.pi / 2, n + 1)
    pts = np.stack([0.9 * r + reach * np.cos(angles), 0 * angles, zc + hr * np.sin(angles)], 1)
    for a, b in zip(pts[:-1], pts[1:]):
        mid, d = (a + b) / 2, (b - a) * 0.65
        p.rod(mid - d, mid + d, thick, p.secondary, _ELLIPSOID)


def _chair(p: _Parts, u: Callable[..., float]) -> None:
    sw, sd, st = u(0.45, 0.6), u(0.4, 0.55), u(0.05, 0.09)
    p.add(_BOX, (0, 0, 0), (sw, sd, st), p.primary)
    leg_h, lr = u(0.45, 0.75), u(0.05, 0.08)
    leg_q = _frustum() if p.rng.uniform() < 0.5 else _BOX
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (sw - lr), sy * (sd - lr)
            p.add(leg_q, (x, y, -st - leg_h / 2), (lr, lr, leg_h / 2), p.dark)
    bh, bt, tilt = u(0.6, 1.0), u(0.03, 0.06), u(0.0, 0.3)
    back_rot = euler_xyz_to_matrix(np.array([-tilt, 0.0, 0.0]))
    base = np.array([0.0, -sd + bt, st])

    def back(offset: np.ndarray, half: tuple[float, ...], colour: np.ndarray) -> None:
        p.add(_BOX, base + back_rot @ offset, half, colour, back_rot)

    n_slats = int(p.rng.integers(0, 4))
    if n_slats == 0:
        back(np.array([0, 0, bh / 2]), (sw, bt, bh / 2), p.secondary)
    else:
        back(np.array([0, 0, bh - 0.08]), (sw, bt, 0.08), p.secondary)
        for x in np.linspace(-sw + 0.05, sw - 0.05, n_slats + 2)[1:-1] if n_slats > 1 else [0.0]:
            back(np.array([x, 0, (bh - 0.16) / 2]), (0.05, bt * 0.8, (bh - 0.16) / 2), p.secondary)
        for sx in (-1, 1):
            back(np.array([sx * (sw - 0.04), 0, bh / 2]), (0.04, bt, bh / 2), p.secondary)
    if p.rng.uniform() < 0.4:
        for sx in (-1, 1):
            p.add(_BOX, (sx * sw, 0, st + 0.25), (0.04, sd * 0.8, 0.03), p.accent)


def _table(p: _Parts, u: Callable[..., float]) -> None:
    h, tt = u(0.5, 0.9), u(0.03, 0.06)
    if p.rng.uniform() < 0.35:
        r = u(0.6, 0.9)
        p.add(_frustum(), (0, 0, 0), (r, r, tt), p.primary)
        p.add(_frustum(), (0, 0, -tt - h / 2), (0.07, 0.07, h / 2), p.secondary)
        p.add(_frustum(1.0, 0.6), (0, 0, -tt - h), (0.35, 0.35, 0.04), p.secondary)
        ix, iy = u(0.2, 0.5) * r, u(-0.3, 0.3) * r
    else:
        tx, ty, lr = u(0.7, 1.0), u(0.45, 0.8), u(0.03, 0.06)
        p.add(_BOX, (0, 0, 0), (tx, ty, tt), p.primary)
        for sx in (-1, 1):
            for sy in (-1, 1):
                p.add(
                    _BOX, (sx * (tx - 0.08), sy * (ty - 0.08), -tt - h / 2), (lr, lr, h / 2), p.dark
                )
        p.add(_BOX, (tx - 0.02, 0, -tt - 0.08), (0.03, ty * 0.4, 0.06), p.secondary)  # drawer
        ix, iy = u(0.3, 0.7) * tx, u(-0.5, 0.5) * ty
    if p.rng.uniform() < 0.5:  # something on the table, off-centre
        s = u(0.07, 0.12)
        p.add(_ELLIPSOID, (ix, iy, tt + 1.5 * s), (s, s, 1.5 * s), p.accent)
    else:
        s = u(0.1, 0.18)
        p.add(_BOX, (ix, iy, tt + 0.04), (s, 0.7 * s, 0.04), p.accent, (0, 0, u(0, np.pi)))


def _lamp(p: _Parts, u: Callable[..., float]) -> None:
    p.add(_frustum(1.0, 0.8), (0, 0, 0.05), (u(0.35, 0.5), u(0.35, 0.5), 0.06), p.dark)
    a1, l1 = u(-0.5, 0.3), u(0.5, 0.8)
    p0 = np.array([0.0, 0.0, 0.1])
    p1 = p0 + l1 * np.array([np.sin(a1), 0, np.cos(a1)])
    p.rod(p0, p1, u(0.045, 0.065), p.secondary)
    p.add(_ELLIPSOID, p1, (0.09, 0.09, 0.09), p.accent)
    a2, l2 = u(0.9, 1.8), u(0.4, 0.7)
    p2 = p1 + l2 * np.array([np.sin(a2), 0, np.cos(a2)])
    p.rod(p1, p2, u(0.04, 0.06), p.secondary)
    a3, hs, rw = u(2.0, 2.8), u(0.2, 0.32), u(0.3, 0.45)
    d = np.array([np.sin(a3), 0, np.cos(a3)])
    p.rod(p2, p2 + 2 * hs * d, rw, p.primary, _frustum(u(0.3, 0.5), 1.0))
    p.add(_ELLIPSOID, p2 + 1.8 * hs * d, (0.5 * rw,) * 3, p.light)


def _aeroplane(p: _Parts, u: Callable[..., float]) -> None:
    r = u(0.15, 0.22)
    p.add(_ELLIPSOID, (0, 0, 0), (1.0, r, r), p.light)
    span, chord, x0, sweep = u(0.7, 1.0), u(0.2, 0.3), u(-0.1, 0.15), u(0.0, 0.5)
    for side in (-1, 1):
        d = np.array([-np.sin(sweep), side * np.cos(sweep), 0])
        p.add(
            _BOX,
            np.array([x0, 0, 0]) + d * span / 2,
            (chord, span / 2, 0.02),
            p.primary,
            (0, 0, side * sweep),
        )
        if p.rng.uniform() < 0.6:  # engines under the wings
            e = np.array([x0, 0, 0]) + d * span * 0.45 + np.array([0.05, 0, -r])
            p.add(_frustum(), e, (0.055, 0.055, 0.15), p.dark, (0, np.pi / 2, 0))
    fh = u(0.2, 0.35)
    p.add(
        _BOX, (-0.85, 0, r + fh / 2), (u(0.1, 0.16), 0.015, fh / 2), p.accent, (0, u(0.2, 0.5), 0)
    )
    p.add(_BOX, (-0.85, 0, 0.02), (0.08, u(0.2, 0.35), 0.015), p.primary)
    p.add(_ELLIPSOID, (0.7, 0, 0.6 * r), (0.2, 0.7 * r, 0.6 * r), p.dark)  # cockpit


def _car(p: _Parts, u: Callable[..., float]) -> None:
    w, h = u(0.38, 0.5), u(0.14, 0.22)
    p.add(_BOX, (0, 0, 0), (1.0, w, h), p.primary)
    cl, ch, cx = u(0.35, 0.55), u(0.12, 0.2), u(-0.3, 0.05)
    cabin = _DOME if p.rng.uniform() < 0.4 else _BOX
    p.add(cabin, (cx, 0, h + ch), (cl, 0.85 * w, ch), p.secondary)
    wr = u(0.16, 0.24)
    for sx in (-1, 1):
        for sy in (-1, 1):
            p.add(
                _frustum(), (sx * 0.6, sy * w, -0.8 * h), (wr, wr, 0.07), p.dark, (np.pi / 2, 0, 0)
            )
    for sy in (-1, 1):
        p.add(_ELLIPSOID, (1.0, sy * 0.6 * w, 0.02), (0.04, 0.09, 0.05), p.light)
    if p.rng.uniform() < 0.4:
        p.add(_BOX, (-0.92, 0, h + 0.1), (0.08, w, 0.02), p.accent)


def _bottle(p: _Parts, u: Callable[..., float]) -> None:
    rb, hb = u(0.33, 0.5), u(0.4, 0.7)
    p.add(_frustum(), (0, 0, 0), (rb, rb, hb), p.primary)
    rn, sh, nl = u(0.09, 0.15), u(0.06, 0.13), u(0.08, 0.18)
    p.add(_frustum(1.0, rn / rb), (0, 0, hb + sh), (rb, rb, sh), p.primary)
    p.add(_frustum(), (0, 0, hb + 2 * sh + nl), (rn, rn, nl), p.primary)
    p.add(_frustum(), (0, 0, hb + 2 * sh + 2 * nl + 0.04), (1.2 * rn, 1.2 * rn, 0.05), p.accent)
    p.add(_BOX, (rb, 0, u(-0.2, 0.2) * hb), (0.03, 0.65 * rb, u(0.3, 0.5) * hb), p.light)  # label


def _ring(p: _Parts, u: Callable[..., float]) -> None:
    big, tube, n = u(0.6, 0.8), u(0.13, 0.2), int(p.rng.integers(9, 13))
    angles = np.linspace(0, 2 * np.pi, n + 1)[:-1] + np.pi / n
    for a in angles:
        c = big * np.array([np.sin(a), 0, np.cos(a)])
        t = np.array([np.cos(a), 0, -np.sin(a)]) * np.pi * big / n * 1.25
        p.rod(c - t, c + t, tube, p.primary, _ELLIPSOID)
    sh = u(0.08, 0.14)
    p.rod((0, 0, big), (0, 0, big + tube + 2 * sh), 1.5 * tube, p.secondary, _frustum(0.5, 1.0))
    g = u(0.15, 0.25)
    if p.rng.uniform() < 0.5:
        p.add(_ELLIPSOID, (0, 0, big + tube + 2 * sh + 0.7 * g), (g, g, g), p.accent)
    else:
        p.add(_BOX, (0, 0, big + tube + 2 * sh + 0.7 * g), (g, g, g), p.accent, (np.pi / 4, 0.6, 0))


def _dumbbell(p: _Parts, u: Callable[..., float]) -> None:
    hl, br = u(0.55, 0.8), u(0.05, 0.08)
    p.add(_frustum(), (0, 0, 0), (br, br, hl), p.dark, (0, np.pi / 2, 0))
    if p.rng.uniform() < 0.5:
        p.add(
            _frustum(), (0, 0, 0), (1.6 * br, 1.6 * br, u(0.15, 0.25)), p.light, (0, np.pi / 2, 0)
        )
    m, r0, inner, th = int(p.rng.integers(1, 4)), u(0.35, 0.5), u(0.25, 0.4), u(0.05, 0.08)
    for side, colour in ((-1, p.primary), (1, p.secondary)):
        for k in range(m):
            r = r0 * (1 - 0.2 * k)
            x = side * (inner + th + 2 * th * k)
            p.add(_frustum(), (x, 0, 0), (r, r, th), colour, (0, np.pi / 2, 0))


def _tree(p: _Parts, u: Callable[..., float]) -> None:
    tr, th = u(0.06, 0.12), u(0.3, 0.6)
    p.add(_frustum(1.0, 0.7), (0, 0, th / 2), (tr, tr, th / 2), p.secondary)
    if p.rng.uniform() < 0.5:  # conifer: stacked cones
        n, z, w = int(p.rng.integers(2, 4)), th * 0.8, u(0.5, 0.7)
        for _ in range(n):
            ch = u(0.25, 0.35)
            p.add(_frustum(1.0, 0.0), (0, 0, z + ch), (w, w, ch), p.primary)
            z, w = z + 1.1 * ch, w * 0.75
    else:  # broadleaf: a cluster of blobs
        for _ in range(int(p.rng.integers(2, 5))):
            r = u(0.3, 0.5)
            c = (u(-0.25, 0.25), u(-0.25, 0.25), th + r * u(0.6, 1.2))
            p.add(_ELLIPSOID, c, (r, r * u(0.8, 1.2), r * u(0.8, 1.1)), p.primary)
    a, zb = u(0.6, 1.1), u(0.3, 0.8) * th
    tip = np.array([0.0, 0, zb]) + u(0.35, 0.55) * np.array([np.sin(a), 0, np.cos(a)])
    p.rod((0, 0, zb), tip, 0.6 * tr, p.secondary)
    p.add(_ELLIPSOID, tip, (0.15, 0.15, 0.12), p.accent)


def _rocket(p: _Parts, u: Callable[..., float]) -> None:
    r, hb, hn = u(0.25, 0.35), u(0.5, 0.75), u(0.15, 0.25)
    p.add(_frustum(), (0, 0, 0), (r, r, hb), p.light)
    p.add(_frustum(1.0, 0.0), (0, 0, hb + hn), (r, r, hn), p.primary)
    n, fw, fh = int(p.rng.integers(3, 5)), u(0.2, 0.3), u(0.18, 0.3)
    for k in range(n):
        a = 2 * np.pi * k / n
        c = np.array([np.cos(a), np.sin(a), 0]) * (r + fw / 2 - 0.02) + np.array([0, 0, -hb + fh])
        p.add(_BOX, c, (fw / 2, 0.02, fh), p.primary, (0, 0, a))
    p.add(_frustum(0.6, 1.0), (0, 0, -hb - 0.08), (0.7 * r, 0.7 * r, 0.08), p.dark)
    p.add(_ELLIPSOID, (r * 0.85, 0, hb * u(0.2, 0.5)), (0.05, 0.6 * r, 0.6 * r), p.accent)  # window


def _house(p: _Parts, u: Callable[..., float]) -> None:
    hx, hy, hz = u(0.55, 0.8), u(0.4, 0.6), u(0.3, 0.5)
    p.add(_BOX, (0, 0, 0), (hx, hy, hz), p.primary)
    ov = u(0.02, 0.08)
    a = hy / np.sqrt(2) + ov
    p.add(_BOX, (0, 0, hz), (hx + ov, a, a), p.secondary, (np.pi / 4, 0, 0))
    cx = u(-0.6, 0.6) * hx
    p.add(_BOX, (cx, hy * 0.45, hz + 0.6 * a), (0.07, 0.07, 0.6 * a), p.dark)  # chimney
    dh, dx = u(0.15, 0.25), u(-0.5, 0.5) * hx
    p.add(_BOX, (dx, -hy, -hz + dh), (0.09, 0.025, dh), p.accent)  # door
    wx = dx + (0.3 if dx < 0 else -0.3) * hx
    p.add(_BOX, (wx, -hy, u(-0.1, 0.2) * hz), (0.1, 0.02, 0.08), p.light)  # window


_GRAMMARS: tuple[tuple[str, Callable[[_Parts, Callable[..., float]], None]], ...] = (
    ("mug", _mug), ("chair", _chair), ("table", _table), ("lamp", _lamp),
    ("aeroplane", _aeroplane), ("car", _car), ("bottle", _bottle), ("ring", _ring),
    ("dumbbell", _dumbbell), ("tree", _tree), ("rocket", _rocket), ("house", _house),
)  # fmt: skip
CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in _GRAMMARS)


def _inside_points(rows: np.ndarray) -> np.ndarray:
    """Object-space points on a 9³ grid of each primitive's unit box that lie inside it."""
    g = np.linspace(-1.0, 1.0, 9)
    q = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    pts = []
    for row in rows:
        w0, w1, q2, q1, q0 = row[15:20]
        val = w0 * q[:, 0] ** 2 + w1 * q[:, 1] ** 2 + q2 * q[:, 2] ** 2 + q1 * q[:, 2] + q0
        local = q[val <= 1e-6] * row[12:15]
        pts.append(row[:3] + local @ row[3:12].reshape(3, 3).T)
    return np.concatenate(pts)


def object_class(object_id: int) -> int:
    """Class id of a global object id: classes cycle, so every split is balanced."""
    return int(object_id) % len(CLASS_NAMES)


def make_object(seed: int, object_id: int) -> np.ndarray:
    """Primitive rows (MAX_PRIMITIVES, PRIMITIVE_FIELDS) of one object, from (seed, id) alone."""
    rng = np.random.default_rng([int(seed), int(object_id), 7])
    parts = _Parts(rng)
    _GRAMMARS[object_class(object_id)][1](parts, lambda lo, hi: float(rng.uniform(lo, hi)))
    rows = np.stack(parts.rows)
    if len(rows) > MAX_PRIMITIVES:
        raise AssertionError(f"{CLASS_NAMES[object_class(object_id)]}: {len(rows)} primitives")
    pts = _inside_points(rows)
    centre = (pts.min(0) + pts.max(0)) / 2
    scale = 1.0 / np.linalg.norm(pts - centre, axis=1).max()
    rows[:, :3] = (rows[:, :3] - centre) * scale
    rows[:, 12:15] *= scale
    out = np.tile(_PADDING, (MAX_PRIMITIVES, 1))
    out[: len(rows)] = rows
    return out
