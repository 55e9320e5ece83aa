"""End to end on the procedural data: train, checkpoint, resume exactly, evaluate (issue 4)."""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import pytest
from tiny import load_config

from seqjepa_jax import checkpointing, train


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    config = load_config("default", "tiny")
    config.data.data_dir = str(tmp_path_factory.mktemp("data"))
    return config


def final_state(workdir: str, config):
    """Restores the newest checkpoint of a workdir into a freshly built state's structure."""
    mesh = train.make_mesh()
    model, probes = train.build_model(config)
    steps = train.build_data(config, mesh).steps_per_epoch(config.train.batch_size)
    lr, _ = train.build_schedules(config, steps)
    optimizer = train.build_optimizer(config.train.optimizer, lr, config.train.weight_decay)
    template = train.create_state(config, model, probes, optimizer, mesh)
    ckpt = checkpointing.Checkpointer(
        os.path.join(workdir, "checkpoints"), save_every_steps=1, async_save=False
    )
    try:
        return ckpt.restore(checkpointing.abstract_like(template))
    finally:
        ckpt.close()


def test_train_checkpoint_resume_evaluate(tiny_config, tmp_path):
    first = str(tmp_path / "first")
    results = train.train_and_evaluate(tiny_config, first)
    total = results["step"]
    assert total == 12  # 48 objects // batch 8 = 6 steps per epoch x 2 epochs
    saved = json.load(open(os.path.join(first, "results.json")))
    assert saved["step"] == total
    for name in ("trained", "random_init"):
        report = saved["probes"][name]
        assert {
            "agg_m1_accuracy",
            "agg_m3_accuracy",
            "encoder_accuracy",
            "relative_rotation_r2_uniform",
            "relative_rotation_r2_pooled",
            "relative_rotation_geodesic_deg",
            "relative_rotation_ridge_r2_uniform",
            "relative_rotation_mean_geodesic_deg",
            "knn_encoder_accuracy",
            "individual_rotation_r2_uniform",
        } <= report.keys()
        assert all(np.isfinite(v) for v in report.values())
    assert "online_accuracy" in saved["probes"]["trained"]
    assert os.path.exists(os.path.join(first, "config.json"))
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(first))
    # The training curves: history lines for every logged step and each validation, and the PNG.
    history = [json.loads(line) for line in open(os.path.join(first, "history.jsonl"))]
    train_steps = [r["step"] for r in history if r["kind"] == "train"]
    assert train_steps == list(range(2, total + 1, 2))  # log_every_steps = 2
    assert [r["step"] for r in history if r["kind"] == "eval"] == [6, 12]
    assert all(r["encoder_effective_rank"] >= 1.0 for r in history if r["kind"] == "train")
    with open(os.path.join(first, "training_curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # Simulate an interruption after step 4: keep only that checkpoint, rerun the same command.
    second = str(tmp_path / "second")
    shutil.copytree(first, second)
    for step_dir in os.listdir(os.path.join(second, "checkpoints")):
        if step_dir.isdigit() and int(step_dir) > 4:
            shutil.rmtree(os.path.join(second, "checkpoints", step_dir))
    os.remove(os.path.join(second, "results.json"))
    tiny_config.eval.compare_random_init = False
    resumed = train.train_and_evaluate(tiny_config, second)
    tiny_config.eval.compare_random_init = True
    assert resumed["steps_trained_this_run"] == total - 4
    # The resumed history keeps steps <= 4 once and records the rest again, like the first run.
    resumed_history = [json.loads(line) for line in open(os.path.join(second, "history.jsonl"))]
    assert [(r["step"], r["kind"]) for r in resumed_history] == [
        (r["step"], r["kind"]) for r in history
    ]
    a, b = final_state(first, tiny_config), final_state(second, tiny_config)
    assert int(a.step) == int(b.step) == total
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_allclose(
        resumed["final_train_metrics"]["loss"], results["final_train_metrics"]["loss"], rtol=1e-6
    )
