"""The self-supervised losses of the baselines (spec §8), in float32, on global-batch arrays.

Every function takes the global batch: under `jax.jit` on a batch-sharded array, a reduction over
the batch axis is a reduction over every device, and it is differentiable. That is the proper
data-parallel form of the official code, whose multi-GPU `gather_from_all` carries no gradient
(Q6); `maybe_gather` reproduces that behind `config.methods.official_nondifferentiable_gather`.

- `nt_xent`: SimCLR's normalised-temperature cross-entropy (spec §8.1): the 2B L2-normalised
  rows [a; b], the cosine similarities of each row with the 2B - 1 others, the partner row as the
  positive, cross-entropy averaged over the 2B rows. Written as a log-sum-exp over the row with
  the diagonal masked, which is the official `[positives, negatives] / τ` cross-entropy with
  label 0 (the order of the negatives does not change a cross-entropy).
- `variance_term`, `covariance_term`: VICReg's regularisers (spec §8.3) with the official
  unbiased estimators (`var(dim=0)`, covariance / (N - 1)) and ε = 1e-4 under the square root.
- `mse`: `torch.nn.functional.mse_loss`, the mean over every element.
- `negative_cosine`: 2 - 2 cos, BYOL's regression loss (spec §8.2, §8.6).
- `trajectory_term`: VICReg-Traj's curvature term (spec §8.4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjepa_jax.models.seqjepa import prediction_loss

VARIANCE_EPS = 1e-4  # under the square root of the variance (VICReg, SIE)
NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize
COSINE_EPS = 1e-8  # torch.nn.CosineSimilarity


def maybe_gather(x: jax.Array, official_nondifferentiable: bool) -> jax.Array:
    """The features of a global-batch term: differentiable (default) or, with the official
    switch, without gradient, as the official multi-GPU `gather_from_all` (Q6). With one
    official process the gather is a no-op, so the switch reproduces official *multi-GPU* runs."""
    return jax.lax.stop_gradient(x) if official_nondifferentiable else x


def l2_normalize(x: jax.Array) -> jax.Array:
    """x / max(||x||, 1e-12) along the last axis (`torch.nn.functional.normalize`)."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), NORMALIZE_EPS)


def nt_xent(a: jax.Array, b: jax.Array, temperature: float) -> jax.Array:
    """NT-Xent of the pairs (a_i, b_i), a and b (B, d): mean over the 2B rows (module docstring)."""
    features = l2_normalize(jnp.concatenate([a, b], axis=0))
    rows = features.shape[0]
    logits = features @ features.T / temperature
    logits = jnp.where(jnp.eye(rows, dtype=bool), -jnp.inf, logits)
    partner = (jnp.arange(rows) + rows // 2) % rows
    positive = jnp.take_along_axis(logits, partner[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - positive)


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean squared error over every element (`F.mse_loss`)."""
    return jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)))


def variance_term(y: jax.Array) -> jax.Array:
    """mean_d relu(1 - sqrt(Var_unbiased(y_d) + 1e-4)) over the batch of y (N, d)."""
    y = y.astype(jnp.float32)
    std = jnp.sqrt(jnp.var(y, axis=0, ddof=1) + VARIANCE_EPS)
    return jnp.mean(jax.nn.relu(1.0 - std))


def covariance_term(y: jax.Array, normaliser: int | None = None) -> jax.Array:
    """Σ_{i≠j} Cov(y)_ij² / normaliser, Cov = yᶜᵀyᶜ / (N - 1); normaliser defaults to d.

    VICReg divides by its embedding width (spec §8.3); SIE by the width of the concatenated
    invariant and equivariant projections (spec §8.8), which is also d of its input.
    """
    y = y.astype(jnp.float32)
    centred = y - jnp.mean(y, axis=0)
    cov = centred.T @ centred / (y.shape[0] - 1)
    off_diagonal = jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(jnp.diagonal(cov)))
    return off_diagonal / (y.shape[1] if normaliser is None else normaliser)


def negative_cosine(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """2 - 2 mean cos(prediction, sg(target)) (BYOL, spec §8.2)."""
    return 2.0 * prediction_loss(prediction, target, COSINE_EPS)


def trajectory_term(
    y_left: jax.Array, y_centre: jax.Array, y_right: jax.Array, *, official_unit_norm: bool
) -> jax.Array:
    """-mean cos(u1, u2): the two steps of a 3-view trajectory, with their components along the
    centre projection removed (VICReg-Traj, spec §8.4).

    v1 = y_c - y_l and v2 = y_r - y_c; u_i = v_i - (v_i · n) n. The official code takes n = y_c,
    which removes the component only if y_c had unit norm; it does not (a VICReg projection has
    per-dimension variance near 1, so its norm is near √d). `official_unit_norm=True` reproduces
    that; the default uses n = y_c / ||y_c||, the projection the term was meant to be.
    """
    y_left, y_centre, y_right = (y.astype(jnp.float32) for y in (y_left, y_centre, y_right))
    normal = y_centre if official_unit_norm else l2_normalize(y_centre)
    steps = []
    for v in (y_centre - y_left, y_right - y_centre):
        steps.append(v - jnp.sum(v * normal, axis=-1, keepdims=True) * normal)
    u1, u2 = steps
    dot = jnp.sum(u1 * u2, axis=-1)
    norms = jnp.maximum(jnp.linalg.norm(u1, axis=-1), COSINE_EPS) * jnp.maximum(
        jnp.linalg.norm(u2, axis=-1), COSINE_EPS
    )
    return -jnp.mean(dot / norms)
