"""The explicit training state of a run and its initialisation, for any method.

Everything that shapes the trajectory lives in one pytree (BYOL's experiment state, DESIGN.md):
the step, the online parameters (model and online probes), the online BN statistics, the EMA
target's parameters and *its own* BN statistics (spec §1.2: only parameters are averaged; the
target's statistics come from its own train-mode forward), the optimiser state and the RNG key.
The target mirrors `model.target_params_of(...)`: seq-JEPA's encoder, or the encoder and
projector of BYOL, BYOL-conditional and Conv-IJEPA (spec §8); methods without a target network
keep None. Learning rate and τ are functions of the step (`schedules.py`), so they need no state.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from seqjepa_jax.models.heads import OnlineProbes
from seqjepa_jax.models.seqjepa import tie_initial_aggregator_layers


@flax.struct.dataclass
class TrainState:
    """The complete state of a run.

    Attributes:
      step: number of optimiser updates done (int32 scalar).
      params: {"model": method module params, "probes": OnlineProbes params}.
      batch_stats: the online model's BN running statistics.
      target_params: EMA target params (None without EMA or without a target network).
      target_batch_stats: the target's own BN running statistics (None like target_params).
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
    model: nn.Module,
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
      model: the online module of the method (`methods.build_method_model`).
      probes: the online probes.
      optimizer: the Optax transformation for model + probe params.
      num_obs_views: M, so that the dummy sequence has M + 1 views (any M works later for
        seq-JEPA, which has no positional embedding; two-view methods need M >= 1).
      image_shape: (H, W, C) of one view.
      use_ema: keep an EMA target (official `--ema`), for methods that have a target network.
      identical_layer_init: start every aggregator layer from the same weights (official, Q37).
    """
    init_key, probe_key, dropout_key, run_key = jax.random.split(rng, 4)
    # Two sequences: the batch-statistics terms of some losses need more than one row.
    views = jnp.zeros((2, num_obs_views + 1) + tuple(image_shape), jnp.float32)
    actions = jnp.zeros((2, num_obs_views, model.action_dim), jnp.float32)
    variables = model.init(
        {"params": init_key, "dropout": dropout_key},
        views,
        actions,
        None,
        train=False,
        method=model.step_outputs,
    )
    model_params = variables["params"]
    if identical_layer_init and "aggregator" in model_params:
        model_params = tie_initial_aggregator_layers(model_params)
    probe_params = probes.init(
        probe_key,
        jnp.zeros((1, model.class_feature_width), jnp.float32),
        jnp.zeros((1, 2 * model.embedding_dim), jnp.float32),
    )["params"]
    params = {"model": model_params, "probes": probe_params}
    batch_stats = variables["batch_stats"]
    # The official target is a deepcopy of the online network: same weights, same initial stats.
    has_target = use_ema and model.target_network() is not None
    copy = lambda tree: jax.tree.map(jnp.copy, model.target_params_of(tree))  # noqa: E731
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        target_params=copy(model_params) if has_target else None,
        target_batch_stats=copy(batch_stats) if has_target else None,
        opt_state=optimizer.init(params),
        rng=run_key,
    )


def ema_update(target: Any, online: Any, tau: jax.Array) -> Any:
    """θ_t ← τ θ_t + (1 - τ) θ_o on every parameter leaf (spec §1.2); BN statistics excluded."""
    return jax.tree.map(lambda t, o: tau * t + (1.0 - tau) * o, target, online)
