"""Path integration and OOD evaluation (issue 10): action composition against SciPy, the probes on
synthetic features with a known answer, OOD rows kept out of every fit, and clear refusals."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from tiny import load_config

from seqjepa_jax.config_checks import validate_config
from seqjepa_jax.data import datasets, kinds, quaternion, threediebench
from seqjepa_jax.data import latents as L
from seqjepa_jax.data.procedural import ViewArrays
from seqjepa_jax.evaluation import probes, program, report, tables, tasks


def random_latents(n, v, seed, ood=False):
    rng = np.random.default_rng(seed)
    if ood:
        angles = rng.choice([-1.0, 1.0], (n, v, 3)) * rng.uniform(np.pi / 2, np.pi, (n, v, 3))
    else:
        angles = rng.uniform(-np.pi / 2, np.pi / 2, (n, v, 3))
    return np.concatenate([angles, rng.uniform(0, 1, (n, v, 4))], -1).astype(np.float32)


@pytest.mark.parametrize("ood", [False, True])
def test_composed_actions_equal_the_direct_transform_from_scipy(ood):
    lat = random_latents(300, 6, seed=int(ood), ood=ood)
    steps = L.relative_actions(lat, "rotcolor")  # (N, 5, 6): [q_rel, Δ floor hue, Δ spot hue]
    for s in range(1, 6):
        composed = L.compose_actions(steps[:, :s], "rotcolor")
        first = Rotation.from_euler("xyz", lat[:, 0, :3].astype(np.float64))
        last = Rotation.from_euler("xyz", lat[:, s, :3].astype(np.float64))
        direct = (first.inv() * last).as_quat(canonical=False)  # sign as produced
        np.testing.assert_allclose(composed[:, :4], direct, atol=2e-6)
        hues = lat[:, s, [3, 6]] - lat[:, 0, [3, 6]]
        np.testing.assert_allclose(composed[:, 4:], hues, atol=2e-6)
    assert (L.compose_actions(steps, "rotcolor")[:, 3] < 0).any()  # raw signs are kept
    np.testing.assert_array_equal(
        quaternion.compose_quaternions(np.zeros((2, 0, 4))), [[0, 0, 0, 1]] * 2
    )
    positions = np.random.default_rng(2).normal(size=(4, 5, 2))
    displacement = L.compose_actions(np.diff(positions, axis=1), "saccade")
    np.testing.assert_allclose(displacement, positions[:, -1] - positions[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="'aug' do not compose"):
        L.compose_actions(np.zeros((2, 3, 9)), "aug")


def synthetic_features(n, seed, m_values=(2, 3, 4)):
    """Actions that compose exactly; aggregates that encode the cumulative pose linearly."""
    lat = random_latents(n, 5, seed)
    actions = L.relative_actions(lat, "rot")
    mixing = np.random.default_rng(99).normal(size=(4, 24))
    out = {"actions": actions, "latents": lat}
    out["z"] = np.random.default_rng(seed + 1).normal(size=(n, 5, 8)).astype(np.float32)
    for m in m_values:
        out[f"agg_{m}"] = (L.compose_actions(actions[:, : m - 1], "rot") @ mixing).astype(
            np.float32
        )
    return out


def rot_config():
    return ml_collections.ConfigDict({"data": {"latent_type": "rot"}})


def test_path_integration_probe_recovers_a_known_answer_and_not_shuffled_targets():
    train, test = synthetic_features(1000, 1), synthetic_features(300, 2)
    all_tasks = {t.name: t for t in tasks.path_integration_tasks(rot_config(), (1, 2, 3))}
    assert sorted(all_tasks) == sorted(
        f"path_integration_{kind}_m{m}" for kind in ("agg", "encoder", "actions") for m in (2, 3)
    )  # M_val = 1 has no path

    def r2(task, shuffle=False):
        x, y = task.examples(train)
        if shuffle:
            y = np.random.default_rng(0).permutation(y)
        test_x, test_y = task.examples(test)
        return probes.r2_scores(test_y, probes.fit_regressor(x, y, test_x, hidden=64, steps=300))

    for m in (2, 3):
        assert r2(all_tasks[f"path_integration_agg_m{m}"])["r2_uniform"] > 0.97
        assert r2(all_tasks[f"path_integration_actions_m{m}"])["r2_uniform"] > 0.9
    shuffled = r2(all_tasks["path_integration_agg_m3"], shuffle=True)
    assert abs(shuffled["r2_uniform"]) < 0.15
    aug = ml_collections.ConfigDict({"data": {"latent_type": "aug"}})
    assert tasks.path_integration_tasks(aug, (2, 3)) == ()  # skipped, not an error


@pytest.mark.parametrize("selection", [None, probes.ProbeSelection()], ids=["fixed", "selected"])
def test_ood_rows_never_enter_a_fit(monkeypatch, selection):
    train, test = synthetic_features(200, 3, (1, 2, 3)), synthetic_features(60, 4, (1, 2, 3))
    for split in (train, test):
        split["label"] = np.arange(len(split["z"])) % 3
    poison = 1e6
    ood = {
        k: (np.full_like(v, poison) if k.startswith(("agg", "z")) else v) for k, v in test.items()
    }
    fitted = []
    standardise = probes.standardise

    def spy(train_x, test_x, *validation, **kwargs):
        fitted.extend(np.asarray(x) for x in (train_x, *validation))  # what fits or selects
        return standardise(train_x, test_x, *validation, **kwargs)

    monkeypatch.setattr(probes, "standardise", spy)
    kwargs = dict(
        num_classes=3, m_values=(1, 2, 3), probe_steps=20, probe_hidden=16, selection=selection
    )
    regressions = tasks.path_integration_tasks(rot_config(), (1, 2, 3))
    with_ood = report.frozen_probe_report(train, test, regressions=regressions, ood=ood, **kwargs)
    assert fitted and all(np.abs(x).max() < poison / 10 for x in fitted)
    without = report.frozen_probe_report(train, test, regressions=regressions, **kwargs)
    for key, value in without.items():
        np.testing.assert_allclose(with_ood[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
        assert f"ood_{key}" in with_ood
    assert with_ood["ood_path_integration_agg_m3_r2_uniform"] < 0  # poisoned inputs score badly


def test_ood_refusals_name_the_fix(tmp_path, monkeypatch):
    config = load_config("default", "tiny")
    config.data.procedural.num_ood_objects = 0
    config.eval.ood = True
    with pytest.raises(ValueError, match="num_ood_objects to a positive count"):
        validate_config(config, device_count=1)

    def forbidden(*args, **kwargs):
        raise AssertionError("ran past the checks")

    monkeypatch.setattr(program, "load_states", forbidden)
    monkeypatch.setattr(program, "build_data", forbidden)
    with pytest.raises(ValueError, match="num_ood_objects"):
        program.evaluate_checkpoint(config, str(tmp_path), program.EvalOptions(ood=True))
    real = load_config("default", "tiny")
    real.data.name, real.data.num_classes = "3diebench", 55
    real.eval.ood = True
    assert "config.data.ood_dir" in kinds.ood_problem(real)
    assert program.resolve_m_val(real, None) == (1, 2, 3)  # OOD objects have views 2..5 only
    with pytest.raises(ValueError, match=r"4 views in its OOD split.*M_val <= 3"):
        program.resolve_m_val(real, (5,))
    real.data.ood_dir = str(tmp_path)
    with pytest.raises(ValueError, match="ood_images.npy is missing"):
        datasets.check_ood_split(real)
    with pytest.raises(ValueError, match=r"have 4 views, too few for M_val=\(1, 3\).*M_val <= 3"):
        real.train.seq_len = 4
        validate_config(real, device_count=1)
    images = load_config("default", "tiny")
    images.data.name, images.data.latent_type = "cifar100", "aug"
    images.eval.ood = True
    assert "has no OOD split" in kinds.ood_problem(images)


def tiny_arrays(n, v, seed, first_id):
    rng = np.random.default_rng(seed)
    return ViewArrays(
        images=rng.integers(0, 255, (n, v, 16, 16, 3), dtype=np.uint8),
        latents=random_latents(n, v, seed, ood=first_id > 0),
        labels=np.arange(n, dtype=np.int32) % 3,
        object_ids=np.arange(first_id, first_id + n, dtype=np.int32),
    )


def test_3diebench_ood_layout_feeds_the_ood_split(tmp_path):
    root, ood_root = tmp_path / "iid", tmp_path / "ood"
    for split, seed in (("train", 0), ("val", 1)):
        threediebench.write_3diebench_tree(tiny_arrays(4, 5, seed, 0), str(root), split)
    ood = tiny_arrays(3, 4, 2, 100)
    threediebench.write_3diebench_tree(ood, str(ood_root), "ood", view_ids=kinds.OOD_VIEW_IDS)
    config = load_config("default", "tiny")
    config.data.name, config.data.num_classes = "3diebench", 3
    config.data.data_dir, config.data.ood_dir = str(root), str(ood_root)
    config.data.views_per_object, config.eval.num_views = 5, 5
    config.eval.batch_size = 4
    from seqjepa_jax.sharding import make_mesh

    data = datasets.build_data(config, make_mesh(), ood=True)
    assert data.ood_views == 4
    batch = next(iter(data.probe_batches("ood", None)))
    assert batch["views"].shape[:2] == (4, 4)  # 3 objects padded to the batch, 4 views
    assert sorted(np.asarray(batch["view_ids"][0]).tolist()) == list(kinds.OOD_VIEW_IDS)
    got = np.asarray(batch["latents"])[:3]
    order = np.asarray(batch["view_ids"])[:3] - kinds.OOD_VIEW_IDS[0]
    want = np.take_along_axis(ood.latents, order[..., None], axis=1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    plain = datasets.build_data(config, make_mesh())
    with pytest.raises(ValueError, match="No 'ood' split"):
        next(iter(plain.probe_batches("ood", None)))


def test_path_integration_and_ood_tables():
    scores = {
        "agg_m1_accuracy": 50.0,
        "ood_agg_m1_accuracy": 30.0,
        "encoder_accuracy": 40.0,
        "relative_rotation_r2_uniform": 0.5,
        "relative_rotation_r2_pooled": 0.6,
        "ood_relative_rotation_r2_uniform": 0.1,
        "ood_relative_rotation_r2_pooled": 0.2,
    }
    for kind, value in (("agg", 0.9), ("encoder", 0.4), ("actions", 0.99)):
        scores[f"path_integration_{kind}_m3_r2_uniform"] = value
        scores[f"path_integration_{kind}_m3_r2_pooled"] = value
    results = {
        "data_kind": "views",
        "m_val": [1, 3],
        "path_integration_m_val": [3],
        "probes": {"trained": scores, "random_init": {}},
    }
    path = tables.path_integration_markdown(results).splitlines()
    assert path[0].startswith("| M_val | seq-JEPA aggregate | seq-JEPA first + last encoder |")
    assert path[2] == "| 3 | 0.90 / 0.90 | 0.40 / 0.40 | – | – | 0.99 / 0.99 |"
    ood = tables.ood_markdown(results)
    assert "| top-1 (%), M_val=1 | 50.00 | 30.00 | – | – |" in ood
    assert "| relative rotation R² | 0.50 / 0.60 | 0.10 / 0.20 | – | – |" in ood
    assert "| path integration R², M_val=3 | 0.90 / 0.90 | – |" in ood
