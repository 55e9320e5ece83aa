"""Run-time faults of the training loop: preemption, non-finite steps, unreadable data (7, 20).

Preemption (SIGTERM from TPU VM maintenance, SLURM `--signal`, Kubernetes): the loop asks
`PreemptionWatcher.should_stop(step)` after every step; when it says yes the loop saves a
checkpoint at that step and returns, so the process exits with status 0 and a rerun resumes.

- One process: a Python SIGTERM handler records the signal; the loop stops after the step in
  flight.
- Several processes (`jax.distributed` initialised): every host must stop at the *same* step, or
  the collective save would hang. JAX's preemption sync service (started by
  `jax.distributed.initialize`) catches SIGTERM on whichever host receives it, tells the others
  through the coordinator, and agrees on a step (the largest step any host has reached, plus one);
  `jax.experimental.multihost_utils.reached_preemption_sync_point(step)` turns true on every host
  at that step. Orbax's `CheckpointManager.should_save` consults the same sync point, so the
  periodic save also fires there. No Python handler is installed in this mode: it would replace
  JAX's.

Non-finite values (issue 7.4): `NonFiniteMonitor` checks every step's metrics (loss, gradient and
parameter norms, ...) that the loop fetches anyway for logging, and in any case before each
checkpoint is written, so no checkpoint ever holds a state reached through a non-finite step.
`config.train.on_nonfinite` chooses what happens:

- "stop" (default): raise `FloatingPointError` naming the first bad step and metric; the newest
  checkpoint (written before it) stays as it was.
- "skip": `skip_nonfinite_updates` makes the jitted step keep the previous state (only the step
  counter advances, so data order and schedules stay aligned) whenever a metric is non-finite; the
  monitor logs a warning per skipped step and counts them.

Unreadable training data (issue 20): a file that turns out damaged or missing when the pipeline
reads it (the start-up scan checks every object's files are present, but reads the contents of
all of them only with `config.data.verify_files`) stops the run with a `DataReadError` naming the
file. `named_read_errors` turns the input pipeline's error into it; `keep_progress` first saves
the state reached so far (the steps before the unreadable batch), so no trained step is lost.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from seqjepa_jax.user_errors import (
    DAMAGED_FILE,
    DAMAGED_FILE_ADVICE,
    UserError,
    clean_op_error_text,
    disk_full_cause,
)

NONFINITE_POLICIES = ("stop", "skip")
"""Values of `config.train.on_nonfinite`."""

SKIPPED_METRIC = "nonfinite_skipped"
"""Metric set to 1 on a step whose update `skip_nonfinite_updates` discarded."""


class PreemptionWatcher:
    """Context manager that tells the loop when to checkpoint and stop (module docstring).

    Args:
      multi_process: use JAX's preemption sync point (all hosts stop at one step) instead of a
        Python SIGTERM handler. Default: whether `jax.distributed` is initialised.
    """

    def __init__(self, multi_process: bool | None = None) -> None:
        self.multi_process = (
            jax.distributed.is_initialized() if multi_process is None else multi_process
        )
        self.received = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        logging.warning("Received signal %d: checkpointing after this step and exiting.", signum)
        self.received = True

    def should_stop(self, step: int) -> bool:
        """True once this step is the one to checkpoint and stop at (call after every step)."""
        if self.multi_process and not self.received:
            if multihost_utils.reached_preemption_sync_point(int(step)):
                logging.warning("All hosts reached the preemption sync point at step %d.", step)
                self.received = True
        return self.received

    def __enter__(self) -> PreemptionWatcher:
        if not self.multi_process and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def all_finite(metrics: dict[str, jax.Array]) -> jax.Array:
    """Scalar bool: every metric value is finite (traceable)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))


def skip_nonfinite_updates(
    train_step: Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]],
) -> Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]:
    """Wraps a step so that a step with any non-finite metric keeps the previous state.

    Only `step` advances (data position and schedules stay tied to the step); the metrics are
    returned unchanged plus `SKIPPED_METRIC` (1.0 when the update was discarded).
    """

    def guarded(state: Any, batch: Any) -> tuple[Any, dict[str, jax.Array]]:
        new_state, metrics = train_step(state, batch)
        ok = all_finite(metrics)
        kept = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
        kept = kept.replace(step=new_state.step)
        return kept, {**metrics, SKIPPED_METRIC: 1.0 - ok.astype(jnp.float32)}

    return guarded


class NonFiniteMonitor:
    """Checks the per-step metrics on the host, lazily (module docstring).

    `add(step, metrics)` after each step keeps the device arrays without a host sync; `check()`
    fetches and checks every pending step; `take_mean()` checks and returns the mean of each
    metric over the steps since the last call (skipped steps excluded).
    """

    def __init__(self, policy: str = "stop") -> None:
        if policy not in NONFINITE_POLICIES:
            raise ValueError(
                f"config.train.on_nonfinite={policy!r}; use one of {NONFINITE_POLICIES}."
            )
        self.policy = policy
        self.skipped_steps: list[int] = []
        self._pending: list[tuple[int, dict[str, jax.Array]]] = []
        self._checked: list[dict[str, float]] = []

    def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
        """Records the metrics of the step that produced state `step` (no host sync)."""
        self._pending.append((int(step), metrics))

    def check(self) -> None:
        """Fetches pending metrics; raises (policy 'stop') or records (policy 'skip') bad steps."""
        if not self._pending:
            return
        steps = [s for s, _ in self._pending]
        fetched = jax.device_get([m for _, m in self._pending])
        self._pending = []
        for step, metrics in zip(steps, fetched):
            values = {k: float(np.asarray(v)) for k, v in metrics.items()}
            bad = [k for k, v in values.items() if k != SKIPPED_METRIC and not math.isfinite(v)]
            if not bad:
                self._checked.append(values)
                continue
            if self.policy == "stop" or values.get(SKIPPED_METRIC, 0.0) < 1.0:
                raise FloatingPointError(
                    f"Non-finite {', '.join(bad)} at step {step}; stopping before any checkpoint "
                    "of it is written (the newest checkpoint is from an earlier step and intact). "
                    "Lower config.train.learning_rate, check the data, or set "
                    "config.train.on_nonfinite='skip' to skip such updates."
                )
            self.skipped_steps.append(step)
            logging.warning(
                "Non-finite %s at step %d: update skipped (config.train.on_nonfinite='skip'); "
                "%d skipped so far.",
                ", ".join(bad),
                step,
                len(self.skipped_steps),
            )

    def take_mean(self) -> dict[str, float]:
        """Checks, then returns and forgets the mean metrics of the good steps since last call."""
        self.check()
        checked, self._checked = self._checked, []
        if not checked:
            return {}
        return {k: float(np.mean([m[k] for m in checked])) for k in checked[0]}


class DataReadError(UserError):
    """The input pipeline could not read a training batch (a damaged or missing data file).

    Attributes:
      step: training steps completed when the read failed.
      detail: the reader's message, naming the file where it knows it.
      saved_step: the step of the checkpoint `keep_progress` saved, if it saved one.
    """

    def __init__(self, step: int, detail: str) -> None:
        super().__init__(step, detail)
        self.step, self.detail = step, detail
        self.saved_step: int | None = None

    def __str__(self) -> str:
        kept = (
            f"The state after step {self.saved_step} was saved as a checkpoint"
            if self.saved_step is not None
            else "Every checkpoint written so far is kept"
        )
        detail = self.detail.removeprefix(DAMAGED_FILE)
        return (
            f"The training data could not be read after step {self.step}: {detail}. {kept}. "
            f"{DAMAGED_FILE_ADVICE}"
        )


def read_error_detail(error: Exception) -> str | None:
    """The message of a TensorFlow error that reports an unreadable data file (missing, damaged,
    not permitted), or None for other errors."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    readable = (tf.errors.NotFoundError, tf.errors.PermissionDeniedError, tf.errors.DataLossError)
    text = clean_op_error_text(error.message) if isinstance(error, tf.errors.OpError) else ""
    if isinstance(error, readable):
        return text
    if isinstance(error, tf.errors.InvalidArgumentError) and (
        DAMAGED_FILE in text or "JPEG" in text or "image" in text.lower()
    ):
        return text
    return None


def named_read_errors(batches: Iterator[Any], start_step: int) -> Iterator[Any]:
    """`batches`, with a data-reading error of the pipeline raised as `DataReadError` (module
    docstring); other errors pass through unchanged."""
    step = start_step
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as error:
            detail = str(error) if isinstance(error, OSError) else read_error_detail(error)
            if detail is None or disk_full_cause(error) is not None:
                raise
            raise DataReadError(step, detail) from error
        yield batch
        step += 1


def keep_progress(
    error: BaseException, checkpointer: Any, state: Any, start_step: int, monitor: NonFiniteMonitor
) -> None:
    """After a data-reading error (`DataReadError` of the training batches, or a damaged file met
    by an online evaluation), saves `state`, the last good step, unless this run trained no step
    or a metric was non-finite. Never raises: the data error is what the user must see."""
    if not isinstance(error, DataReadError) and (
        not isinstance(error, Exception) or read_error_detail(error) is None
    ):
        return
    step = int(state.step)
    if step <= start_step:
        return
    try:
        monitor.check()
        checkpointer.save(step, state, force=True)
        checkpointer.wait()
    except Exception as failure:  # noqa: BLE001 (report the data error, not this one)
        logging.warning("Could not checkpoint step %d after the data error: %s", step, failure)
        return
    logging.warning("Saved a checkpoint at step %d before stopping on unreadable data.", step)
    if isinstance(error, DataReadError):
        error.saved_step = step
