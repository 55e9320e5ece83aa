"""Tiny model variants and synthetic batches shared by the tests (not a test module)."""

from __future__ import annotations

import os

import jax
import numpy as np

from seqjepa_jax import optimizers, schedules
from seqjepa_jax.config_defaults import load_config_file
from seqjepa_jax.models.heads import OnlineProbes
from seqjepa_jax.models.seqjepa import SeqJEPA
from seqjepa_jax.sharding import make_mesh, replicated
from seqjepa_jax.state import init_train_state
from seqjepa_jax.train_step import jit_train_step, make_train_step

IMAGE = 16


def tiny_model(**overrides) -> SeqJEPA:
    kwargs = dict(
        action_dim=4,
        stem="cifar",
        width=4,
        stage_sizes=(1, 1, 1, 1),
        act_proj_dim=8,
        num_heads=4,
        num_layers=2,
        pred_hidden=16,
    )
    kwargs.update(overrides)
    return SeqJEPA(**kwargs)


def tiny_probes(model: SeqJEPA, num_classes: int = 5) -> OnlineProbes:
    return OnlineProbes(num_classes, model.action_dim, hidden=16)


def tiny_batch(batch: int = 8, num_views: int = 4, action_dim: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "views": rng.normal(size=(batch, num_views, IMAGE, IMAGE, 3)).astype(np.float32),
        "actions": rng.normal(size=(batch, num_views - 1, action_dim)).astype(np.float32),
        "label": rng.integers(0, 5, size=batch).astype(np.int32),
    }


def init_state_on(mesh, model, probes, opt, num_obs: int, use_ema: bool, seed: int):
    """The train state of 16 px inputs, initialised directly with a replicated sharding."""
    return jax.jit(
        lambda key: init_train_state(
            key,
            model,
            probes,
            opt,
            num_obs_views=num_obs,
            image_shape=(IMAGE, IMAGE, 3),
            use_ema=use_ema,
        ),
        out_shardings=replicated(mesh),
    )(jax.random.PRNGKey(seed))


def tiny_setup(
    model: SeqJEPA | None = None,
    use_ema: bool = True,
    steps_per_epoch: int = 2,
    num_epochs: int = 4,
    optimizer: str = "adam",
    seed: int = 0,
    num_obs: int = 3,
):
    model = tiny_model() if model is None else model
    probes = tiny_probes(model)
    lr = schedules.learning_rate_schedule(
        "official_warmup_constant",
        base_lr=1e-3,
        initial_lr=1e-4,
        warmup_epochs=1,
        total_epochs=num_epochs,
        steps_per_epoch=steps_per_epoch,
    )
    tau = schedules.ema_decay_schedule(
        "epoch", tau_base=0.9, total_epochs=num_epochs, steps_per_epoch=steps_per_epoch
    )
    wd = 1e-3 if optimizer == "adamw" else 0.0
    opt = optimizers.build_optimizer(optimizer, lr, wd)
    state = init_state_on(make_mesh(), model, probes, opt, num_obs, use_ema, seed)
    return model, probes, opt, lr, tau, state


CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")


def load_config(name: str, arg: str | None = None):
    """`configs/<name>.py`'s get_config(arg)."""
    return load_config_file(os.path.join(CONFIGS, f"{name}.py"), arg)


def sharded_trainer(mesh, num_steps: int = 3):
    """(state, jitted step) of the tiny model on `mesh`: constant LR 1e-3 and per-step τ, so that
    the multi-device and multi-host workers compare identical training runs."""
    model = tiny_model()
    probes = tiny_probes(model)
    lr = schedules.learning_rate_schedule(
        "constant",
        base_lr=1e-3,
        initial_lr=0.0,
        warmup_epochs=0,
        total_epochs=1,
        steps_per_epoch=num_steps,
    )
    tau = schedules.ema_decay_schedule(
        "step", tau_base=0.9, total_epochs=1, steps_per_epoch=num_steps
    )
    opt = optimizers.build_optimizer("adam", lr)
    state = init_state_on(mesh, model, probes, opt, num_obs=3, use_ema=True, seed=0)
    return state, jit_train_step(make_train_step(model, probes, opt, lr, tau), mesh)
