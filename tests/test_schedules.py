"""Learning-rate and τ schedules against hand-computed official values (spec §1.2, §4.1)."""

from __future__ import annotations

import numpy as np
import pytest

from seqjepa_jax import schedules


def test_official_warmup_constant_matches_the_measured_official_lrs():
    # Spec §4.1: the LR actually used is 1e-5, 2.95e-5, ..., 3.805e-4 for epochs 0-19, then 4e-4.
    lr = schedules.learning_rate_schedule(
        "official_warmup_constant",
        base_lr=4e-4,
        initial_lr=1e-5,
        warmup_epochs=20,
        total_epochs=1000,
        steps_per_epoch=7,
    )
    per_epoch = [float(lr(np.int32(e * 7 + 3))) for e in range(25)]
    np.testing.assert_allclose(per_epoch[0], 1e-5, rtol=1e-6)
    np.testing.assert_allclose(per_epoch[1], 2.95e-5, rtol=1e-5)
    np.testing.assert_allclose(per_epoch[19], 3.805e-4, rtol=1e-5)
    np.testing.assert_allclose(per_epoch[20:], 4e-4, rtol=1e-6)
    # Constant within an epoch.
    assert float(lr(np.int32(0))) == float(lr(np.int32(6)))


def test_warmup_cosine_endpoints():
    lr = schedules.learning_rate_schedule(
        "warmup_cosine",
        base_lr=1.0,
        initial_lr=0.0,
        warmup_epochs=1,
        total_epochs=11,
        steps_per_epoch=10,
        final_lr=0.1,
    )
    assert float(lr(np.int32(0))) == 0.0
    np.testing.assert_allclose(float(lr(np.int32(5))), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(lr(np.int32(10))), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(lr(np.int32(60))), 0.1 + 0.9 * 0.5, rtol=1e-5)
    np.testing.assert_allclose(float(lr(np.int32(110))), 0.1, rtol=1e-5)


def test_ema_tau_endpoints_and_official_one_step_lag():
    tau = schedules.ema_decay_schedule(
        "epoch", tau_base=0.996, total_epochs=100, steps_per_epoch=10
    )
    np.testing.assert_allclose(float(tau(np.int32(0))), 0.996, rtol=1e-7)
    # Update at step t uses τ(epoch(t-1)): the first step of epoch 1 still uses epoch 0's τ.
    np.testing.assert_allclose(float(tau(np.int32(10))), 0.996, rtol=1e-7)
    expected_e1 = 1 - 0.004 * (np.cos(np.pi * 1 / 100) + 1) / 2
    np.testing.assert_allclose(float(tau(np.int32(11))), expected_e1, rtol=1e-7)
    np.testing.assert_allclose(float(tau(np.int32(50 * 10 + 1))), 0.998, rtol=1e-7)
    assert float(tau(np.int32(99 * 10 + 5))) > 0.99999
    assert float(tau(np.int32(500 * 10))) == 1.0  # past the end: stays at 1, never wraps
    per_step = schedules.ema_decay_schedule(
        "step", tau_base=0.99, total_epochs=1, steps_per_epoch=100
    )
    np.testing.assert_allclose(float(per_step(np.int32(0))), 0.99, rtol=1e-7)
    np.testing.assert_allclose(float(per_step(np.int32(100))), 1.0, rtol=1e-7)


@pytest.mark.parametrize(
    "call",
    [
        lambda: schedules.learning_rate_schedule(
            "cosine!", base_lr=1, initial_lr=0, warmup_epochs=0, total_epochs=1, steps_per_epoch=1
        ),
        lambda: schedules.ema_decay_schedule(
            "epochs", tau_base=0.9, total_epochs=1, steps_per_epoch=1
        ),
    ],
)
def test_unknown_schedules_are_named(call):
    with pytest.raises(ValueError, match="choose one of"):
        call()
