"""The explicit training state of seq-JEPA and its initialisation.

Everything that shapes the trajectory lives in one pytree (BYOL's experiment state, DESIGN.md):
the step, the online parameters (model and online probes), the online BN statistics, the EMA
target encoder's parameters and *its own* BN statistics (spec §1.2: only parameters are averaged;
the target's statistics come from its own train-mode forward), the optimiser state and the RNG key.
Learning rate and τ are functions of the step (`schedules.py`), so they need no state.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from seqjepa_jax.models.heads import OnlineProbes
from seqjepa_jax.models.seqjepa import SeqJEPA, tie_initial_aggregator_layers


@flax.struct.dataclass
class TrainState:
    """The complete state of a seq-JEPA run.

    Attributes:
      step: number of optimiser updates done (int32 scalar).
      params: {"model": SeqJEPA params, "probes": OnlineProbes params}.
      batch_stats: the online model's BN running statistics.
      target_params: EMA target encoder params (None without EMA).
      target_batch_stats: the target encoder's own BN running statistics (None without EMA).
      opt_state: Optax state for `params`.
      rng: base key; the step's dropout key is `fold_in(rng, step)`.
    """

    step: jax.Array
    params: dict
    batch_stats: dict
    target_params: dict | None
    target_batch_stats: dict | None
    opt_state: optax.OptState
    rng: jax.Array


def init_train_state(
    rng: jax.Array,
    model: SeqJEPA,
    probes: OnlineProbes,
    optimizer: optax.GradientTransformation,
    *,
    num_obs_views: int,
    image_shape: tuple[int, int, int],
    use_ema: bool,
    identical_layer_init: bool = True,
) -> TrainState:
    """Initialises every part of the state from one key (call under `jax.jit`).

    Args:
      rng: the run's key.
      model: the online seq-JEPA module.
      probes: the online probes.
      optimizer: the Optax transformation for model + probe params.
      num_obs_views: M, observation views per sequence (any M works later: no positional
        embedding; it only fixes the dummy input's shape).
      image_shape: (H, W, C) of one view.
      use_ema: keep an EMA target encoder (official `--ema`).
      identical_layer_init: start every aggregator layer from the same weights (official, Q37).
    """
    init_key, probe_key, dropout_key, run_key = jax.random.split(rng, 4)
    views = jnp.zeros((1, num_obs_views) + tuple(image_shape), jnp.float32)
    actions = jnp.zeros((1, num_obs_views, model.action_dim), jnp.float32)
    variables = model.init(
        {"params": init_key, "dropout": dropout_key}, views, actions, train=False
    )
    model_params = variables["params"]
    if identical_layer_init:
        model_params = tie_initial_aggregator_layers(model_params)
    token_width = model.token_width(model.action_dim)
    probe_params = probes.init(
        probe_key,
        jnp.zeros((1, token_width), jnp.float32),
        jnp.zeros((1, 2 * model.embedding_dim), jnp.float32),
    )["params"]
    params = {"model": model_params, "probes": probe_params}
    batch_stats = variables["batch_stats"]
    # The official target is a deepcopy of the online encoder: same weights, same (initial) stats.
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        target_params=copy(model_params["encoder"]) if use_ema else None,
        target_batch_stats=copy(batch_stats["encoder"]) if use_ema else None,
        opt_state=optimizer.init(params),
        rng=run_key,
    )


def ema_update(target: Any, online: Any, tau: jax.Array) -> Any:
    """θ_t ← τ θ_t + (1 - τ) θ_o on every parameter leaf (spec §1.2); BN statistics excluded."""
    return jax.tree.map(lambda t, o: tau * t + (1.0 - tau) * o, target, online)
