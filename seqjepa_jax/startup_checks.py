"""Start-up checks of a run that need more than the config: data sizes and the workdir.

`train.train_and_evaluate` runs them after `config_checks.validate_config` and after the data
sources are opened, before anything compiles or is written into the workdir (issue 7.5): a bad
input fails in seconds, with a message naming the field or path and the fix, and leaves nothing
behind that a later run could mistake for its own state. The checkpoint-shape check lives with the
checkpoints (`checkpointing.check_compatible`).
"""

from __future__ import annotations

import os
import tempfile

import jax
import ml_collections
import orbax.checkpoint as ocp

from seqjepa_jax import methods
from seqjepa_jax.data import pipeline
from seqjepa_jax.data.sources import ViewSource


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
