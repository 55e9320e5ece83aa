"""The evaluation program on a tiny trained checkpoint: outputs, reproducibility, the Q8 flag, and
clear errors (M_val too large, mismatched checkpoint, missing step) before any probe training."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tiny import load_config, tiny_batch, tiny_setup

from seqjepa_jax import checkpointing, train
from seqjepa_jax.evaluation import features, program, restore
from seqjepa_jax.models.seqjepa import SeqJEPA

REPO = os.path.join(os.path.dirname(__file__), "..")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, workdir) of a 6-step tiny run with checkpoints at steps 4 and 6."""
    config = load_config("default", "tiny")
    config.data.data_dir = str(tmp_path_factory.mktemp("data"))
    config.train.num_epochs = 1
    config.eval.compare_random_init = False
    workdir = str(tmp_path_factory.mktemp("run"))
    train.train_and_evaluate(config, workdir)
    return config, workdir


def tree_digest(directory):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()


def test_evaluation_writes_every_output_reproducibly_and_leaves_the_checkpoint(trained, tmp_path):
    config, workdir = trained
    before = tree_digest(restore.checkpoint_dir(workdir))
    options = program.EvalOptions(m_val=(1, 2), knn_k=5, use_umap=False, out_dir=str(tmp_path))
    results = program.evaluate_checkpoint(config, workdir, options)
    assert results["step"] == 6 and results["m_val"] == [1, 2]
    scores = results["probes"]["trained"]
    expected = {"agg_m1_accuracy", "agg_m2_accuracy", "encoder_accuracy"}
    expected |= {"knn_encoder_accuracy", "knn_agg_m1_accuracy", "online_accuracy"}
    for name in ("relative_rotation", "individual_rotation"):  # no colour: fixed lighting
        expected |= {f"{name}_r2_uniform", f"{name}_r2_pooled"}
    assert expected <= scores.keys()
    assert all(np.isfinite(v) for v in scores.values())
    assert "random_init" not in results["probes"]
    saved = json.load(open(tmp_path / "results.json"))
    assert saved["probes"] == results["probes"]
    table = (tmp_path / "table1.md").read_text()
    assert "| seq-JEPA (M_tr=3, M_val=2) |" in table
    for png in ("projection_aggregate.png", "projection_encoder.png", "sequence_strip.png"):
        assert (tmp_path / png).stat().st_size > 1000
    # The same command again gives the same numbers; nothing in the checkpoint changed.
    again = program.evaluate_checkpoint(
        config,
        workdir,
        program.EvalOptions(m_val=(1, 2), knn_k=5, plots=False, out_dir=str(tmp_path / "b")),
    )
    assert again["probes"] == results["probes"]
    assert tree_digest(restore.checkpoint_dir(workdir)) == before
    # An earlier step, with the heatmap of two "runs".
    earlier = program.evaluate_checkpoint(
        config,
        workdir,
        program.EvalOptions(
            m_val=(1,),
            step=4,
            knn_k=5,
            official_bn_train_mode=True,
            plots=False,
            out_dir=str(tmp_path / "c"),
            heatmap_runs=(str(tmp_path),),
        ),
    )
    assert earlier["step"] == 4 and "Q8" in earlier["bn_mode"]
    assert (tmp_path / "c" / "heatmap_mtr_mval.png").exists()


@pytest.fixture
def nothing_may_run(monkeypatch):
    """Makes restoring, building data and probing fail loudly: errors must come before them."""

    def forbidden(*args, **kwargs):
        raise AssertionError("ran past the checks")

    monkeypatch.setattr(program.checkpointing, "Checkpointer", forbidden)
    monkeypatch.setattr(program, "build_data", forbidden)
    monkeypatch.setattr(program.scoring, "probe_features", forbidden)


def test_m_val_beyond_the_views_per_object_fails_before_anything_runs(trained, nothing_may_run):
    config, workdir = trained  # 8 views per object: M_val <= 7
    with pytest.raises(ValueError, match=r"M_val=8 .*views_per_object=8.*M_val <= 7"):
        program.evaluate_checkpoint(config, workdir, program.EvalOptions(m_val=(3, 8)))
    assert program.resolve_m_val(config, None) == tuple(range(1, 8))  # default 1..8, capped
    with pytest.raises(ValueError, match=">= 1"):
        program.resolve_m_val(config, (0, 2))
    for knn_k in (0, 10_000):  # --knn_k meets config.eval.knn_k's start-up check
        with pytest.raises(ValueError, match=rf"config.eval.knn_k={knn_k} must lie in \[1, "):
            program.evaluate_checkpoint(config, workdir, program.EvalOptions(knn_k=knn_k))
    image_config = load_config("default", "tiny")
    image_config.data.name, image_config.data.latent_type = "stl10", "saccade"
    assert program.resolve_m_val(image_config, None) == tuple(range(1, 9))
    assert program.resolve_m_val(image_config, (12,)) == (12,)  # views are made on demand


def test_mismatched_checkpoint_names_the_first_leaf(trained, tmp_path, nothing_may_run):
    config, workdir = trained
    wider = load_config("default", "tiny")
    wider.data.data_dir = config.data.data_dir
    wider.model.width = 8
    with pytest.raises(
        ValueError, match=r"(batch_stats|params)/.* is float32\[.*\] in the checkpoint but float32"
    ):
        program.evaluate_checkpoint(wider, workdir, program.EvalOptions())
    no_ema = load_config("default", "tiny")
    no_ema.train.use_ema = False
    with pytest.raises(ValueError, match="the checkpoint has target_"):
        program.evaluate_checkpoint(no_ema, workdir, program.EvalOptions())
    with pytest.raises(ValueError, match=r"--step=5 is not in .*available steps: \[.*4, 6\]"):
        program.evaluate_checkpoint(config, workdir, program.EvalOptions(step=5))
    with pytest.raises(ValueError, match="No checkpoint in"):
        program.evaluate_checkpoint(config, str(tmp_path), program.EvalOptions())


def test_first_mismatch_on_plain_shape_tables():
    expected = {"params/a": ((2, 3), "float32"), "params/b": ((4,), "float32")}
    assert checkpointing.first_mismatch(expected, dict(expected)) is None
    changed = {**expected, "params/b": ((5,), "float32")}
    assert "params/b is float32[5] in the checkpoint but float32[4]" in (
        checkpointing.first_mismatch(expected, changed)
    )
    missing = {"params/a": ((2, 3), "float32")}
    assert "the config's state has params/b (4,), the checkpoint has not" in (
        checkpointing.first_mismatch(expected, missing)
    )


def test_command_line_rejects_a_bad_m_val_with_the_message(trained):
    config, workdir = trained
    command = [
        sys.executable,
        "-m",
        "seqjepa_jax.evaluate",
        f"--config={os.path.join(REPO, 'configs', 'default.py')}:tiny",
        f"--config.data.data_dir={config.data.data_dir}",
        f"--workdir={workdir}",
        "--m_val=1,9",
    ]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(REPO), JAX_PLATFORMS="cpu")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    assert "M_val=9" in done.stderr and "M_val <= 7" in done.stderr


def test_bn_train_mode_features_use_batch_statistics_and_are_reproducible():
    model, probes, _, _, _, state = tiny_setup()
    batch = tiny_batch(num_views=4)
    inference = features.make_feature_fn(model, probes, (1, 2), 3)
    official = features.make_feature_fn(model, probes, (1, 2), 3, bn_train_mode=True)
    variables = {"params": state.params["model"], "batch_stats": state.batch_stats}
    z_eval = model.apply(variables, batch["views"], train=False, method=SeqJEPA.encode)
    z_train, _ = model.apply(
        variables, batch["views"], train=True, method=SeqJEPA.encode, mutable=["batch_stats"]
    )
    out_eval = inference(state.params, state.batch_stats, batch)
    out_train = official(state.params, state.batch_stats, batch)
    np.testing.assert_allclose(out_eval["z"], z_eval, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_train["z"], z_train, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out_train["z"], out_eval["z"], atol=1e-3)
    repeat = official(state.params, state.batch_stats, batch)
    for key in out_train:
        np.testing.assert_array_equal(out_train[key], repeat[key])


def test_path_integration_and_ood_end_to_end(trained, tmp_path):
    trained_config, workdir = trained
    config = load_config("default", "tiny")
    config.data.data_dir = trained_config.data.data_dir
    config.data.procedural.num_ood_objects = 8  # the checkpoint does not depend on it
    options = program.EvalOptions(
        m_val=(1, 3), knn_k=3, use_umap=False, out_dir=str(tmp_path), ood=True
    )
    results = program.evaluate_checkpoint(config, workdir, options)
    assert results["ood"] and results["num_ood_sequences"] == 8
    assert results["path_integration_m_val"] == [3]
    trained_scores, random_scores = results["probes"]["trained"], results["probes"]["random_init"]
    for name in ("agg", "encoder", "actions"):
        assert f"path_integration_{name}_m3_r2_pooled" in trained_scores
    assert "path_integration_actions_m3_r2_uniform" not in random_scores  # model-free: once
    assert "path_integration_agg_m1_r2_uniform" not in trained_scores  # no path at M_val = 1
    for scores in (trained_scores, random_scores):
        for key in ("agg_m3_accuracy", "relative_rotation_r2_uniform"):
            assert f"ood_{key}" in scores
        assert "ood_path_integration_agg_m3_r2_uniform" in scores
    assert all(np.isfinite(v) for v in trained_scores.values())
    table = (tmp_path / "table1.md").read_text()
    assert "## Path integration" in table and "## In distribution vs OOD" in table
    assert "| path integration R², M_val=3 |" in table
    for png in ("path_integration_r2.png", "ood_vs_in_distribution.png"):
        assert (tmp_path / png).stat().st_size > 1000
