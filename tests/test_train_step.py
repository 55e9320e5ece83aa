"""The train step's invariants: EMA math, stop-gradients, loss, determinism, no recompilation."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_batch, tiny_setup

from seqjepa_jax import optimizers, sharding
from seqjepa_jax.models.seqjepa import prediction_loss
from seqjepa_jax.state import ema_update
from seqjepa_jax.train_step import effective_rank, jit_train_step, make_train_step, probe_losses


def run_steps(num_steps=3, use_ema=True, seed=0, model=None, num_views=4, optimizer="adam"):
    model, probes, opt, lr, tau, state = tiny_setup(
        model=model, use_ema=use_ema, seed=seed, num_obs=num_views - 1, optimizer=optimizer
    )
    mesh = sharding.make_mesh()
    step = jit_train_step(make_train_step(model, probes, opt, lr, tau), mesh)
    history = []
    for i in range(num_steps):
        batch = sharding.global_batch(tiny_batch(num_views=num_views, seed=i), mesh)
        state, metrics = step(state, batch)
        history.append(jax.device_get(metrics))
    return state, history


def test_prediction_loss_matches_numpy():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(6, 10)), rng.normal(size=(6, 10))
    cos = np.sum(p * t, 1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1))
    np.testing.assert_allclose(
        prediction_loss(jnp.asarray(p), jnp.asarray(t)), 1 - cos.mean(), rtol=1e-5
    )


def test_prediction_loss_has_no_gradient_into_the_target():
    p, t = jnp.ones((2, 3)), jnp.arange(6.0).reshape(2, 3)
    grad_t = jax.grad(lambda t_: prediction_loss(p, t_))(t)
    np.testing.assert_array_equal(grad_t, 0.0)


def test_probe_losses_ignore_unknown_labels():
    logits = jnp.array([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    out = probe_losses(logits, jnp.zeros((3, 2)), jnp.array([0, -1, 1]), jnp.ones((3, 2)))
    np.testing.assert_allclose(out["probe_accuracy"], 0.5)
    expected_ce = (np.log1p(np.exp(-5.0)) + (5.0 + np.log1p(np.exp(-5.0)))) / 2
    np.testing.assert_allclose(out["probe_ce"], expected_ce, rtol=1e-5)
    np.testing.assert_allclose(out["probe_action_mse"], 1.0)


def test_ema_update_formula():
    target = {"w": jnp.array([1.0, 2.0])}
    online = {"w": jnp.array([3.0, 6.0])}
    out = ema_update(target, online, jnp.float32(0.75))
    np.testing.assert_allclose(out["w"], 0.75 * np.array([1, 2]) + 0.25 * np.array([3, 6]))


def test_target_follows_ema_of_online_params_and_own_batch_stats():
    model, probes, opt, lr, tau, state0 = tiny_setup()
    mesh = sharding.make_mesh()
    step = make_train_step(model, probes, opt, lr, tau)
    batch = sharding.global_batch(tiny_batch(), mesh)
    state1, _ = jax.jit(step)(state0, batch)
    t0 = float(tau(jnp.int32(0)))
    expected = jax.tree.map(
        lambda t, o: t0 * t + (1 - t0) * o, state0.target_params, state1.params["model"]["encoder"]
    )
    chex.assert_trees_all_close(state1.target_params, expected, atol=1e-6)
    # The target's BN statistics come from its own forward on the target view: they moved, and
    # differ from the online encoder's (which saw the observation views).
    moved = jax.tree.map(
        lambda a, b: float(jnp.abs(a - b).max()),
        state0.target_batch_stats,
        state1.target_batch_stats,
    )
    assert max(jax.tree.leaves(moved)) > 0
    diff = jax.tree.map(
        lambda a, b: float(jnp.abs(a - b).max()),
        state1.target_batch_stats,
        state1.batch_stats["encoder"],
    )
    assert max(jax.tree.leaves(diff)) > 0


def test_probe_losses_do_not_reach_ssl_parameters():
    """Gradients of the probe losses w.r.t. the model params are exactly zero (stop-gradient)."""
    model, probes, opt, lr, tau, state = tiny_setup()
    batch = tiny_batch()
    views = jnp.asarray(batch["views"])

    def probe_only(model_params):
        out, _ = model.apply(
            {"params": model_params, "batch_stats": state.batch_stats},
            views[:, :3],
            jnp.asarray(batch["actions"]),
            train=True,
            rngs={"dropout": jax.random.PRNGKey(0)},
            mutable=["batch_stats"],
        )
        pair = jnp.concatenate([out["z_obs"][:, 0], out["z_obs"][:, 1]], -1)
        logits, action = probes.apply({"params": state.params["probes"]}, out["agg_out"], pair)
        m = probe_losses(
            logits, action, jnp.asarray(batch["label"]), jnp.asarray(batch["actions"][:, 0])
        )
        return m["probe_ce"] + m["probe_action_mse"]

    grads = jax.grad(probe_only)(state.params["model"])
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) == 0.0


def test_same_seed_same_losses_and_different_seed_differs():
    _, h1 = run_steps(seed=0)
    _, h2 = run_steps(seed=0)
    _, h3 = run_steps(seed=1)
    np.testing.assert_array_equal([h["loss"] for h in h1], [h["loss"] for h in h2])
    assert [h["loss"] for h in h1] != [h["loss"] for h in h3]


def test_step_compiles_once():
    model, probes, opt, lr, tau, state = tiny_setup()
    mesh = sharding.make_mesh()
    step_fn = chex.assert_max_traces(make_train_step(model, probes, opt, lr, tau), n=1)
    step = jit_train_step(step_fn, mesh)
    for i in range(3):
        state, _ = step(state, sharding.global_batch(tiny_batch(seed=i), mesh))
    assert int(state.step) == 3


@pytest.mark.parametrize("use_ema,num_views", [(False, 4), (True, 2)])
def test_variants_train_and_reduce_the_loss(use_ema, num_views):
    """No-EMA (SimSiam-style target) and M_tr = 1 (z2 = target embedding, Q35) both run."""
    state, history = run_steps(num_steps=2, use_ema=use_ema, num_views=num_views)
    assert (state.target_params is None) == (not use_ema)
    assert all(np.isfinite(h["loss"]) for h in history)


def test_adamw_decays_only_multi_dimensional_params():
    mask = optimizers.decay_mask(
        {"k": jnp.ones((2, 2)), "b": jnp.ones(2), "t": jnp.ones((1, 1, 2))}
    )
    assert mask == {"k": True, "b": False, "t": True}
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.build_optimizer("adam", lambda s: 1e-3, weight_decay=1e-3)
    with pytest.raises(ValueError, match="choose one of"):
        optimizers.build_optimizer("sgd!", lambda s: 1e-3)


def test_step_metrics_report_schedules():
    _, history = run_steps(num_steps=3)
    # steps_per_epoch=2, warmup 1 epoch from 1e-4 to 1e-3: epoch 0 -> 1e-4, epoch 1 -> 1e-3.
    np.testing.assert_allclose([h["learning_rate"] for h in history], [1e-4, 1e-4, 1e-3], rtol=1e-6)
    np.testing.assert_allclose(history[0]["ema_tau"], 0.9, rtol=1e-6)
    for key in ("grad_norm", "param_norm", "encoder_spread", "ssl_loss", "probe_ce"):
        assert np.isfinite(history[-1][key])


def test_effective_rank_matches_numpy_and_bounds():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 16)).astype(np.float32)
    s = np.linalg.svd(z - z.mean(0), compute_uv=False).astype(np.float64)
    p = s / s.sum()
    expected = np.exp(-np.sum(p * np.log(p)))
    np.testing.assert_allclose(float(effective_rank(jnp.asarray(z))), expected, rtol=1e-4)
    # Embeddings on one line through the mean have rank 1; isotropic ones approach min(N, D).
    line = np.outer(rng.normal(size=64), rng.normal(size=16)).astype(np.float32)
    assert float(effective_rank(jnp.asarray(line))) == pytest.approx(1.0, abs=1e-3)
    assert 12.0 < expected <= 16.0


def test_effective_rank_at_the_recipe_size_tracks_the_svd():
    """The Gram-eigenvalue form (no SVD of the sharded batch, docs/accelerators.md) at the
    official size (B·M = 1536 embeddings of 512): collapse is exactly rank 1, an isotropic batch
    matches numpy's SVD, a decaying spectrum (singular values
    exp(-i / 20)) stays within 5 %."""
    rng = np.random.default_rng(1)

    def numpy_rank(z):
        s = np.linalg.svd(z - z.mean(0), compute_uv=False).astype(np.float64)
        p = s / s.sum() + 1e-12
        return np.exp(-np.sum(p * np.log(p)))

    line = np.outer(rng.normal(size=1536), rng.normal(size=512)).astype(np.float32)
    assert float(effective_rank(jnp.asarray(line))) == pytest.approx(1.0, abs=1e-3)
    iso = rng.normal(size=(1536, 512)).astype(np.float32)
    assert float(effective_rank(jnp.asarray(iso))) == pytest.approx(numpy_rank(iso), rel=1e-4)
    decay = (rng.normal(size=(1536, 512)) * np.exp(-np.arange(512) / 20)).astype(np.float32)
    assert float(effective_rank(jnp.asarray(decay))) == pytest.approx(numpy_rank(decay), rel=0.05)
