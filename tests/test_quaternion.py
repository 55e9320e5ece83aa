"""Quaternion conventions against SciPy, sign included (spec §6.1, Q36)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from seqjepa_jax.data import quaternion


def angles(seed, n=500, low=-np.pi, high=np.pi):
    return np.random.default_rng(seed).uniform(low, high, size=(n, 3))


def test_euler_xyz_to_quaternion_equals_scipy_without_canonicalisation():
    a = angles(0)
    expected = Rotation.from_euler("xyz", a).as_quat(canonical=False)
    np.testing.assert_allclose(quaternion.euler_xyz_to_quaternion(a), expected, atol=1e-12)


def test_relative_quaternion_equals_scipy_product_sign():
    a, b = angles(1), angles(2)
    expected = (Rotation.from_euler("xyz", a).inv() * Rotation.from_euler("xyz", b)).as_quat(
        canonical=False
    )
    q_a, q_b = quaternion.euler_xyz_to_quaternion(a), quaternion.euler_xyz_to_quaternion(b)
    relative = quaternion.relative_quaternion(q_a, q_b)
    np.testing.assert_allclose(relative, expected, atol=1e-12)
    # Raw sign: some relative quaternions have w < 0 (about 4% in distribution per the spec).
    assert (relative[:, 3] < 0).any()


def test_matrices_equal_scipy_and_compose_extrinsically():
    a = angles(3)
    expected = Rotation.from_euler("xyz", a).as_matrix()
    np.testing.assert_allclose(quaternion.euler_xyz_to_matrix(a), expected, atol=1e-12)
    rx = Rotation.from_euler("x", a[0, 0]).as_matrix()
    ry = Rotation.from_euler("y", a[0, 1]).as_matrix()
    rz = Rotation.from_euler("z", a[0, 2]).as_matrix()
    np.testing.assert_allclose(quaternion.euler_xyz_to_matrix(a[0]), rz @ ry @ rx, atol=1e-12)


def test_multiply_with_conjugate_is_identity():
    q = quaternion.euler_xyz_to_quaternion(angles(4))
    identity = quaternion.quaternion_multiply(q, quaternion.quaternion_conjugate(q))
    np.testing.assert_allclose(identity, np.tile([0, 0, 0, 1.0], (len(q), 1)), atol=1e-12)
