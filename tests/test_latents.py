"""Latent types and relative actions against SciPy's Rotation (spec §6.1, Q13, Q14, Q36)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from seqjepa_jax.data import latents as L


def _latents(shape, ood=False, seed=0):
    """Random 3DIEBench latents (spec §6.1 ranges; OOD angles ±U(π/2, π) as in spec §6.2)."""
    rng = np.random.default_rng(seed)
    if ood:
        angles = rng.choice([-1.0, 1.0], (*shape, 3)) * rng.uniform(np.pi / 2, np.pi, (*shape, 3))
    else:
        angles = rng.uniform(-np.pi / 2, np.pi / 2, (*shape, 3))
    other = np.stack(
        [
            rng.uniform(0, 1, shape),
            rng.uniform(0, np.pi / 4, shape),
            rng.uniform(0, 2 * np.pi, shape),
            rng.uniform(0, 1, shape),
        ],
        axis=-1,
    )
    return np.concatenate([angles, other], axis=-1).astype(np.float32)


def _scipy_abs_quat(lat):
    flat = lat.reshape(-1, 7)
    return Rotation.from_euler("xyz", flat[:, :3]).as_quat().reshape(*lat.shape[:-1], 4)


def _scipy_rel_quat(lat):
    """Official datasets.py: (R_k^-1 R_{k+1}).as_quat() per consecutive pair, per sequence."""
    out = []
    for seq in lat.reshape(-1, *lat.shape[-2:]):
        rots = Rotation.from_euler("xyz", seq[:, :3])
        out.append([(rots[k].inv() * rots[k + 1]).as_quat() for k in range(len(seq) - 1)])
    return np.asarray(out).reshape(*lat.shape[:-2], lat.shape[-2] - 1, 4)


def test_action_dims():
    assert {t: L.action_dim(t) for t in L.LATENT_TYPES} == {
        "rot": 4,
        "color": 2,
        "rotcolor": 6,
        "all": 8,
    }


@pytest.mark.parametrize("fn", [L.action_dim, lambda t: L.relative_actions(_latents((3,)), t)])
def test_unknown_latent_type_lists_valid_ones(fn):
    with pytest.raises(ValueError, match="rot.*color.*rotcolor.*all"):
        fn("quat")


@pytest.mark.parametrize("ood", [False, True])
def test_rot_matches_scipy_including_sign(ood):
    lat = _latents((64, 5), ood=ood)
    rel = L.relative_actions(lat, "rot")
    assert rel.shape == (64, 4, 4) and rel.dtype == np.float32
    np.testing.assert_allclose(rel, _scipy_rel_quat(lat), atol=2e-7)
    np.testing.assert_allclose(L.absolute_latents(lat, "rot"), _scipy_abs_quat(lat), atol=2e-7)
    # Q36: the raw product sign is kept, so some relative quaternions have w < 0.
    assert (rel[..., 3] < 0).any()
    if ood:
        assert (L.absolute_latents(lat, "rot")[..., 3] < 0).any()


def test_rotcolor_color_and_all():
    lat = _latents((7, 4), seed=1)
    q_rel, q_abs = _scipy_rel_quat(lat), _scipy_abs_quat(lat)
    d = lat[:, 1:] - lat[:, :-1]

    color = L.relative_actions(lat, "color")
    np.testing.assert_allclose(color, d[..., [3, 6]], atol=1e-6)
    np.testing.assert_array_equal(L.absolute_latents(lat, "color"), lat[..., [3, 6]])

    rotcolor = L.relative_actions(lat, "rotcolor")
    assert rotcolor.shape == (7, 3, 6)
    np.testing.assert_allclose(rotcolor[..., :4], q_rel, atol=2e-7)
    np.testing.assert_allclose(rotcolor[..., 4:], d[..., [3, 6]], atol=1e-6)
    abs_rc = L.absolute_latents(lat, "rotcolor")
    np.testing.assert_allclose(abs_rc, np.concatenate([q_abs, lat[..., [3, 6]]], -1), atol=2e-7)

    # 'all' is 8-dimensional in both forms (the official relative form has 9 values, Q13).
    rel_all, abs_all = L.relative_actions(lat, "all"), L.absolute_latents(lat, "all")
    assert rel_all.shape == (7, 3, 8) and abs_all.shape == (7, 4, 8)
    np.testing.assert_allclose(rel_all, np.concatenate([q_rel, d[..., 3:7]], -1), atol=1e-6)
    np.testing.assert_allclose(abs_all, np.concatenate([q_abs, lat[..., 3:7]], -1), atol=2e-7)


def test_relative_is_consistent_with_absolute():
    """Composing absolute q_j with relative q_{j->j+1} gives q_{j+1} (exactly, no sign flip)."""
    from seqjepa_jax.data import quaternion

    lat = _latents((10, 6), ood=True, seed=2)
    q = L.absolute_latents(lat, "rot").astype(np.float64)
    rel = L.relative_actions(lat, "rot").astype(np.float64)
    np.testing.assert_allclose(quaternion.quaternion_multiply(q[:, :-1], rel), q[:, 1:], atol=1e-6)


def test_hue_difference_does_not_wrap():
    lat = np.zeros((2, 7), np.float32)
    lat[:, 3] = [0.9, 0.1]
    lat[:, 6] = [0.05, 0.95]
    np.testing.assert_allclose(L.relative_actions(lat, "color"), [[-0.8, 0.9]], atol=1e-6)


def test_unbatched_and_identity():
    lat = _latents((3,), seed=3)
    assert L.relative_actions(lat, "rotcolor").shape == (2, 6)
    same = np.repeat(lat[:1], 2, axis=0)
    np.testing.assert_allclose(L.relative_actions(same, "rot"), [[0, 0, 0, 1]], atol=1e-7)


def test_bad_shapes():
    with pytest.raises(ValueError, match="at least 2 views"):
        L.relative_actions(np.zeros((1, 7), np.float32), "rot")
    with pytest.raises(ValueError, match=r"\(\.\.\., V, 7\)"):
        L.absolute_latents(np.zeros((4, 6), np.float32), "rot")
