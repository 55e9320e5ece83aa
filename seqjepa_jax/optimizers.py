"""The optimisers of the official runs, built with Optax (spec §4.1, §4.3, Q1).

- "adam": what the official transformed-views training really runs (Q1): Adam with
  β = (0.9, 0.999), eps 1e-8 and no weight decay, whatever `--optimizer`/`--weight-decay` said.
  `weight_decay` must be 0 for it (PyTorch's Adam would add L2 to the gradient; nobody ran that).
- "adamw": the official saccade (PLS) training: decoupled decay p ← p - lr·wd·p on every parameter
  with ndim ≠ 1 (conv/linear kernels and the 3-D [AGG] token), none on biases and norm scales.

The online probes share the optimiser and its learning-rate schedule, as officially; their inputs
are stop-gradient, so sharing changes nothing for the self-supervised parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from seqjepa_jax.schedules import Schedule

OPTIMIZERS = ("adam", "adamw")


def decay_mask(params: dict) -> dict:
    """True for parameters that AdamW decays: every array with ndim != 1 (spec §4.3)."""
    return jax.tree.map(lambda p: p.ndim != 1, params)


def build_optimizer(
    name: str, learning_rate: Schedule, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """Returns the named optimiser driven by a step -> learning-rate schedule."""
    if name == "adam":
        if weight_decay:
            raise ValueError(
                "train.optimizer='adam' takes no weight decay (the official training used Adam "
                "with wd=0, spec Q1); set train.weight_decay=0.0 or use train.optimizer='adamw'."
            )
        return optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)
    if name == "adamw":
        return optax.adamw(
            learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay, mask=decay_mask
        )
    raise ValueError(f"Unknown train.optimizer {name!r}; choose one of {OPTIMIZERS}.")


def resume_schedule_at(opt_state: optax.OptState, step: int) -> optax.OptState:
    """Moves the learning-rate schedule's counter of a *fresh* optimiser state to `step`.

    Optax evaluates the schedule at its own counter (`ScaleByScheduleState.count`), not at
    `TrainState.step`. Official resumes (Q34, spec §9) restart Adam's moments but set the LR from
    the resumed epoch; this does the same: the schedule continues at `step` while Adam's moments
    and its bias-correction counter stay at zero.
    """

    def move(node: object) -> object:
        if isinstance(node, optax.ScaleByScheduleState):
            return node._replace(count=jnp.full_like(node.count, step))
        return node

    return jax.tree.map(
        move, opt_state, is_leaf=lambda node: isinstance(node, optax.ScaleByScheduleState)
    )
