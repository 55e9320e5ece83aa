"""A built-in procedural 3D-object dataset with the layout and latents of 3DIEBench.

3DIEBench (spec §6.1) is 17 GB of Blender renders of ShapeNet objects. This module renders a
stand-in on the CPU in seconds, with no download: 12 classes of objects built from 3D primitives
(`procedural_shapes.py`: mug, chair, table, lamp, aeroplane, car, bottle, ring, dumbbell, tree,
rocket, house), with random proportions and part counts per object.

**Scene.** As in 3DIEBench (spec §6.2), the object sits at the origin inside a unit sphere, a floor
plane lies at z = -1, and the camera looks at the origin from polar angle π/4 and azimuth π/2. The
camera is orthographic (a fixed ray direction makes the ray-primitive arithmetic cheap). Its view
window (half-width 0.85) is a little smaller than the object's unit bounding sphere, so objects
cover ~43% of the pixels on average (the first prototype: 30-40%), at the price of often clipping
the tips of long parts (~9% of the border pixels show the object). Light is an ambient term, a
white key ("sun") light with a little specular, and a coloured spot light on a sphere of radius 4
that points at the origin with a soft cone of ~0.3 rad, whose pool of light moves over the object
and the floor. No shadows.

**Latents.** Each view has the 7 floats of 3DIEBench (spec §6.1 table), in the same order:
[rot_x, rot_y, rot_z, floor_hue, spot_theta, spot_phi, spot_hue]. The object is rotated by the
extrinsic xyz Euler angles, R = Rz Ry Rx (`quaternion.euler_xyz_to_matrix`), each U(-π/2, π/2); the
floor albedo is HSV(floor_hue, 0.6, 0.6); the spot light sits at polar angle θ ~ U(0, π/4), azimuth
φ ~ U(0, 2π), with colour HSV(spot_hue, 1, 0.8). In the OOD split (spec §6.2) each Euler angle is
instead sign·U(π/2, π) with an independent random sign; floor and spot are sampled as usual.

**Easier scenes** (`ProceduralConfig.max_angle`, `vary_lighting`; issue 9). 3DIEBench's scene is
the default. A smaller `max_angle` draws each in-distribution Euler angle from
U(-max_angle, max_angle) (the OOD split is unchanged, so it stays disjoint); `vary_lighting=False`
fixes floor and spot (`FIXED_LIGHTING`), so that only the pose differs between views. The CPU
default (`configs/default.py`) uses both: on its small encoder and short budget, even a
supervised encoder barely learns relative rotation over the full range (R² ≈ 0.14 after 600
steps, against 0.50 with max_angle = π/4; experiments/results/default_sweep.md).

**Renderer.** Analytic ray casting in JAX (jit + vmap over views): every primitive is a quadric
clipped by its unit box (see `procedural_shapes.py`), so one branch-free formula intersects boxes,
ellipsoids, cylinders, cones, frusta and domes, and nothing is evaluated per primitive *type*.
Objects are padded to 16 slots (inactive rows), but the hit loop is a `fori_loop` whose trip count
is a traced argument: views are sorted by their object's primitive count and cut into fixed-size
chunks, and each chunk loops over its own largest count only. So a call compiles once per (chunk,
image size) and small objects do not pay for large ones. The loop body is one XLA fusion per
primitive that keeps only the nearest hit (t, index); normals and shading are then computed once
per pixel for the winner. Rendering always runs on the CPU backend (also where an accelerator
is present), so cached pictures do not depend on the machine's accelerator. One XLA:CPU call keeps
about one core busy; the library sets no XLA flag, but where the process has several CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`, set before JAX starts) chunks are dispatched
asynchronously round-robin over them, with bit-identical results.

**Determinism and splits.** An object's shape depends on (seed, global object id) only, and its
views on (seed, object id, in-distribution/OOD). Train, val and OOD objects use disjoint id ranges
(`TRAIN_ID_OFFSET`, `VAL_ID_OFFSET`, `OOD_ID_OFFSET`), so val and OOD objects are never seen in
training and no split depends on the size of another. The same seed gives bit-identical images.
`procedural_cache.load_or_render` renders each split once and caches it on disk.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from seqjepa_jax.data.procedural_shapes import (
    CLASS_NAMES,
    make_object,
    object_class,
)
from seqjepa_jax.data.quaternion import euler_xyz_to_matrix

__all__ = [
    "CLASS_NAMES",
    "OOD_ID_OFFSET",
    "TRAIN_ID_OFFSET",
    "VAL_ID_OFFSET",
    "ProceduralConfig",
    "ViewArrays",
    "render_objects",
    "sample_latents",
    "split_object_ids",
]

# [floor_hue, spot_theta, spot_phi, spot_hue] of every view when lighting does not vary: a
# blue-grey floor, the spot light half-way up its cone range and in front of the object (towards
# the camera, which sits at azimuth π/2), orange.
FIXED_LIGHTING = (0.6, math.pi / 8, math.pi / 2, 0.08)
RENDERER_VERSION = 1  # bump whenever the pictures change, so that old caches are never reused
TRAIN_ID_OFFSET, VAL_ID_OFFSET, OOD_ID_OFFSET = 0, 1_000_000_000, 2_000_000_000
_MAX_SPLIT = 100_000_000

# Scene constants are Python floats, so that the jitted code stays float32 even under jax x64.
_S = math.sqrt(0.5)
_FWD = (0.0, -_S, -_S)  # camera at polar angle π/4, azimuth π/2 (spec §6.2), looking at the origin
_UP = (0.0, -_S, _S)
_RIGHT = (-1.0, 0.0, 0.0)
_EYE = tuple(-3.0 * v for v in _FWD)  # ray origins lie on the plane through here, outside radius 1
_HALF_WIDTH = 0.85  # of the view window; objects have radius 1 (see the module docstring)
_FLOOR_Z = -1.0
_SUN = tuple(v / math.hypot(-0.45, 0.35, 0.82) for v in (-0.45, 0.35, 0.82))
_HALF_VEC = tuple(
    (a - b) / math.dist(_SUN, _FWD) for a, b in zip(_SUN, _FWD)
)  # Blinn-Phong half vector between the sun and the viewer
_AMBIENT, _SUN_GAIN, _SPOT_GAIN, _SPECULAR = 0.3, 0.55, 1.0, 0.25
_SPOT_DISTANCE, _SPOT_COS_INNER, _SPOT_COS_OUTER = 4.0, math.cos(0.14), math.cos(0.3)
_CHUNK_PIXELS = 1 << 17  # views per XLA call: 32 at 64 px (measured best, ±noise)


def _hsv_to_rgb(h: np.ndarray, s: float, v: float) -> np.ndarray:
    """Vectorised `colorsys.hsv_to_rgb` for an array of hues: (...,) -> (..., 3)."""
    h6 = (np.asarray(h, np.float64) % 1.0) * 6.0
    i, f = np.floor(h6).astype(np.int64) % 6, h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    v = np.full_like(f, v)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(i, [row[c] for row in table]) for c in range(3)], -1)


def _hit_coefficients(prims: jax.Array, rot: jax.Array) -> tuple[jax.Array, ...]:
    """Per-primitive constants of one view's ray casts (orthographic rays share one direction)."""
    f32 = jnp.float32
    world = jnp.einsum("ij,kjl->kil", rot, prims[:, 3:12].reshape(-1, 3, 3))
    centre_w = prims[:, 0:3] @ rot.T
    to_local = jnp.swapaxes(world, 1, 2) / prims[:, 12:15, None]  # world -> unit-box coordinates
    a0 = jnp.einsum("kij,kj->ki", to_local, jnp.asarray(_EYE, f32) - centre_w)
    bx, by, d = (to_local @ jnp.asarray(v, f32) for v in (_RIGHT, _UP, _FWD))
    d = jnp.where(jnp.abs(d) < 1e-7, 1e-7, d)
    w0, w1, q2, q1, q0 = (prims[:, 15 + i] for i in range(5))
    qa = w0 * d[:, 0] ** 2 + w1 * d[:, 1] ** 2 + q2 * d[:, 2] ** 2
    inv2a = 0.5 / jnp.where(jnp.abs(qa) < 1e-9, 1e-9, qa)
    # One row of 27 scalars per primitive, read by the hit loop.
    coef = jnp.concatenate(
        [a0, bx, by, d, 1.0 / d, jnp.sign(d), jnp.stack([qa, inv2a, jnp.sign(inv2a)], 1),
         prims[:, 15:20], prims[:, 23:24]],
        axis=1,
    )  # fmt: skip
    return coef, to_local, centre_w


def _nearest_hit(
    coef: jax.Array, n_prims: jax.Array, xs: jax.Array, ys: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Ray parameter and index of the first primitive hit per pixel (1e9 and 0 where none)."""
    big = jnp.float32(1e9)

    def body(k: int, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        t_best, i_best = carry
        c = coef[k]
        o = [c[j] + xs * c[3 + j] + ys * c[6 + j] for j in range(3)]
        d, inv_d, sgn = c[9:12], c[12:15], c[15:18]
        qa, inv2a, s2a = c[18], c[19], c[20]
        w0, w1, q2, q1, q0 = (c[21 + i] for i in range(5))
        tn = functools.reduce(jnp.maximum, [(-sgn[j] - o[j]) * inv_d[j] for j in range(3)])
        tf = functools.reduce(jnp.minimum, [(sgn[j] - o[j]) * inv_d[j] for j in range(3)])
        qb = 2 * (w0 * o[0] * d[0] + w1 * o[1] * d[1] + q2 * o[2] * d[2]) + q1 * d[2]
        qc = w0 * o[0] ** 2 + w1 * o[1] ** 2 + (q2 * o[2] + q1) * o[2] + q0
        on_face = (qa * tn + qb) * tn + qc <= 0
        disc = qb * qb - 4 * qa * qc
        sq = s2a * jnp.sqrt(jnp.maximum(disc, 0))
        lo, hi = (-qb - sq) * inv2a, (-qb + sq) * inv2a
        t_quad = jnp.where(lo > tn, lo, hi)
        t = jnp.where(on_face, tn, t_quad)
        ok = on_face | ((disc >= 0) & (t_quad > tn) & (t_quad <= tf))
        better = ok & (tn <= tf) & (c[26] > 0) & (t < t_best)
        return jnp.where(better, t, t_best), jnp.where(better, k, i_best)

    shape = jnp.broadcast_shapes(xs.shape, ys.shape)
    init = (jnp.full(shape, big), jnp.zeros(shape, jnp.int32))
    return jax.lax.fori_loop(0, n_prims, body, init)


def _render_view(
    prims: jax.Array, rot: jax.Array, light: jax.Array, n_prims: jax.Array, size: int
) -> jax.Array:
    """One view: prims (K, 24) in object space, rot (3, 3), light (9,) -> (size, size, 3) uint8.

    Only the first `n_prims` primitive slots are intersected (the rest must be inactive).
    """
    f32 = jnp.float32
    coef, to_local, centre_w = _hit_coefficients(prims, rot)
    px = (jnp.arange(size, dtype=f32) + 0.5) / size * (2 * _HALF_WIDTH) - _HALF_WIDTH
    xs, ys = px[None, :], -px[:, None]  # (1, W) and (H, 1): image rows go down
    t_best, i_best = _nearest_hit(coef, n_prims, xs, ys)
    hit = t_best < 1e8
    t = jnp.where(hit, t_best, (_FLOOR_Z - _EYE[2] - ys * _UP[2]) / _FWD[2])
    pos = [_EYE[j] + xs * _RIGHT[j] + ys * _UP[j] + t * _FWD[j] for j in range(3)]
    # Normal of the winning primitive: gradient of Q, or the box face where Q < 0 strictly.
    m, cw, qd = to_local[i_best], centre_w[i_best], prims[i_best, 15:20]
    rel = [pos[j] - cw[..., j] for j in range(3)]
    q = [sum(m[..., i, j] * rel[j] for j in range(3)) for i in range(3)]
    qval = qd[..., 0] * q[0] ** 2 + qd[..., 1] * q[1] ** 2 + (qd[..., 2] * q[2] + qd[..., 3]) * q[2]
    grad = [2 * qd[..., 0] * q[0], 2 * qd[..., 1] * q[1], 2 * qd[..., 2] * q[2] + qd[..., 3]]
    aq = [jnp.abs(v) for v in q]
    top = jnp.maximum(jnp.maximum(aq[0], aq[1]), aq[2])
    face = [jnp.where(aq[i] >= top, jnp.sign(q[i]), 0.0) for i in range(3)]
    use_grad = qval + qd[..., 4] > -1e-3
    g = [jnp.where(use_grad, grad[i], face[i]) for i in range(3)]
    n = [sum(m[..., j, i] * g[j] for j in range(3)) for i in range(3)]  # (S^-1 M^T)^T g
    n = [jnp.where(hit, v, float(i == 2)) for i, v in enumerate(n)]
    inv_norm = jax.lax.rsqrt(jnp.maximum(sum(v * v for v in n), 1e-20))
    flip = jnp.where(sum(n[i] * _FWD[i] for i in range(3)) > 0, -inv_norm, inv_norm)
    n = [v * flip for v in n]  # unit normals facing the camera

    z_obj = sum(pos[j] * rot[j, 2] for j in range(3))  # object-space height: mild albedo gradient
    shade = jnp.where(hit, 0.85 + 0.15 * z_obj, 1.0)
    alb = prims[i_best, 20:23]
    base = [jnp.where(hit, alb[..., c], light[c]) * shade for c in range(3)]
    axis = light[6:9]
    to_spot = [axis[j] * _SPOT_DISTANCE - pos[j] for j in range(3)]
    inv_len = jax.lax.rsqrt(sum(v * v for v in to_spot))
    to_spot = [v * inv_len for v in to_spot]
    cos_axis = sum(to_spot[j] * axis[j] for j in range(3))
    cone = jnp.clip((cos_axis - _SPOT_COS_OUTER) / (_SPOT_COS_INNER - _SPOT_COS_OUTER), 0, 1)
    lamb_spot = jnp.maximum(sum(n[j] * to_spot[j] for j in range(3)), 0)
    spot = _SPOT_GAIN * cone * cone * (3 - 2 * cone) * lamb_spot
    sun = _AMBIENT + _SUN_GAIN * jnp.maximum(sum(n[j] * _SUN[j] for j in range(3)), 0)
    spec = jnp.maximum(sum(n[j] * _HALF_VEC[j] for j in range(3)), 0)
    spec = jnp.where(hit, _SPECULAR * (spec * spec) ** 8, 0.0)
    rgb = jnp.stack([base[c] * (sun + spot * light[3 + c]) + spec for c in range(3)], -1)
    return (jnp.clip(rgb, 0, 1) * 255 + 0.5).astype(jnp.uint8)


@functools.partial(jax.jit, static_argnames="size")
def _render_batch(
    prims: jax.Array, rots: jax.Array, lights: jax.Array, n_prims: jax.Array, size: int
) -> jax.Array:
    render = functools.partial(_render_view, n_prims=n_prims, size=size)
    return jax.vmap(render)(prims, rots, lights)


@dataclasses.dataclass(frozen=True)
class ViewArrays:
    """Rendered views of N objects, V views each, in memory."""

    images: np.ndarray  # uint8 (N, V, H, W, 3)
    latents: np.ndarray  # float32 (N, V, 7): the 3DIEBench latent layout (spec §6.1)
    labels: np.ndarray  # int32 (N,): class ids in [0, len(CLASS_NAMES))
    object_ids: np.ndarray  # int32 (N,): global object ids, disjoint across train/val/ood


@dataclasses.dataclass(frozen=True)
class ProceduralConfig:
    """Sizes of the splits and of the views (object ids: see `split_object_ids`).

    The defaults (50 train / 10 val / 10 OOD objects per class, 50 views each, 64 px) take ~0.5 GB
    and well under a minute to render on two CPU cores.
    """

    num_train_objects: int = 600
    num_val_objects: int = 120
    num_ood_objects: int = 120
    views_per_object: int = 50
    image_size: int = 64
    seed: int = 0
    max_angle: float = math.pi / 2
    vary_lighting: bool = True

    def __post_init__(self) -> None:
        for name in ("num_train_objects", "num_val_objects", "num_ood_objects"):
            _check_int(name, getattr(self, name), 0, _MAX_SPLIT)
        _check_common(self.views_per_object, self.image_size, self.seed)
        if not 0.0 < self.max_angle <= math.pi / 2:
            raise ValueError(
                f"max_angle={self.max_angle} must be in (0, π/2]: in-distribution rotations "
                "stay inside 3DIEBench's range so that the OOD split (|angle| >= π/2) is disjoint."
            )


_SPLITS = {"train": TRAIN_ID_OFFSET, "val": VAL_ID_OFFSET, "ood": OOD_ID_OFFSET}


def _check_int(name: str, value: object, lo: int, hi: int, fix: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}. {fix}".rstrip())


def _check_common(views_per_object: int, image_size: int, seed: int) -> None:
    _check_int(
        "views_per_object", views_per_object, 2, 100_000,
        "A view sequence needs at least 2 views (3DIEBench has 50).",
    )  # fmt: skip
    _check_int(
        "image_size", image_size, 16, 1024,
        "Below 16 px the objects are unrecognisable; use 32, 64 (default) or 128 (paper).",
    )  # fmt: skip
    _check_int("seed", seed, 0, 2**63 - 1, "Use a non-negative seed.")


def split_object_ids(config: ProceduralConfig, split: str) -> np.ndarray:
    """Global object ids of a split: its own id range, so no split depends on another's size.

    train: 0, 1, ...; val: VAL_ID_OFFSET + 0, 1, ...; ood: OOD_ID_OFFSET + 0, 1, ... (held-out
    instances, never in train or val, rendered with OOD rotations).
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {tuple(_SPLITS)}")
    n = getattr(config, f"num_{split}_objects")
    return (_SPLITS[split] + np.arange(n)).astype(np.int32)


def sample_latents(
    seed: int,
    object_id: int,
    views: int,
    ood: bool = False,
    *,
    max_angle: float = math.pi / 2,
    vary_lighting: bool = True,
) -> np.ndarray:
    """The (views, 7) float32 latents of one object (spec §6.1 layout; OOD angles as §6.2).

    In distribution each Euler angle is U(-max_angle, max_angle) (3DIEBench: π/2). With
    `vary_lighting=False` the floor and the spot light are the same in every view
    (`FIXED_LIGHTING`), so only the pose changes between views (an easier scene, issue 9). The
    random draws are the same for every setting, so the angles scale with `max_angle` and do not
    depend on `vary_lighting`.
    """
    rng = np.random.default_rng([int(seed), int(object_id), 2 if ood else 1])
    if ood:  # each angle independently sign·U(π/2, π)
        angles = rng.choice([-1.0, 1.0], (views, 3)) * rng.uniform(np.pi / 2, np.pi, (views, 3))
    else:
        angles = rng.uniform(-max_angle, max_angle, (views, 3))
    floor_hue = rng.uniform(0.0, 1.0, views)
    theta = rng.uniform(0.0, np.pi / 4, views)
    phi = rng.uniform(0.0, 2 * np.pi, views)
    spot_hue = rng.uniform(0.0, 1.0, views)
    lighting = np.column_stack([floor_hue, theta, phi, spot_hue])
    if not vary_lighting:
        lighting = np.broadcast_to(np.asarray(FIXED_LIGHTING), lighting.shape)
    return np.column_stack([angles, lighting]).astype(np.float32)


def _scene_inputs(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrices (..., 3, 3) and light vectors (..., 9) of views with these latents."""
    lat = latents.astype(np.float64)  # the float32 values that are stored, so labels match pixels
    rots = euler_xyz_to_matrix(lat[..., :3])
    theta, phi = lat[..., 4], lat[..., 5]
    spot_dir = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1
    )
    lights = np.concatenate(
        [_hsv_to_rgb(lat[..., 3], 0.6, 0.6), _hsv_to_rgb(lat[..., 6], 1.0, 0.8), spot_dir], -1
    )
    return rots.astype(np.float32), lights.astype(np.float32)


def render_objects(
    object_ids: np.ndarray,
    views_per_object: int,
    image_size: int,
    seed: int,
    ood: bool = False,
    *,
    max_angle: float = math.pi / 2,
    vary_lighting: bool = True,
    progress: bool = False,
) -> ViewArrays:
    """Render `views_per_object` random views of each object (in-distribution or OOD rotations).

    Deterministic: the result depends only on the arguments, and each object only on (seed, its id).
    """
    _check_common(views_per_object, image_size, seed)
    ids = np.asarray(object_ids)
    bad_range = ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.int32).max)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu") or bad_range:
        raise ValueError(f"object_ids must be a 1-D array of ids in [0, 2**31), got {ids!r}")
    ids = ids.astype(np.int64)
    n, v = len(ids), views_per_object
    prims = np.stack([make_object(seed, i) for i in ids]) if n else np.zeros((0, 1, 1))
    scene = {"max_angle": max_angle, "vary_lighting": vary_lighting}
    latents = [sample_latents(seed, i, v, ood, **scene) for i in ids]
    latents = np.stack(latents) if n else np.zeros((0, v, 7))
    images = np.zeros((n, v, image_size, image_size, 3), np.uint8)
    if n:
        rots, lights = _scene_inputs(latents)
        counts = (prims[:, :, 23] > 0).sum(1)
        # Views sorted by the primitive count of their object, so a chunk loops over few slots.
        order = np.argsort(np.repeat(counts, v), kind="stable")
        flat = np.repeat(np.arange(n), v), np.tile(np.arange(v), n)
        chunk = max(8, _CHUNK_PIXELS // image_size**2)
        chunk = min(chunk, 1 << int(np.ceil(np.log2(len(order)))))  # few views: a smaller call
        # Always on the CPU, so that a cache holds the same pictures with or without an
        # accelerator. Calls are dispatched asynchronously, round-robin over this process's CPU
        # devices (in a multi-host run the other hosts' devices are not addressable).
        devices, pending = jax.local_devices(backend="cpu"), collections.deque()
        with tqdm(total=len(order), unit="view", disable=not progress, desc="rendering") as bar:

            def collect() -> None:
                sel, out = pending.popleft()
                images[flat[0][sel], flat[1][sel]] = np.asarray(out)[: len(sel)]
                bar.update(len(sel))

            for i, start in enumerate(range(0, len(order), chunk)):
                sel = order[start : start + chunk]
                pad = np.concatenate([sel, np.repeat(sel[-1:], chunk - len(sel))])
                o, k = flat[0][pad], flat[1][pad]
                args = jax.device_put(
                    (prims[o], rots[o, k], lights[o, k]), devices[i % len(devices)]
                )
                out = _render_batch(*args, np.int32(counts[o].max()), size=image_size)
                pending.append((sel, out))
                if len(pending) > len(devices):
                    collect()
            while pending:
                collect()
    labels = np.array([object_class(i) for i in ids], np.int32)
    return ViewArrays(images, latents.astype(np.float32), labels, ids.astype(np.int32))
