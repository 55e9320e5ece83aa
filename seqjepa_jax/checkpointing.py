"""Orbax checkpoints of the whole train state: automatic resume, corruption and shape checks.

A checkpoint holds the complete `TrainState` (online and target parameters, both BN states, the
optimiser state, the step and the RNG key). Schedules and data order are functions of the step
(`schedules.py`, `data/pipeline.py`), so restoring the state restores the whole trajectory; the
official code, by contrast, drops the optimiser state and restarts τ on resume (spec §9, Q34).

Atomicity: Orbax writes each step into a temporary directory, renames it when complete and only
then garbage-collects the oldest step beyond `keep`, so an interrupted save never replaces the
last good checkpoint. Leftover temporary directories of a killed save are removed on start-up
(they never count as checkpoints).

Corruption (issue 7.3): `Checkpointer.restore` tries the steps newest first and skips any that
Orbax cannot read (files deleted or truncated), logging a warning that names the step and the
reason. Skipped steps are moved, never deleted, into `<checkpoints>.skipped/`, because a step
folder newer than the resumed step would stop every later save (Orbax saves only steps after the
newest one it sees). If no step is readable the run stops with an error and touches nothing.

Shape check: `check_compatible` compares the arrays stored in a workdir's checkpoint with the
state the config builds, before anything compiles or writes, and names the first leaf that
differs (a workdir reused with another model config).
"""

from __future__ import annotations

import contextlib
import logging as pylogging
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from seqjepa_jax.user_errors import UserError, disk_full_cause, is_disk_full_text


class NoReadableCheckpointError(UserError, RuntimeError):
    """Every checkpoint in the directory is unreadable (the message says what to do)."""


SKIPPED_SUFFIX = ".skipped"
"""Unreadable step folders are moved to `<checkpoint dir>` + this suffix (never deleted)."""


class Checkpointer:
    """Saves every `save_every_steps` steps (and on request), keeps the newest `keep`.

    Args:
      directory: where the step folders go (created if missing).
      save_every_steps: interval of periodic saves. In a multi-host run Orbax also saves at the
        step on which all hosts agreed to stop after a preemption notice.
      keep: how many checkpoints to keep.
      async_save: write in a background thread (call `wait` before reading or exiting).
    """

    def __init__(
        self, directory: str, *, save_every_steps: int, keep: int = 3, async_save: bool = True
    ) -> None:
        self.directory = absolute(directory)
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(int(save_every_steps), 1),
            max_to_keep=max(int(keep), 1),
            create=True,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        # One handler given explicitly: single-item mode from the start. Left to itself, Orbax
        # infers the mode from the first step it reads, and a damaged one (item folder missing)
        # would make it misread every intact older step too.
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        """The newest saved step, or None when the directory holds no checkpoint."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every saved step, oldest first, as this run's manager sees them (its cache is kept
        current by its own saves and reloads; `saved_steps` reads a directory from outside)."""
        return sorted(self._manager.all_steps())

    def should_save(self, step: int) -> bool:
        """Whether `save(step, ...)` without `force` would write (interval or preemption)."""
        return int(step) != self._manager.latest_step() and self._manager.should_save(int(step))

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves `state` at `step` if the interval says so (always with `force`, once per step)."""
        if int(step) == self._manager.latest_step():
            return False
        return self._manager.save(int(step), args=ocp.args.StandardSave(state), force=force)

    def restore(self, abstract_state: Any, step: int | None = None) -> Any:
        """Restores a state into `abstract_state`'s structure: the given step, or the newest
        intact one (see the module docstring: unreadable newer steps are skipped and set aside).

        `abstract_state` gives shapes, dtypes and shardings, e.g. `jax.eval_shape` of the
        initialiser with shardings attached, so arrays land directly where the step expects them.
        """
        if step is not None:
            logging.info("Restoring checkpoint step %d from %s", step, self.directory)
            return self._restore_step(step, abstract_state)
        skipped: list[tuple[int, str]] = []
        for candidate in reversed(self.all_steps()):
            try:
                state = self._restore_step(candidate, abstract_state)
            except Exception as error:  # Orbax/TensorStore raise many types for unreadable files.
                reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
                logging.warning(
                    "Skipping checkpoint step %d in %s, it cannot be read (%s).",
                    candidate,
                    self.directory,
                    reason,
                )
                skipped.append((candidate, reason))
                continue
            logging.info("Restored checkpoint step %d from %s", candidate, self.directory)
            if skipped:
                self._set_aside([s for s, _ in skipped], restored=candidate)
            return state
        details = "; ".join(f"step {s}: {r}" for s, r in skipped) or "no step folders"
        raise NoReadableCheckpointError(
            f"No readable checkpoint in {self.directory} ({details}). Nothing was deleted. To "
            "start afresh, move that folder away or pass a new --workdir."
        )

    def _restore_step(self, step: int, abstract_state: Any) -> Any:
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def _set_aside(self, steps: list[int], *, restored: int) -> None:
        """Moves unreadable step folders out of the way (process 0), then reloads the step list."""
        target = epath.Path(self.directory + SKIPPED_SUFFIX)
        if jax.process_index() == 0:
            target.mkdir(parents=True, exist_ok=True)
            for step in steps:
                destination = target / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
                epath.Path(self.directory, str(step)).rename(destination)
                logging.warning(
                    "Resumed from step %d; moved the unreadable step %d to %s (kept for "
                    "inspection; delete it when no longer needed).",
                    restored,
                    step,
                    destination,
                )
        ocp.multihost.sync_global_processes("seqjepa_set_aside_unreadable_checkpoints")
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def checkpoint_dir(workdir: str) -> str:
    """Where a run keeps its checkpoints inside its workdir (train, evaluate and convert agree)."""
    return os.path.join(workdir, "checkpoints")


def absolute(directory: str) -> str:
    """An absolute local path, or a URL such as gs://bucket/dir unchanged."""
    return directory if "://" in directory else os.path.abspath(directory)


def _path_name(path: tuple[Any, ...]) -> str:
    """'params/model/encoder/kernel' from a pytree key path (dict keys, attributes, indices)."""
    parts = []
    for key in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def leaf_shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """{leaf path: (shape, dtype name)} of arrays, ShapeDtypeStructs or Orbax ArrayMetadata."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        _path_name(path): (tuple(int(d) for d in leaf.shape), str(leaf.dtype))
        for path, leaf in flat
        if hasattr(leaf, "shape")
    }


@contextlib.contextmanager
def _read_only_manager(directory: str) -> Iterator[ocp.CheckpointManager | None]:
    """A manager that reads `directory` and creates and changes nothing; None if it is not a
    directory (local path or URL such as gs://bucket/dir)."""
    if not epath.Path(directory).is_dir():
        yield None
        return
    manager = ocp.CheckpointManager(
        absolute(directory),
        options=ocp.CheckpointManagerOptions(read_only=True),
        item_handlers=ocp.StandardCheckpointHandler(),
    )
    try:
        yield manager
    finally:
        manager.close()


def saved_steps(directory: str) -> list[int]:
    """Steps of the complete checkpoints in `directory`, oldest first (empty if there is none).

    Reads the directory only. Temporary folders of an unfinished or killed save never count (Orbax
    lists finalised step folders only).
    """
    with _read_only_manager(directory) as manager:
        return [] if manager is None else sorted(manager.all_steps())


def stored_shapes(
    directory: str, step: int | None = None
) -> tuple[int, dict[str, tuple[tuple[int, ...], str]]] | None:
    """(step, leaf shapes) of `step`, or of the newest step whose metadata is readable.

    Reads metadata only; creates and changes nothing. None when there is no readable step.
    """
    with _read_only_manager(directory) as manager:
        if manager is None:
            return None
        steps = sorted(manager.all_steps(), reverse=True) if step is None else [step]
        for candidate in steps:
            try:
                metadata = manager.item_metadata(candidate)
            except Exception:  # unreadable: `Checkpointer.restore` skips it with a warning.
                if step is not None:
                    raise
                continue
            if metadata is not None:
                return candidate, leaf_shapes(metadata)
        return None


def first_mismatch(
    expected: dict[str, tuple[tuple[int, ...], str]], stored: dict[str, tuple[tuple[int, ...], str]]
) -> str | None:
    """A sentence about the first leaf (by path) whose presence, shape or dtype differs, or None."""
    for name in sorted(set(stored) | set(expected)):
        if name not in stored:
            return f"the config's state has {name} {expected[name][0]}, the checkpoint has not"
        if name not in expected:
            return f"the checkpoint has {name} {stored[name][0]}, the config's state has not"
        if stored[name] != expected[name]:
            return (
                f"{name} is {stored[name][1]}{list(stored[name][0])} in the checkpoint but "
                f"{expected[name][1]}{list(expected[name][0])} for this config"
            )
    return None


WORKDIR_ADVICE = (
    "Use a new --workdir for this config, or rerun with the config of that run (its config.json "
    "is in the workdir)."
)


def check_compatible(
    directory: str, abstract_state: Any, *, step: int | None = None, advice: str = WORKDIR_ADVICE
) -> None:
    """Raises ValueError if the checkpoint at `step` (default: the newest readable one) in
    `directory` does not fit `abstract_state`.

    Names the first leaf whose path, shape or dtype differs, so that a workdir reused with a
    different model config fails at start-up instead of deep inside Orbax (issue 7.5), and so
    does an evaluation with the wrong config.
    """
    found = stored_shapes(directory, step)
    if found is None:
        return
    found_step, stored = found
    problem = first_mismatch(leaf_shapes(abstract_state), stored)
    if problem:
        raise ValueError(
            f"The checkpoint at step {found_step} in {directory} was written by a different model "
            f"or optimiser configuration: {problem}. {advice}"
        )


class QuietLibraryLogs(pylogging.Filter):
    """Drops INFO/DEBUG records of Orbax (dozens of lines per save) from the run's log, its
    warnings about read-only managers, and its records of a full disk: each of its writer threads
    and each failed write task (through asyncio, "Task exception was never retrieved") logs the
    same error with a traceback, and the run reports it once (`DiskFullError`)."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        from_asyncio = record.name == "asyncio"  # Orbax's write tasks, reported when collected
        if "orbax" not in record.pathname and not from_asyncio:
            return True
        message = record.getMessage()
        if from_asyncio:
            return not is_disk_full_text(message)
        if record.levelno < pylogging.WARNING or "read_only=True" in message:
            return False
        if "directory is read only" in message:  # our read-only look at a workdir is no news
            return False
        error = record.exc_info[1] if record.exc_info else None
        disk_full = (error is not None and disk_full_cause(error) is not None) or (
            is_disk_full_text(message)
        )
        return not disk_full


def quiet_orbax_logs() -> None:
    """Installs `QuietLibraryLogs` on absl's handler (idempotent)."""
    handler = logging.get_absl_handler()
    if not any(isinstance(f, QuietLibraryLogs) for f in handler.filters):
        handler.addFilter(QuietLibraryLogs())


def abstract_like(state: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a concrete state, as `restore` expects."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
