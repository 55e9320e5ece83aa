"""Loading a training checkpoint for evaluation, with its shapes checked against the config first.

A checkpoint restored into a state built from a different config fails deep inside Orbax with a
message about tensorstore shapes, or worse, after features have been extracted. The evaluation
program therefore reads the checkpoint's stored array metadata (no array data), compares every
leaf's path and shape with the abstract state that the config builds (`jax.eval_shape`, nothing
compiled) and raises a ValueError naming the first mismatching leaf and the config fields that
usually cause it, before anything else runs.

The comparison works on plain path strings ("params/model/encoder/conv1/kernel"), so it does not
depend on how Orbax stores dataclasses, tuples or named tuples.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

LeafShapes = dict[str, tuple[int, ...]]
HINT = (
    "The checkpoint was written with a different model or data config: evaluate with the "
    "training run's config (its workdir holds config.json) and the same --config.* overrides "
    "(model.width, model.stage_sizes, model.act_proj_dim, data.latent_type, data.num_classes, "
    "train.use_ema, train.optimizer, ...)."
)


def checkpoint_dir(workdir: str) -> str:
    """Where `train.py` writes checkpoints in a workdir."""
    return os.path.join(workdir, "checkpoints")


def available_steps(directory: str) -> list[int]:
    """Steps of the complete checkpoints in `directory` (empty if there is none)."""
    if not os.path.isdir(directory):
        return []
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False))
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def choose_step(workdir: str, step: int | None) -> int:
    """`step`, or the newest one, after checking that the workdir holds it (clear ValueError)."""
    directory = checkpoint_dir(workdir)
    steps = available_steps(directory)
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


def path_name(path: tuple[Any, ...]) -> str:
    """'params/model/encoder/conv1/kernel' for a pytree key path of any container type."""
    parts = []
    for key in path:
        for attribute in ("name", "key", "idx"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def leaf_shapes(tree: Any) -> LeafShapes:
    """{path name: shape} of every array leaf of a pytree (arrays, ShapeDtypeStructs, metadata)."""
    return {
        path_name(path): tuple(int(d) for d in leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if hasattr(leaf, "shape")
    }


def stored_shapes(directory: str, step: int) -> LeafShapes:
    """{path name: shape} of the arrays stored at `step`, read from metadata only."""
    manager = ocp.CheckpointManager(
        directory,
        item_handlers=ocp.StandardCheckpointHandler(),
        options=ocp.CheckpointManagerOptions(create=False),
    )
    try:
        return leaf_shapes(manager.item_metadata(step))
    finally:
        manager.close()


def first_mismatch(expected: LeafShapes, stored: LeafShapes) -> str | None:
    """A sentence about the first leaf (in the expected state's order) that differs, or None."""
    for name, shape in expected.items():
        if name not in stored:
            return f"the config builds {name} {shape}, which the checkpoint does not hold"
        if stored[name] != shape:
            return f"{name} has shape {stored[name]} in the checkpoint but {shape} in the config"
    extra = [name for name in stored if name not in expected]
    if extra:
        name = extra[0]
        return f"the checkpoint holds {name} {stored[name]}, which the config does not build"
    return None


def check_checkpoint_matches(directory: str, step: int, abstract_state: Any) -> None:
    """Raises ValueError naming the first leaf whose path or shape differs (module docstring)."""
    problem = first_mismatch(leaf_shapes(abstract_state), stored_shapes(directory, step))
    if problem is not None:
        raise ValueError(
            f"Checkpoint step {step} in {directory} does not match the config: {problem}. {HINT}"
        )
