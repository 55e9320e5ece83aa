"""Rotations in the conventions of 3DIEBench and the official seq-JEPA loader (spec §6.1).

Every function here is plain NumPy and follows SciPy's `Rotation` conventions exactly, so that
action targets equal what the official code computes with `scipy.spatial.transform.Rotation`:

- Euler angles are *extrinsic* x, then y, then z (SciPy's lower-case "xyz", Blender's XYZ
  `rotation_euler`): R = Rz @ Ry @ Rx.
- Quaternions are scalar-last (x, y, z, w).
- The relative rotation between views a and b is R_a^-1 R_b, i.e. conj(q_a) ⊗ q_b in Hamilton form.
- Signs are never canonicalised (spec Q36): about 4% of in-distribution relative quaternions have
  w < 0, and a port must reproduce the raw product sign to match the official targets.

We deliberately avoid SciPy at run time (it canonicalises nothing here either, but NumPy keeps the
tf.data workers free of heavy imports); the tests check every function against SciPy.
"""

from __future__ import annotations

import numpy as np


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b of scalar-last quaternions, broadcasting over leading axes."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b), -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        axis=-1,
    )


def quaternion_conjugate(q: np.ndarray) -> np.ndarray:
    """Conjugate (the inverse, for unit quaternions) of scalar-last quaternions."""
    q = np.asarray(q)
    return np.concatenate([-q[..., :3], q[..., 3:]], axis=-1)


def euler_xyz_to_quaternion(angles: np.ndarray) -> np.ndarray:
    """Extrinsic xyz Euler angles (..., 3) -> scalar-last quaternions (..., 4).

    Equal to `Rotation.from_euler("xyz", angles).as_quat()` including the sign: the elementary
    rotations compose as q_z ⊗ q_y ⊗ q_x with q_axis = (sin(θ/2)·axis, cos(θ/2)) (spec §6.1).
    """
    angles = np.asarray(angles, dtype=np.float64)
    half = angles / 2.0
    s, c = np.sin(half), np.cos(half)
    zeros = np.zeros_like(half[..., 0])
    qx = np.stack([s[..., 0], zeros, zeros, c[..., 0]], axis=-1)
    qy = np.stack([zeros, s[..., 1], zeros, c[..., 1]], axis=-1)
    qz = np.stack([zeros, zeros, s[..., 2], c[..., 2]], axis=-1)
    return quaternion_multiply(quaternion_multiply(qz, qy), qx)


def relative_quaternion(q_from: np.ndarray, q_to: np.ndarray) -> np.ndarray:
    """Relative rotation R_from^-1 R_to as a scalar-last quaternion, sign not canonicalised."""
    return quaternion_multiply(quaternion_conjugate(q_from), q_to)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Scalar-last unit quaternions (..., 4) -> rotation matrices (..., 3, 3)."""
    x, y, z, w = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_xyz_to_matrix(angles: np.ndarray) -> np.ndarray:
    """Extrinsic xyz Euler angles (..., 3) -> rotation matrices R = Rz Ry Rx (..., 3, 3)."""
    return quaternion_to_matrix(euler_xyz_to_quaternion(angles))


def compose_quaternions(steps: np.ndarray) -> np.ndarray:
    """Composes per-step relative rotations (..., S, 4) into the total one (..., 4).

    With steps[k] = R_k^-1 R_k+1 (`relative_quaternion`), the result is the Hamilton product
    steps[0] ⊗ steps[1] ⊗ ... ⊗ steps[S-1] = R_0^-1 R_S: the path integral of the actions of a
    sequence (issue 10). The product keeps the raw sign, so it equals the direct
    `relative_quaternion(q_0, q_S)` up to rounding (conj(q_k) ⊗ q_k = 1 for unit quaternions, no
    sign flip). S = 0 gives the identity (0, 0, 0, 1).
    """
    steps = np.asarray(steps, dtype=np.float64)
    total = np.zeros(steps.shape[:-2] + (4,))
    total[..., 3] = 1.0
    for k in range(steps.shape[-2]):
        total = quaternion_multiply(total, steps[..., k, :])
    return total
