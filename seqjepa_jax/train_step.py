"""The pure training step of any method: (state, batch) -> (state, metrics), jitted once.

One step does what one official iteration does (spec §4.1 step 7, `engine.py:174-221`):
1. the EMA target (if the method has one and EMA is on) encodes its views in train mode, one BN
   batch per view, and its own BN statistics move;
2. the method's `step_outputs` (`models/baselines/base.py`) gives its self-supervised loss: for
   seq-JEPA, L = 1 - mean cos(pred, sg(z_tgt)) (spec §1.7); for a baseline, its loss of spec §8;
3. the online probes see stop-gradient features: CE of Linear(class features: seq-JEPA's
   aggregate, a baseline's view-0 embedding) against the label and MSE of MLP(z1 ⊕ z2) against
   the first action (view 0 → view 1) (spec §4.2);
4. one optimiser update on (model, probes) with the summed loss, then the EMA of the target's
   *parameters* with τ from the schedule (spec §1.2).

The step never branches on the method: everything method-specific is behind `step_outputs` and
the target's three functions. Batch contract (DESIGN.md): views (B, V, H, W, C) with the target
view last, actions (B, V-1, d_a), label (B,) with -1 where unknown (ignored by the class probe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from seqjepa_jax.models.heads import OnlineProbes
from seqjepa_jax.schedules import Schedule
from seqjepa_jax.sharding import batch_sharded, replicated
from seqjepa_jax.state import TrainState, ema_update

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def probe_losses(
    logits: jax.Array, action_pred: jax.Array, labels: jax.Array, action_target: jax.Array
) -> Metrics:
    """Masked CE/accuracy of the class probe (labels < 0 ignored) and MSE of the action probe."""
    valid = (labels >= 0).astype(jnp.float32)
    safe_labels = jnp.maximum(labels, 0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe_labels)
    count = jnp.maximum(valid.sum(), 1.0)
    correct = (jnp.argmax(logits, axis=-1) == safe_labels).astype(jnp.float32)
    # torch.nn.MSELoss: mean over every element.
    mse = jnp.mean(jnp.square(action_pred.astype(jnp.float32) - action_target))
    return {
        "probe_ce": jnp.sum(ce * valid) / count,
        "probe_accuracy": jnp.sum(correct * valid) / count,
        "probe_action_mse": mse,
    }


def embedding_spread(z: jax.Array) -> jax.Array:
    """Collapse indicator: mean per-dimension std of L2-normalised embeddings, times √D.

    About 1 for embeddings spread isotropically over the sphere, 0 for a full collapse to a point
    (the SimSiam/BYOL diagnostic).
    """
    z = z.astype(jnp.float32)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-8)
    return jnp.mean(jnp.std(z, axis=0)) * jnp.sqrt(z.shape[-1])


def gram_eigenvalues(gram: jax.Array) -> jax.Array:
    """Eigenvalues of a symmetric matrix; on TPU by XLA's Jacobi eigensolver.

    JAX's TPU default (QDWH spectral divide and conquer) unrolls into thousands of HLO
    instructions and hundreds of float32 matmuls for a 512 x 512 matrix, which the TPU planner
    (`python -m seqjepa_jax.aot`, docs/accelerators.md) found in every step; the Jacobi solver is
    one compact loop. CPU and GPU keep `eigvalsh` (the Jacobi option is TPU/GPU only).
    """
    return jax.lax.platform_dependent(
        gram,
        tpu=lambda g: jax.lax.linalg.eigh(
            g, implementation=jax.lax.linalg.EighImplementation.JACOBI
        )[1],
        default=jnp.linalg.eigvalsh,
    )


def effective_rank(z: jax.Array) -> jax.Array:
    """Effective rank of a batch of embeddings (Roy & Vetterli, 2007): exp of the entropy of the
    normalised singular values of the centred (N, D) batch.

    Between 1 (every embedding on one line: dimensional collapse) and min(N, D); the RankMe
    diagnostic of self-supervised learning. Computed in float32 on the global batch.

    The singular values come from the eigenvalues of the (D, D) Gram matrix Zᵀ Z (s² = λ), not
    from an SVD of the batch: the batch is sharded over devices, and XLA:TPU partitions an SVD of
    it into an iterative QDWH loop with all-gathers and collective-permutes in every iteration
    (found by `python -m seqjepa_jax.aot`, docs/accelerators.md), whereas Zᵀ Z is one (D, D)
    all-reduce and its eigenvalues are computed on every device. Eigenvalues below the numerical
    noise of the Gram matrix (D · eps · λ_max, numpy's `matrix_rank` tolerance for the D x D
    Gram) count as zero: singular values under about 1e-2 of the largest are not resolved, which
    lowers the rank of a spectrum decaying as exp(-i / 20) by 4.4 % and leaves collapse (rank 1)
    exactly 1 (tests/test_train_step.py).
    """
    z = z.astype(jnp.float32)
    centred = z - z.mean(axis=0)
    gram = jnp.matmul(centred.T, centred, precision=jax.lax.Precision.HIGHEST)
    eigenvalues = gram_eigenvalues(gram)
    floor = gram.shape[0] * jnp.finfo(jnp.float32).eps * jnp.max(eigenvalues)
    singular = jnp.sqrt(jnp.where(eigenvalues > floor, eigenvalues, 0.0))
    p = singular / jnp.maximum(jnp.sum(singular), 1e-12) + 1e-12
    return jnp.exp(-jnp.sum(p * jnp.log(p)))


def run_target(
    model: nn.Module, target_params: Any, target_batch_stats: Any, views: jax.Array
) -> tuple[tuple[Any, ...], Any]:
    """The EMA target on each of `model.target_views(views)` in train mode (spec §1.2): its
    stop-gradient outputs, one per view, and its updated BN statistics."""
    network = model.target_network()
    outputs = []
    for images in model.target_views(views):
        out, updates = network.apply(
            {"params": target_params, "batch_stats": target_batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        target_batch_stats = updates["batch_stats"]
        outputs.append(jax.lax.stop_gradient(out))
    return tuple(outputs), target_batch_stats


def make_train_step(
    model: nn.Module,
    probes: OnlineProbes,
    optimizer: optax.GradientTransformation,
    learning_rate: Schedule,
    ema_decay: Schedule,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """Builds the pure step function of `model` (any method's module). Jit it with
    `jit_train_step` (or plain `jax.jit`)."""

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        views, actions = batch["views"], batch["actions"]
        use_target = state.target_params is not None
        dropout_key = jax.random.fold_in(state.rng, state.step)
        targets, target_batch_stats = None, state.target_batch_stats
        if use_target:
            targets, target_batch_stats = run_target(
                model, state.target_params, state.target_batch_stats, views
            )

        def loss_fn(params: dict) -> tuple[jax.Array, tuple]:
            out, updates = model.apply(
                {"params": params["model"], "batch_stats": state.batch_stats},
                views,
                actions,
                targets,
                train=True,
                labels=batch["label"],
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
                method=model.step_outputs,
            )
            logits, action_pred = probes.apply(
                {"params": params["probes"]}, out["class_features"], out["probe_pair"]
            )
            probe_metrics = probe_losses(logits, action_pred, batch["label"], actions[:, 0])
            total = out["loss"] + probe_metrics["probe_ce"] + probe_metrics["probe_action_mse"]
            return total, (updates["batch_stats"], out, probe_metrics)

        (total, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_batch_stats, out, probe_metrics = aux
        updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        tau = ema_decay(state.step)
        new_target_params = state.target_params
        if use_target:
            online = model.target_params_of(new_params["model"])
            new_target_params = ema_update(state.target_params, online, tau)
        new_state = state.replace(
            step=state.step + 1,
            params=new_params,
            batch_stats=new_batch_stats,
            target_params=new_target_params,
            target_batch_stats=target_batch_stats,
            opt_state=new_opt_state,
        )
        metrics = {
            "loss": total,
            "ssl_loss": out["loss"],
            **{f"loss_{name}": value for name, value in out["loss_terms"].items()},
            **probe_metrics,
            "learning_rate": learning_rate(state.step),
            "ema_tau": tau if use_target else jnp.ones(()),
            "grad_norm": optax.tree.norm(grads["model"]),
            "param_norm": optax.tree.norm(new_params["model"]),
            "encoder_spread": embedding_spread(out["embeddings"]),
            "encoder_effective_rank": effective_rank(out["embeddings"]),
        }
        if "aggregate" in out:
            metrics["aggregate_spread"] = embedding_spread(out["aggregate"])
        if "target_embedding" in out:
            metrics["target_spread"] = embedding_spread(out["target_embedding"])
        return new_state, metrics

    return train_step


def jit_train_step(
    train_step: Callable[[TrainState, Batch], tuple[TrainState, Metrics]],
    mesh: jax.sharding.Mesh,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """`jax.jit` with the state replicated and donated, the batch sharded on 'data'."""
    return jax.jit(
        train_step,
        in_shardings=(replicated(mesh), batch_sharded(mesh)),
        out_shardings=(replicated(mesh), replicated(mesh)),
        donate_argnums=(0,),
    )
