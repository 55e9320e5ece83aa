"""Orbax checkpoints of the whole train state, with automatic resume (DESIGN.md).

A checkpoint holds the complete `TrainState` (online and target parameters, both BN states, the
optimiser state, the step and the RNG key). Schedules and data order are functions of the step
(`schedules.py`, `data/pipeline.py`), so restoring the state restores the whole trajectory; the
official code, by contrast, drops the optimiser state and restarts τ on resume (Q34).

Orbax writes each step into a temporary directory and renames it when complete, so an interrupted
save never replaces the last good checkpoint.
"""

from __future__ import annotations

import logging as pylogging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
    """Saves every `save_every_steps` steps (and on request), keeps the newest `keep`.

    Args:
      directory: where the step folders go (created if missing).
      save_every_steps: interval of periodic saves.
      keep: how many checkpoints to keep.
      async_save: write in a background thread (call `wait` before reading or exiting).
    """

    def __init__(
        self, directory: str, *, save_every_steps: int, keep: int = 3, async_save: bool = True
    ) -> None:
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(int(save_every_steps), 1),
            max_to_keep=max(int(keep), 1),
            create=True,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest saved step, or None when the directory holds no checkpoint."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves `state` at `step` if the interval says so (always with `force`, once per step)."""
        if int(step) == self._manager.latest_step():
            return False
        return self._manager.save(int(step), args=ocp.args.StandardSave(state), force=force)

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restores the state at `step` (default: the newest) into `abstract_state`'s structure.

        `abstract_state` gives shapes, dtypes and shardings, e.g. `jax.eval_shape` of the
        initialiser with shardings attached, so arrays land directly where the step expects them.
        """
        step = self.latest_step() if step is None else step
        logging.info("Restoring checkpoint step %s from %s", step, self.directory)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


class QuietLibraryLogs(pylogging.Filter):
    """Drops INFO/DEBUG records of Orbax (dozens of lines per save) from the run's log."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def quiet_orbax_logs() -> None:
    """Installs `QuietLibraryLogs` on absl's handler (idempotent)."""
    handler = logging.get_absl_handler()
    if not any(isinstance(f, QuietLibraryLogs) for f in handler.filters):
        handler.addFilter(QuietLibraryLogs())


def abstract_like(state: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a concrete state, as `restore` expects."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
