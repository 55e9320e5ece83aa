"""Evaluation: R² definitions against sklearn/numpy, probes on synthetic features, pair building."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from seqjepa_jax.data.quaternion import euler_xyz_to_quaternion
from seqjepa_jax.evaluation import metrics, probes, report


def test_r2_uniform_matches_sklearn_and_pooled_matches_numpy():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 4)) + np.array([0.0, 0.0, 0.0, 3.0])  # a w-like offset column
    p = y + rng.normal(scale=0.5, size=y.shape)
    assert metrics.r2_uniform(y, p) == pytest.approx(r2_score(y, p), abs=1e-12)
    pooled = 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert metrics.r2_pooled(y, p) == pytest.approx(pooled, abs=1e-12)
    # The offset column inflates the pooled definition (spec §7.3).
    assert metrics.r2_pooled(y, p) > metrics.r2_uniform(y, p)


def test_r2_uniform_constant_column_follows_sklearn():
    y = np.stack([np.arange(5.0), np.ones(5)], axis=1)
    p_exact = y.copy()
    p_off = y + np.array([0.0, 0.5])
    assert metrics.r2_uniform(y, p_exact) == pytest.approx(r2_score(y, p_exact))
    assert metrics.r2_uniform(y, p_off) == pytest.approx(r2_score(y, p_off))


def test_top1_accuracy_in_percent():
    assert metrics.top1_accuracy(np.array([0, 1, 1]), np.eye(3)[[0, 1, 2]]) == pytest.approx(
        200 / 3
    )


def test_linear_probe_separates_linearly_separable_classes():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3.0, size=(4, 8))
    labels = rng.integers(0, 4, size=400)
    x = centers[labels] + rng.normal(size=(400, 8))
    out = probes.linear_probe_accuracy(x[:300], labels[:300], x[300:], labels[300:], 4, steps=200)
    assert out["accuracy"] > 90
    shuffled = probes.linear_probe_accuracy(
        x[:300], rng.permutation(labels[:300]), x[300:], labels[300:], 4, steps=200
    )
    assert shuffled["accuracy"] < 50


def test_mlp_regressor_recovers_a_smooth_function_and_not_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 6))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    good = probes.mlp_regression_r2(x[:500], y[:500], x[500:], y[500:], hidden=64, steps=400)
    assert good["r2_uniform"] > 0.8
    noise = probes.mlp_regression_r2(
        x[:500], rng.permutation(y[:500]), x[500:], y[500:], hidden=64, steps=400
    )
    assert noise["r2_uniform"] < 0.2


def test_pairs_and_single_views_are_built_from_every_consecutive_view():
    n, v, d = 3, 4, 2
    z = np.arange(n * v * d, dtype=np.float32).reshape(n, v, d)
    actions = np.arange(n * (v - 1) * 4, dtype=np.float32).reshape(n, v - 1, 4)
    latents = np.random.default_rng(0).uniform(-1, 1, size=(n, v, 7))
    x, y = report.consecutive_pairs({"z": z, "actions": actions})
    assert x.shape == (n * (v - 1), 2 * d) and y.shape == (n * (v - 1), 4)
    np.testing.assert_array_equal(x[1], np.concatenate([z[0, 1], z[0, 2]]))
    np.testing.assert_array_equal(y[1], actions[0, 1])
    xs, q = report.single_views({"z": z, "latents": latents})
    assert xs.shape == (n * v, d)
    np.testing.assert_allclose(q[5], euler_xyz_to_quaternion(latents[1, 1, :3]), atol=1e-6)


def test_frozen_report_on_features_that_encode_pose_and_class():
    """Features that carry the class and the pose linearly give high scores on every probe."""
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 3, size=n)
        latents = rng.uniform(-np.pi / 2, np.pi / 2, size=(n, 5, 7))
        q = euler_xyz_to_quaternion(latents[..., :3])
        z = np.concatenate([q, np.eye(3)[labels][:, None].repeat(5, 1)], axis=-1)
        actions = np.stack([q[:, j + 1] - q[:, j] for j in range(4)], axis=1)
        agg = np.eye(3)[labels] + 0.1 * rng.normal(size=(n, 3))
        return {
            "z": z,
            "actions": actions,
            "latents": latents,
            "label": labels,
            "agg_1": agg,
            "agg_3": agg,
        }

    out = report.frozen_probe_report(
        split(300), split(100), num_classes=3, m_values=(1, 3), probe_steps=300, probe_hidden=64
    )
    assert out["agg_m1_accuracy"] > 95 and out["encoder_accuracy"] > 95
    assert out["individual_rotation_r2_uniform"] > 0.9
    assert out["relative_action_r2_uniform"] > 0.8
