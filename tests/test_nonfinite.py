"""A non-finite step in the real training loop: stop naming it, or skip it (issue 7.4).

A NaN is injected into the views of one batch of the tiny procedural run, with a checkpoint every
step, so that a checkpoint written from the poisoned state would be caught.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import load_config

from seqjepa_jax import checkpointing, train
from seqjepa_jax.data import datasets

BAD_STEP = 3  # the step whose update sees the NaN batch (state.step goes 2 -> 3)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    config = load_config("default", "tiny")
    config.data.data_dir = str(tmp_path_factory.mktemp("data"))
    config.train.num_epochs = 1
    config.train.checkpoint_every_steps = 1
    config.train.log_every_steps = 100  # the pre-save check must catch it, not the log
    config.train.eval_every_epochs = 100
    config.eval.compare_random_init = False
    config.eval.probe_steps = 2
    return config


@pytest.fixture
def poisoned_stream(monkeypatch):
    clean = datasets.ViewSourceData.train_batches

    def stream(self, start_step):
        for step, batch in enumerate(clean(self, start_step), start_step + 1):
            if step == BAD_STEP:
                batch = {**batch, "views": batch["views"] * jnp.nan}
            yield batch

    monkeypatch.setattr(datasets.ViewSourceData, "train_batches", stream)


def stored_steps(workdir: str) -> list[int]:
    return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


def test_nonfinite_stops_naming_step_and_metric(config, poisoned_stream, tmp_path):
    workdir = str(tmp_path / "work")
    with pytest.raises(FloatingPointError, match=rf"Non-finite .*loss.* at step {BAD_STEP}\b"):
        train.train_and_evaluate(config, workdir)
    assert stored_steps(workdir) and max(stored_steps(workdir)) < BAD_STEP
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), save_every_steps=1)
    model, probes = train.build_model(config)
    learning_rate, _ = train.build_schedules(config, steps_per_epoch=6)
    optimizer = train.build_optimizer(config.train.optimizer, learning_rate, 0.0)
    template = train.abstract_state(config, model, probes, optimizer, train.make_mesh())
    state = ckpt.restore(template)
    ckpt.close()
    assert int(state.step) == BAD_STEP - 1
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))


@pytest.mark.slow  # a second compile of the step and a final evaluation; unit-tested in test_faults
def test_nonfinite_skip_keeps_training(config, poisoned_stream, tmp_path):
    config = config.copy_and_resolve_references()
    config.train.on_nonfinite = "skip"
    results = train.train_and_evaluate(config, str(tmp_path / "work"))
    assert results["nonfinite_skipped_steps"] == [BAD_STEP]
    assert results["step"] == 6
    assert np.isfinite(results["final_train_metrics"]["loss"])
