"""The probe protocol of issue 19: validation split of the training objects, early stopping and
hyperparameter grids chosen on it, the ridge reference, the predict-the-mean floor, probe seeds,
and the geodesic rotation error."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from sklearn.linear_model import Ridge

from seqjepa_jax.evaluation import metrics, probes, report


def test_validation_split_is_a_fixed_disjoint_cover_of_the_objects():
    fit, val = probes.validation_split(50, 0.2)
    assert len(val) == 10 and len(fit) == 40
    assert not set(fit) & set(val) and sorted({*fit, *val}) == list(range(50))
    np.testing.assert_array_equal(probes.validation_split(50, 0.2)[1], val)
    assert len(probes.validation_split(3, 0.01)[1]) == 1  # never an empty side
    with pytest.raises(ValueError, match="0 < fraction < 1"):
        probes.validation_split(10, 1.0)


def test_geodesic_error_matches_scipy_and_ignores_sign_and_scale():
    rng = np.random.default_rng(0)
    truth = Rotation.random(50, random_state=1)
    predicted = Rotation.random(50, random_state=2)
    expected = np.degrees((predicted.inv() * truth).magnitude()).mean()
    q_true, q_pred = truth.as_quat(), predicted.as_quat()
    assert metrics.geodesic_degrees(q_true, q_pred) == pytest.approx(expected, rel=1e-6)
    scaled = -q_pred * rng.uniform(0.1, 3.0, size=(50, 1))  # -q is q; MLPs are not unit-norm
    assert metrics.geodesic_degrees(q_true, scaled) == pytest.approx(expected, rel=1e-6)
    assert metrics.geodesic_degrees(q_true, q_true) == pytest.approx(0.0, abs=1e-3)
    # Extra columns (rotcolor's hue deltas) are ignored.
    with_hue = np.concatenate([q_true, rng.normal(size=(50, 2))], axis=1)
    assert metrics.geodesic_degrees(with_hue, q_true) == pytest.approx(0.0, abs=1e-3)


def test_early_stopping_keeps_the_step_of_lowest_validation_loss():
    """On noisy targets a wide MLP overfits; the early-stopped one predicts held-out data better
    than the one trained for all steps, and its step is where the validation loss was lowest."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 20)).astype(np.float32)
    y = (x[:, :1] + rng.normal(scale=1.0, size=(160, 1))).astype(np.float32)
    module = probes.MLPRegressor(1, 256)
    args = [jnp.asarray(a) for a in (x[:80], y[:80], x[80:120], y[80:120])]
    params, best_loss, best_step = probes.fit_early_stopped(module, *args, 400, 1e-2, 0.0, 0)
    assert 0 < int(best_step) < 400
    last = probes.fit_full_batch(module, probes._mean_squared_error, *args[:2], 400, 1e-2, 0.0)

    def test_mse(p):
        return float(np.mean((np.asarray(module.apply(p, x[120:])) - y[120:]) ** 2))

    val_mse = float(np.mean((np.asarray(module.apply(params, x[80:120])) - y[80:120]) ** 2))
    assert val_mse == pytest.approx(float(best_loss), rel=1e-4)
    assert test_mse(params) < test_mse(last)


def test_ridge_penalty_is_chosen_on_validation_as_sklearn_would_score_it():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 40))
    y = x[:, :2] @ np.array([[1.0], [-2.0]]) + rng.normal(scale=1.0, size=(90, 1))
    selection = probes.ProbeSelection(ridge_alphas=(1e-3, 10.0, 1e5))
    fit_x, val_x, test_x = x[:50], x[50:70], x[70:]
    ours = probes.fit_regressor(
        fit_x,
        y[:50],
        test_x,
        head="linear",
        validation=(val_x, y[50:70]),
        selection=selection,
        feature_scaling="per_feature",  # the z-scores below
    )
    mean, std = fit_x.mean(0), fit_x.std(0) + 1e-6
    scaled = [(a - mean) / std for a in (fit_x, val_x, test_x)]
    target = y[:, 0]  # 1-D for sklearn (a (N, 1) fit predicts (N,))
    errors = [
        np.mean(
            (Ridge(alpha=a).fit(scaled[0], target[:50]).predict(scaled[1]) - target[50:70]) ** 2
        )
        for a in selection.ridge_alphas
    ]
    alpha = selection.ridge_alphas[int(np.argmin(errors))]
    assert alpha == 10.0  # neither the unpenalised nor the flat fit
    expected = Ridge(alpha=alpha).fit(np.concatenate(scaled[:2]), target[:70]).predict(scaled[2])
    np.testing.assert_allclose(ours[:, 0], expected, rtol=1e-4, atol=1e-5)


def _pose_features(n: int, rng: np.random.Generator, informative: bool) -> dict:
    rotations = Rotation.random(n * 3, random_state=rng.integers(1 << 30)).as_quat()
    q = rotations.reshape(n, 3, 4).astype(np.float32)
    z = q if informative else rng.normal(size=q.shape).astype(np.float32)
    return {"z": z, "label": rng.integers(0, 2, n), "quaternion": q}


def test_report_with_selection_seeds_reference_and_floor():
    """Pose-carrying features beat the floor by far on every readout; random features do not,
    and their R² is near the floor's; the seed spread and the ridge reference are reported."""
    rng = np.random.default_rng(2)
    task = report.RegressionTask(
        "individual_rotation", "single", lambda f: f["quaternion"], rotation=True
    )
    selection = probes.ProbeSelection(weight_decays=(1e-4, 1e-2), seeds=(0, 1, 2))
    kwargs = dict(num_classes=2, m_values=(), probe_steps=150, probe_hidden=32, selection=selection)
    informative = report.frozen_probe_report(
        _pose_features(200, rng, True), _pose_features(60, rng, True), regressions=(task,), **kwargs
    )
    noise = report.frozen_probe_report(
        _pose_features(200, rng, False),
        _pose_features(60, rng, False),
        regressions=(task,),
        **kwargs,
    )
    for out in (informative, noise):
        for key in ("r2_uniform", "r2_pooled", "geodesic_deg"):
            assert f"individual_rotation_{key}_seed_std" in out
            assert (
                f"individual_rotation_ridge_{key}" in out
                and f"individual_rotation_mean_{key}" in out
            )
        assert abs(out["individual_rotation_mean_r2_uniform"]) < 0.1  # the train mean on test
    assert informative["individual_rotation_r2_uniform"] > 0.8
    assert informative["individual_rotation_ridge_r2_uniform"] > 0.5
    floor = informative["individual_rotation_mean_geodesic_deg"]
    assert informative["individual_rotation_geodesic_deg"] < floor / 2
    assert noise["individual_rotation_r2_uniform"] < 0.1
    assert (
        noise["individual_rotation_geodesic_deg"]
        > 0.9 * noise["individual_rotation_mean_geodesic_deg"]
    )
    assert informative["individual_rotation_r2_uniform_seed_std"] < 0.05
