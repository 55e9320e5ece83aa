"""Learning-rate and EMA-decay schedules, as functions of the global step.

Everything here is a pure function of the step, so a resumed run recomputes exactly the values an
uninterrupted run would have used: no schedule state is kept anywhere.

Learning rate (spec §4.1, Q2):
- "official_warmup_constant": what the official code really runs. The LR is set once per epoch,
  lr(e) = initial + (base - initial) · e / warmup for e < warmup, then `base` forever (the
  configured cosine annealing is overwritten every epoch, Q2).
- "warmup_cosine": a per-step linear warmup from `initial` to `base`, then a cosine decay to
  `final` (the schedule the official scripts appear to intend).
- "constant": `base` from the first step.

EMA decay τ (spec §1.2): τ(e) = 1 - (1 - τ_base)(cos(π e / E) + 1) / 2, increasing from τ_base to 1.
- unit "epoch" reproduces the official timing: τ is recomputed after each update from that step's
  epoch, so the update at step t uses τ(epoch(t - 1)), and the first update uses τ_base.
- unit "step" uses τ(t / T) with T the total number of steps (BYOL's form).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

LR_SCHEDULES = ("official_warmup_constant", "warmup_cosine", "constant")
EMA_UNITS = ("epoch", "step")

Schedule = Callable[[jax.Array], jax.Array]


def learning_rate_schedule(
    name: str,
    *,
    base_lr: float,
    initial_lr: float,
    warmup_epochs: float,
    total_epochs: int,
    steps_per_epoch: int,
    final_lr: float = 0.0,
) -> Schedule:
    """Returns step -> learning rate for the named schedule (see the module docstring)."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"Unknown learning-rate schedule {name!r}; choose one of {LR_SCHEDULES}.")

    def official_warmup_constant(step: jax.Array) -> jax.Array:
        epoch = jnp.floor_divide(step, steps_per_epoch).astype(jnp.float32)
        if warmup_epochs <= 0:
            return jnp.full_like(epoch, base_lr)
        warm = initial_lr + (base_lr - initial_lr) * epoch / warmup_epochs
        return jnp.where(epoch < warmup_epochs, warm, base_lr)

    def warmup_cosine(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        warmup_steps = warmup_epochs * steps_per_epoch
        total_steps = max(total_epochs * steps_per_epoch, 1)
        warm = initial_lr + (base_lr - initial_lr) * step / max(warmup_steps, 1.0)
        progress = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1.0), 0.0, 1.0)
        cosine = final_lr + (base_lr - final_lr) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup_steps, warm, cosine)

    def constant(step: jax.Array) -> jax.Array:
        return jnp.full_like(jnp.asarray(step, jnp.float32), base_lr)

    return {
        "official_warmup_constant": official_warmup_constant,
        "warmup_cosine": warmup_cosine,
        "constant": constant,
    }[name]


def cosine_ema_decay(progress: jax.Array, tau_base: float) -> jax.Array:
    """τ = 1 - (1 - τ_base)(cos(π · progress) + 1) / 2, progress clipped to [0, 1] (spec §1.2)."""
    progress = jnp.clip(progress, 0.0, 1.0)
    return 1.0 - (1.0 - tau_base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def ema_decay_schedule(
    unit: str, *, tau_base: float, total_epochs: int, steps_per_epoch: int
) -> Schedule:
    """Returns step -> τ used by the EMA update *at* that step (see the module docstring)."""
    if unit not in EMA_UNITS:
        raise ValueError(f"Unknown EMA schedule unit {unit!r}; choose one of {EMA_UNITS}.")

    def per_epoch(step: jax.Array) -> jax.Array:
        previous = jnp.maximum(jnp.asarray(step) - 1, 0)
        epoch = jnp.floor_divide(previous, steps_per_epoch).astype(jnp.float32)
        return cosine_ema_decay(epoch / max(total_epochs, 1), tau_base)

    def per_step(step: jax.Array) -> jax.Array:
        total_steps = max(total_epochs * steps_per_epoch, 1)
        return cosine_ema_decay(jnp.asarray(step, jnp.float32) / total_steps, tau_base)

    return per_epoch if unit == "epoch" else per_step
