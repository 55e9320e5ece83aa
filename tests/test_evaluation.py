"""Evaluation: R² definitions against sklearn/numpy, probes on synthetic features, pair building,
the regression tasks of each data kind."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from tiny import load_config

from seqjepa_jax.data.quaternion import euler_xyz_to_quaternion
from seqjepa_jax.evaluation import metrics, probes, report, tasks


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

    individual = tasks.regression_tasks(load_config("default", "tiny"))[0][1]
    regressions = (
        report.RegressionTask("relative_action", "pair", lambda f: f["actions"]),
        individual,
    )
    out = report.frozen_probe_report(
        split(300),
        split(100),
        num_classes=3,
        m_values=(1, 3),
        probe_steps=300,
        probe_hidden=64,
        regressions=regressions,
    )
    assert out["agg_m1_accuracy"] > 95 and out["encoder_accuracy"] > 95
    assert out["individual_rotation_r2_uniform"] > 0.9
    assert (
        out["individual_rotation_geodesic_deg"] < out["individual_rotation_mean_geodesic_deg"] / 3
    )
    assert out["relative_action_r2_uniform"] > 0.8


def test_frozen_report_leaves_the_callers_feature_dicts_unchanged():
    """The report adds no key (e.g. a one-view `z0`) to the train, test or OOD dicts it gets."""
    rng = np.random.default_rng(0)

    def split(n):
        return {"z": rng.normal(size=(n, 2, 4)), "label": np.arange(n) % 2, "agg_1": np.eye(n, 3)}

    train, test, ood = split(8), split(4), split(4)
    keys = [set(d) for d in (train, test, ood)]
    report.frozen_probe_report(
        train, test, num_classes=2, m_values=(1,), probe_steps=2, probe_hidden=4,
        regressions=(), ood=ood,
    )  # fmt: skip
    assert [set(d) for d in (train, test, ood)] == keys


def test_r2_definitions_on_relative_quaternions_predicted_by_their_column_means():
    """Predicting each column's mean: uniform R² is exactly 0, pooled R² is the share of the total
    spread that lies between the column means (the w column's mean ≈ 0.5; spec §7.3)."""
    rng = np.random.default_rng(0)
    angles = rng.uniform(-np.pi / 2, np.pi / 2, size=(4000, 2, 3))
    q = euler_xyz_to_quaternion(angles)
    rel = tasks.latents_lib.relative_actions(
        np.concatenate([angles, np.zeros((4000, 2, 4))], axis=-1), "rot"
    )[:, 0].astype(np.float64)
    assert rel[:, 3].mean() > 0.3  # the non-zero-mean w column
    means = np.broadcast_to(rel.mean(axis=0), rel.shape)
    assert metrics.r2_uniform(rel, means) == pytest.approx(r2_score(rel, means), abs=1e-12)
    assert metrics.r2_uniform(rel, means) == pytest.approx(0.0, abs=1e-12)
    between = len(rel) * ((rel.mean(axis=0) - rel.mean()) ** 2).sum()
    expected_pooled = between / ((rel - rel.mean()) ** 2).sum()
    assert metrics.r2_pooled(rel, means) == pytest.approx(expected_pooled, rel=1e-9)
    assert 0.15 < metrics.r2_pooled(rel, means) < 0.3  # peers_and_numbers.md §3.1: ≈ 0.23
    assert q.shape == (4000, 2, 4)


def test_linear_regression_probe_recovers_a_linear_relation_and_matches_sklearn_ridge():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 10)) * rng.uniform(0.1, 5.0, size=10)
    y = x @ rng.normal(size=(10, 3)) + np.array([0.0, 2.0, -1.0])
    predictions = probes.fit_regressor(x[:400], y[:400], x[400:], head="linear")
    scores = probes.r2_scores(y[400:], predictions)
    assert scores["r2_uniform"] > 0.99 and scores["r2_pooled"] > 0.99
    train_s, test_s = probes.standardise(x[:400], x[400:])
    expected = Ridge(alpha=1.0).fit(train_s, y[:400]).predict(test_s)
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="Unknown regression head"):
        probes.fit_regressor(x, y, x, head="lasso")


def test_global_scaling_divides_every_centred_feature_by_one_rms_scale():
    rng = np.random.default_rng(5)
    train = rng.normal(size=(300, 4)) * np.array([0.01, 1.0, 3.0, 10.0]) + 7.0
    test = rng.normal(size=(50, 4))
    scaled_train, scaled_test = probes.standardise(train, test, scaling="global")
    centred = train - train.mean(axis=0)
    rms = np.sqrt(np.sum(centred**2) / centred.size)  # one number for all four features
    np.testing.assert_allclose(scaled_train, centred / rms, rtol=1e-6)
    np.testing.assert_allclose(scaled_test, (test - train.mean(axis=0)) / rms, rtol=1e-6)
    # The encoder's geometry is kept: the features' relative scales are those of the input.
    np.testing.assert_allclose(
        scaled_train.std(axis=0) / scaled_train.std(axis=0)[-1], [0.001, 0.1, 0.3, 1.0], rtol=0.2
    )
    with pytest.raises(ValueError, match="Unknown feature scaling 'minmax'"):
        probes.standardise(train, test, scaling="minmax")


def test_a_nearly_constant_feature_misleads_the_per_feature_probe_not_the_global_one():
    """A unit that is nearly always off on the training objects (std 1e-5) and on for held-out
    objects (value 0.01): z-scored per feature it reaches 1e3 and wrecks the MLP probe's predictions
    (the random-init artefact of issue 19); with one global scale it stays near 0.01."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(400, 6))
    y = np.tanh(x[:, :2])
    x[:, 5] = rng.normal(size=400) * 1e-5
    x[300:, 5] = 0.01  # held out: the dead unit fires
    kwargs = dict(hidden=16, steps=150, learning_rate=1e-2)
    per_feature = probes.fit_regressor(
        x[:300], y[:300], x[300:], feature_scaling="per_feature", **kwargs
    )
    global_ = probes.fit_regressor(x[:300], y[:300], x[300:], feature_scaling="global", **kwargs)
    assert np.abs(probes.standardise(x[:300], x[300:], scaling="per_feature")[1][:, 5]).min() > 100
    assert np.abs(probes.standardise(x[:300], x[300:], scaling="global")[1][:, 5]).max() < 0.1
    assert metrics.r2_pooled(y[300:], per_feature) < 0.0
    assert metrics.r2_pooled(y[300:], global_) > 0.8


def test_the_probes_and_the_config_default_to_the_same_feature_scaling():
    """config_defaults stays JAX-free, so it spells the default out; it must be the probes' one."""
    assert load_config("default").eval.feature_scaling == probes.DEFAULT_FEATURE_SCALING == "global"
    x = np.random.default_rng(7).normal(size=(50, 3)) * np.array([1.0, 2.0, 4.0])
    for by_default, explicit in zip(
        probes.standardise(x, x), probes.standardise(x, x, scaling="global")
    ):
        np.testing.assert_array_equal(by_default, explicit)


def test_mlp_regression_probe_is_reproducible():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5))
    y = np.tanh(x[:, :2])
    first = probes.fit_regressor(x[:150], y[:150], x[150:], hidden=16, steps=50)
    np.testing.assert_array_equal(
        first, probes.fit_regressor(x[:150], y[:150], x[150:], hidden=16, steps=50)
    )


def test_linear_classifier_reaches_100_percent_on_a_linear_rule():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 6))
    logits = x @ rng.normal(size=(6, 3))
    top2 = np.sort(logits, axis=1)[:, -2:]
    x, labels = x[top2[:, 1] - top2[:, 0] > 0.5][:600], np.argmax(logits, axis=1)
    labels = labels[top2[:, 1] - top2[:, 0] > 0.5][:600]
    first = probes.linear_probe_accuracy(x[:500], labels[:500], x[500:], labels[500:], 3)
    assert first["train_accuracy"] == 100.0 and first["accuracy"] == 100.0
    second = probes.linear_probe_accuracy(x[:500], labels[:500], x[500:], labels[500:], 3)
    assert first == second


def test_regression_task_checks_target_shape_and_combined_scores_concatenate():
    rng = np.random.default_rng(5)
    n, v, d = 40, 3, 4
    z = rng.normal(size=(n, v, d))
    bad = report.RegressionTask("bad", "pair", lambda f: np.zeros((n, v, 2)))
    with pytest.raises(ValueError, match="Targets of probe 'bad'"):
        bad.examples({"z": z})
    with pytest.raises(ValueError, match="inputs="):
        report.RegressionTask("x", "triple", lambda f: f)

    def features(n):
        z = rng.normal(size=(n, v, d))
        return {"z": z, "label": rng.integers(0, 2, n), "agg_1": z[:, 0], "latents": z}

    # Targets linear in the pair: the ridge head recovers them; the MLP nearly so.
    first = report.RegressionTask("first", "pair", lambda f: f["z"][:, :-1, :2], head="linear")
    second = report.RegressionTask("second", "pair", lambda f: 3 * f["z"][:, 1:, 2:])
    out = report.frozen_probe_report(
        features(300),
        features(100),
        num_classes=2,
        m_values=(1,),
        probe_steps=400,
        probe_hidden=32,
        regressions=(first, second),
        combined={"both": ("first", "second")},
    )
    assert out["first_r2_uniform"] > 0.99 and out["second_r2_uniform"] > 0.9
    # Uniform R² of the concatenation is the column-weighted mean of the parts' (2 + 2 columns).
    assert out["both_r2_uniform"] == pytest.approx(
        (out["first_r2_uniform"] + out["second_r2_uniform"]) / 2, abs=1e-9
    )
    assert "relative_action_r2_uniform" not in out


def test_regression_tasks_follow_the_official_probes_of_each_data_kind():
    config = load_config("default", "tiny")
    config.data.procedural.vary_lighting = True  # 3DIEBench's scene
    names = {t.name: t.head for t in tasks.regression_tasks(config)[0]}
    assert names == {
        "relative_rotation": "mlp",
        "individual_rotation": "mlp",
        "relative_colour": "linear",
    }
    # The default's fixed lighting has no colour change to regress: no colour probe.
    config.data.procedural.vary_lighting = False
    names = [t.name for t in tasks.regression_tasks(config)[0]]
    assert names == ["relative_rotation", "individual_rotation"]
    config.data.name, config.data.latent_type = "cifar100", "aug"
    regressions, combined = tasks.regression_tasks(config)
    assert [t.name for t in regressions] == [
        "relative_crop",
        "relative_jitter",
        "relative_blur",
        "individual_augmentation",
    ]
    assert combined == {
        "relative_augmentation": ("relative_crop", "relative_jitter", "relative_blur")
    }
    config.data.augment.use_blur = False
    assert "relative_blur" not in {t.name for t in tasks.regression_tasks(config)[0]}
    config.data.name, config.data.latent_type = "stl10", "saccade"
    assert {t.name: t.head for t in tasks.regression_tasks(config)[0]} == {
        "relative_position": "linear",
        "individual_position": "mlp",
    }


def test_colour_and_rotation_targets_come_from_the_latents():
    rng = np.random.default_rng(6)
    latents = rng.uniform(-1, 1, size=(2, 3, 7))
    features = {"latents": latents}
    colours = tasks.relative_colours(features)
    np.testing.assert_allclose(colours[1, 0], latents[1, 1, [3, 6]] - latents[1, 0, [3, 6]], 1e-6)
    rotations = tasks.relative_rotations(features)
    r = Rotation.from_euler("xyz", latents[0, :, :3])
    np.testing.assert_allclose(rotations[0, 1], (r[1].inv() * r[2]).as_quat(), atol=1e-6)
    actions = rng.normal(size=(2, 2, 9))
    crop, jitter, blur = (
        task.targets({"actions": actions}) for task in tasks.regression_tasks(aug_config())[0][:3]
    )
    np.testing.assert_array_equal(np.concatenate([crop, jitter, blur], axis=-1), actions)


def aug_config():
    config = load_config("default", "tiny")
    config.data.name, config.data.latent_type = "cifar100", "aug"
    return config


def test_standardised_targets_fit_a_low_variance_column_that_raw_targets_leave_behind():
    # Column 0 varies 1000x more than column 1 (like a quaternion's x vs its w for small
    # rotations): on raw targets the MSE ignores column 1, so its R² (sklearn, per column) stays
    # low; z-scored targets weigh both columns equally.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 6)).astype(np.float32)
    y = np.stack([10.0 * x[:, 0], 0.01 * x[:, 1]], axis=1).astype(np.float32)
    fit = dict(hidden=32, steps=300)
    raw = probes.fit_regressor(x[:500], y[:500], x[500:], **fit)
    scaled = probes.fit_regressor(x[:500], y[:500], x[500:], standardise_targets=True, **fit)
    raw_r2 = r2_score(y[500:], raw, multioutput="raw_values")
    scaled_r2 = r2_score(y[500:], scaled, multioutput="raw_values")
    assert scaled_r2[1] > 0.9 and raw_r2[1] < 0.5, (raw_r2, scaled_r2)
    assert scaled_r2[0] > 0.9
    # Ridge is linear in the targets: the flag must not change its predictions.
    np.testing.assert_allclose(
        probes.fit_regressor(x[:500], y[:500], x[500:], head="linear", standardise_targets=True),
        probes.fit_regressor(x[:500], y[:500], x[500:], head="linear"),
        rtol=1e-5,
        atol=1e-7,
    )
