"""The pure seq-JEPA training step: (state, batch) -> (state, metrics), jitted once with shardings.

One step does what one official iteration does (spec §4.1 step 7, `engine.py:174-221`):
1. the EMA target encoder encodes the target view in train mode (its own BN statistics move);
2. the online model aggregates the M observation views with their actions and predicts the
   target's embedding; L_ssl = 1 - mean cos(pred, sg(z_tgt)) (spec §1.7);
3. the online probes see stop-gradient features: CE of Linear(agg_out) against the label and MSE of
   MLP(z1 ⊕ z2) against the first action (view 0 → view 1) (spec §4.2);
4. one optimiser update on (model, probes) with the summed loss, then the EMA of the encoder
   *parameters* with τ from the schedule (spec §1.2).

Batch contract (DESIGN.md): views (B, V, H, W, C) with V = M + 1 (target last), actions
(B, V-1, d_a), label (B,) with -1 where unknown (ignored by the class probe).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from seqjepa_jax.models.heads import OnlineProbes
from seqjepa_jax.models.seqjepa import SeqJEPA, encoder_of, prediction_loss
from seqjepa_jax.schedules import Schedule
from seqjepa_jax.sharding import batch_sharded, replicated
from seqjepa_jax.state import TrainState, ema_update

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def split_views(batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(obs views (B, M, ...), target view (B, ...), obs actions (B, M, d_a)) from a batch."""
    views = batch["views"]
    num_obs = views.shape[1] - 1
    return views[:, :num_obs], views[:, num_obs], batch["actions"][:, :num_obs]


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


def make_train_step(
    model: SeqJEPA,
    probes: OnlineProbes,
    optimizer: optax.GradientTransformation,
    learning_rate: Schedule,
    ema_decay: Schedule,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """Builds the pure step function. Jit it with `jit_train_step` (or plain `jax.jit`)."""
    target_encoder = encoder_of(model)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        obs_views, target_views, obs_actions = split_views(batch)
        num_obs = obs_views.shape[1]
        use_ema = state.target_params is not None
        dropout_key = jax.random.fold_in(state.rng, state.step)

        target_batch_stats = state.target_batch_stats
        z_target = None
        if use_ema:
            z_target, target_updates = target_encoder.apply(
                {"params": state.target_params, "batch_stats": state.target_batch_stats},
                target_views,
                train=True,
                mutable=["batch_stats"],
            )
            z_target = jax.lax.stop_gradient(z_target)
            target_batch_stats = target_updates["batch_stats"]

        def loss_fn(params: dict) -> tuple[jax.Array, tuple]:
            out, updates = model.apply(
                {"params": params["model"], "batch_stats": state.batch_stats},
                obs_views,
                obs_actions,
                target_views=None if use_ema else target_views,
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            z_tgt = z_target if use_ema else out["z_target"]
            ssl_loss = prediction_loss(out["prediction"], z_tgt)
            # Spec §2.2 step 9 and Q35: z2 is the second observation, or the target's embedding
            # when there is a single observation.
            z2 = out["z_obs"][:, 1] if num_obs >= 2 else z_tgt
            pair = jnp.concatenate([out["z_obs"][:, 0], z2], axis=-1)
            logits, action_pred = probes.apply({"params": params["probes"]}, out["agg_out"], pair)
            probe_metrics = probe_losses(
                logits, action_pred, batch["label"], batch["actions"][:, 0]
            )
            total = ssl_loss + probe_metrics["probe_ce"] + probe_metrics["probe_action_mse"]
            aux = (updates["batch_stats"], out, z_tgt, probe_metrics, ssl_loss)
            return total, aux

        (total, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_batch_stats, out, z_tgt, probe_metrics, ssl_loss = aux
        updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        tau = ema_decay(state.step)
        new_target_params = state.target_params
        if use_ema:
            new_target_params = ema_update(state.target_params, new_params["model"]["encoder"], tau)
        new_state = state.replace(
            step=state.step + 1,
            params=new_params,
            batch_stats=new_batch_stats,
            target_params=new_target_params,
            target_batch_stats=target_batch_stats,
            opt_state=new_opt_state,
        )
        z_obs_flat = out["z_obs"].reshape(-1, out["z_obs"].shape[-1])
        metrics = {
            "loss": total,
            "ssl_loss": ssl_loss,
            **probe_metrics,
            "learning_rate": learning_rate(state.step),
            "ema_tau": tau if use_ema else jnp.ones(()),
            "grad_norm": optax.tree.norm(grads["model"]),
            "param_norm": optax.tree.norm(new_params["model"]),
            "encoder_spread": embedding_spread(z_obs_flat),
            "encoder_effective_rank": effective_rank(z_obs_flat),
            "aggregate_spread": embedding_spread(out["agg_out"]),
            "target_spread": embedding_spread(z_tgt),
        }
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
