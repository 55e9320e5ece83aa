"""Probes fitted on frozen features: a linear classifier and an MLP regressor.

The official offline evaluation trains its probes with AdamW for 300 epochs in mini-batches
(spec §7.1). On frozen features that are extracted once, the same probes fit much faster as
full-batch optimisation inside one jitted `lax.fori_loop`; the probe architectures are the
official ones (linear classifier; MLP in→h→h→out with ReLU for rotations, spec §7.1). Features
are standardised with the training set's statistics first, so one learning rate serves encoders
of any scale (a random-init encoder and a trained one alike).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqjepa_jax.evaluation import metrics


class MLPRegressor(nn.Module):
    """in → hidden → hidden → out with ReLU (the official rotation regressor, spec §7.1)."""

    out_features: int
    hidden: int = 1024

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out_features)(x)


def standardise(
    train: np.ndarray, test: np.ndarray, eps: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Z-scores both arrays with the training set's per-feature mean and std."""
    mean, std = train.mean(axis=0), train.std(axis=0) + eps
    return (train - mean) / std, (test - mean) / std


def _cross_entropy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()


def _mean_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(outputs - targets))


@functools.partial(jax.jit, static_argnames=("module", "loss", "steps"))
def fit_full_batch(
    module: nn.Module,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    x: jax.Array,
    y: jax.Array,
    steps: int,
    learning_rate: float,
    weight_decay: float,
) -> dict:
    """`steps` full-batch AdamW steps of `module` on (x, y) under `loss`; returns the params."""
    params = module.init(jax.random.PRNGKey(0), x[:1])
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)

    def body(_: int, carry: tuple) -> tuple:
        p, s = carry
        grads = jax.grad(lambda q: loss(module.apply(q, x), y))(p)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    params, _ = jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))
    return params


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    *,
    steps: int = 500,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
) -> dict[str, float]:
    """Fits a linear softmax classifier on frozen train features; top-1 (%) on both splits."""
    train_x, test_x = standardise(train_x, test_x)
    model = nn.Dense(num_classes)
    params = fit_full_batch(
        model,
        _cross_entropy,
        jnp.asarray(train_x, jnp.float32),
        jnp.asarray(train_y, jnp.int32),
        steps,
        learning_rate,
        weight_decay,
    )
    train_logits = np.asarray(model.apply(params, jnp.asarray(train_x, jnp.float32)))
    test_logits = np.asarray(model.apply(params, jnp.asarray(test_x, jnp.float32)))
    return {
        "train_accuracy": metrics.top1_accuracy(train_y, train_logits),
        "accuracy": metrics.top1_accuracy(test_y, test_logits),
    }


def mlp_regression_r2(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    hidden: int = 1024,
    steps: int = 500,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
) -> dict[str, float]:
    """Fits the MLP regressor with MSE on frozen train features; R² (both definitions) on test."""
    train_x, test_x = standardise(train_x, test_x)
    model = MLPRegressor(train_y.shape[-1], hidden)
    params = fit_full_batch(
        model,
        _mean_squared_error,
        jnp.asarray(train_x, jnp.float32),
        jnp.asarray(train_y, jnp.float32),
        steps,
        learning_rate,
        weight_decay,
    )
    predictions = np.asarray(model.apply(params, jnp.asarray(test_x, jnp.float32)))
    return {
        "r2_uniform": metrics.r2_uniform(test_y, predictions),
        "r2_pooled": metrics.r2_pooled(test_y, predictions),
    }
