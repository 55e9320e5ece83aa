"""Loading a training checkpoint for evaluation, with its shapes checked against the config first.

A checkpoint restored into a state built from a different config fails deep inside Orbax with a
message about tensorstore shapes, or worse, after features have been extracted. The evaluation
program therefore reads the checkpoint's stored array metadata (no array data), compares every
leaf's path and shape with the abstract state that the config builds (`jax.eval_shape`, nothing
compiled) and raises a ValueError naming the first mismatching leaf and the config fields that
usually cause it, before anything else runs.

The comparison is `checkpointing.check_compatible`'s (the same check guards a training resume), on
plain path strings ("params/model/encoder/conv1/kernel"), so it does not depend on how Orbax
stores dataclasses, tuples or named tuples.
"""

from __future__ import annotations

from typing import Any

from seqjepa_jax import checkpointing
from seqjepa_jax.checkpointing import checkpoint_dir  # noqa: F401 (re-exported)

HINT = (
    "The checkpoint was written with a different model or data config: evaluate with the "
    "training run's config (its workdir holds config.json) and the same --config.* overrides "
    "(model.width, model.stage_sizes, model.act_proj_dim, data.latent_type, data.num_classes, "
    "train.use_ema, train.optimizer, ...)."
)


def choose_step(workdir: str, step: int | None) -> int:
    """`step`, or the newest one, after checking that the workdir holds it (clear ValueError)."""
    directory = checkpoint_dir(workdir)
    steps = checkpointing.saved_steps(directory)
    if not steps:
        raise ValueError(
            f"No checkpoint in {directory}: train first (python -m seqjepa_jax.main "
            f"--config=... --workdir={workdir}) or pass the workdir of a finished run."
        )
    if step is None:
        return steps[-1]
    if step not in steps:
        raise ValueError(f"--step={step} is not in {directory}; available steps: {steps}.")
    return step


def check_checkpoint_matches(directory: str, step: int, abstract_state: Any) -> None:
    """Raises ValueError naming the first leaf whose path, shape or dtype differs."""
    checkpointing.check_compatible(directory, abstract_state, step=step, advice=HINT)
