"""Start-up checks of a run that need more than the config: data sizes and the workdir.

`train.train_and_evaluate` runs them after `config_checks.validate_config` and after the data
sources are opened, before anything compiles or is written into the workdir (issue 7.5): a bad
input fails in seconds, with a message naming the field or path and the fix, and leaves nothing
behind that a later run could mistake for its own state. The checkpoint-shape check lives with the
checkpoints (`checkpointing.check_compatible`), the config-change check with the saved config
(`run_config.py`), the workdir lock in `workdir_lock.py`. `RunGuard` wraps the whole run: errors
before `inputs_checked` are the user's, a full disk becomes one message (issue 20).
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import jax
import ml_collections
import orbax.checkpoint as ocp

from seqjepa_jax import methods
from seqjepa_jax.data import pipeline
from seqjepa_jax.data.sources import ViewSource
from seqjepa_jax.faults import read_error_detail
from seqjepa_jax.user_errors import (
    DiskFullError,
    disk_full_cause,
    disk_full_message,
    mark_if_input_error,
    mark_user_error,
)


def check_data_fits(
    config: ml_collections.ConfigDict,
    train_source: ViewSource,
    eval_source: ViewSource,
    process_count: int,
) -> None:
    """Raises ValueError if the sources cannot feed the configured batches and views.

    The same checks as `pipeline.validate` (which the streams run later, after compiling), with
    the config fields named.
    """
    checks = (
        ("train", train_source, methods.training_views(config), config.train.batch_size, True),
        ("eval", eval_source, config.eval.num_views, config.eval.batch_size, False),
    )
    for split, source, num_views, batch, drop_remainder in checks:
        try:
            pipeline.validate(
                source,
                num_views,
                batch,
                config.data.latent_type,
                process_count,
                drop_remainder=drop_remainder,
            )
        except ValueError as error:
            fields = (
                "config.train.batch_size / config.train.seq_len"
                if split == "train"
                else "config.eval.batch_size / config.eval.num_views"
            )
            raise ValueError(
                f"The {split} data ({source.describe()}) does not fit {fields}: {error}"
            ) from error


def is_remote(path: str) -> bool:
    """True for URLs such as gs://bucket/dir (checked by the filesystem client instead)."""
    return "://" in path


def check_workdir_writable(workdir: str) -> None:
    """Creates `workdir` if needed and proves it writable with a temporary file (then removed).

    Raises ValueError naming the path and the fix. Remote paths are left to the writers. Run it
    last among the start-up checks: it is the first thing that creates anything.
    """
    if is_remote(workdir):
        return
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(
            f"--workdir={workdir} exists and is not a directory; pass a directory path."
        )
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise ValueError(
            f"--workdir={workdir} cannot be created or written ({error.strerror or error}); pass "
            "a directory you can write to, or fix its permissions."
        ) from error


def wait_for_all_hosts(name: str) -> None:
    """Barrier over all processes of a multi-host run (no-op with one process)."""
    if jax.process_count() > 1:
        ocp.multihost.sync_global_processes(name)


class RunGuard:
    """Held around a training run (`train.train_and_evaluate`), for the user's sake (issue 20).

    - Errors raised before `inputs_checked()` (the start-up checks) are the user's: the command
      line prints them as one message (`user_errors.py`).
    - `stack` holds what the run must release however it ends (the workdir lock).
    - A full disk, wherever it strikes (Orbax's writer threads, the history, the metric files),
      becomes one `DiskFullError` naming the workdir and the newest complete checkpoint.
    """

    def __init__(self, workdir: str, checkpoint_dir: str) -> None:
        self.workdir = workdir
        self.checkpoint_dir = checkpoint_dir
        self.checked = False
        self.stack = contextlib.ExitStack()

    def inputs_checked(self) -> None:
        """From here on, errors are no longer attributed to the inputs."""
        self.checked = True

    def __enter__(self) -> RunGuard:
        return self

    def _saved(self) -> str:
        from seqjepa_jax import checkpointing

        try:
            steps = checkpointing.saved_steps(self.checkpoint_dir)
        except Exception:  # noqa: BLE001 (only decorates the message)
            return ""
        if not steps:
            return "No checkpoint was complete yet. "
        return f"The checkpoints already written are intact (newest complete: step {steps[-1]}). "

    def __exit__(self, exc_type: object, error: BaseException | None, traceback: object) -> None:
        self.stack.close()
        if error is None or not isinstance(error, Exception):
            return
        if not self.checked:
            mark_if_input_error(error)
        elif read_error_detail(error) is not None:  # a damaged file met while evaluating
            mark_user_error(error)
        cause = disk_full_cause(error)
        if cause is not None and not isinstance(error, DiskFullError):
            message = disk_full_message(cause, self.workdir, self._saved())
            raise DiskFullError(message) from error
