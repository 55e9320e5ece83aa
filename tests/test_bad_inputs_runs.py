"""Bad inputs that meet a run, not just its start-up, and how the command lines report them (20).

- Workdir lock: a second run is refused with the holder named; a killed holder never blocks the
  next run (flock); without flock, only stale locks are taken over.
- Config changes on resume: trajectory fields refused, free fields allowed, an allowed change
  keeps the old config.json; writes are atomic, so a full disk never empties a written file.
- Damaged 3DIEBench files met by the reader: the batch fails naming the file (truncated JPEG,
  latent of another shape or dtype, image of another size); during training the steps already
  trained are checkpointed first.
- A full disk mid-run: one `ERROR:` line, no traceback, the newest checkpoint named and kept.
- The command lines: user errors as one line with exit status 1 (main in-process; evaluate and
  convert in one subprocess each), bugs and SEQJEPA_TRACEBACK=1 with their traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf
from test_bad_inputs import previous_run, snapshot
from tiny import load_config

from seqjepa_jax import (
    checkpointing,
    main,
    run_config,
    train,
    training_history,
    user_errors,
)
from seqjepa_jax.config_defaults import base_config
from seqjepa_jax.data import datasets, pipeline
from seqjepa_jax.data.threediebench import ThreeDIEBenchSource, write_3diebench_tree
from seqjepa_jax.faults import DataReadError
from seqjepa_jax.run_config import (
    FREE_FIELDS,
    ConfigChangedError,
    check_config_change,
    save_config,
    write_text_atomically,
)
from seqjepa_jax.workdir_lock import STALE_AFTER_SECONDS, WorkdirLock, WorkdirLockedError

ROOT = os.path.join(os.path.dirname(__file__), "..")
ENV = {**os.environ, "PYTHONPATH": os.path.abspath(ROOT), "JAX_PLATFORMS": "cpu"}


def tiny_tree(root: str, objects: int, views: int, size: int = 16) -> list[str]:
    """A 3DIEBench tree (train and val splits share it); the object folders in index order."""
    rng = np.random.default_rng(0)
    arrays = types.SimpleNamespace(
        images=rng.integers(0, 255, (objects, views, size, size, 3), dtype=np.uint8),
        latents=rng.normal(size=(objects, views, 7)).astype(np.float32),
        labels=np.arange(objects, dtype=np.int32) % 3,
        object_ids=np.arange(objects, dtype=np.int32),
    )
    for split in ("train", "val"):
        write_3diebench_tree(arrays, root, split)
    return [os.path.join(root, e.strip("/")) for e in np.load(os.path.join(root, "val_images.npy"))]


@pytest.fixture(scope="module")
def procedural_cache(tmp_path_factory) -> str:
    """The tiny config's rendered objects, shared by the tests that train."""
    folder = str(tmp_path_factory.mktemp("procedural"))
    config = load_config("default", "tiny")
    config.data.data_dir = folder
    datasets.build_view_sources(config)
    return folder


# ------------------------------------------------------------------------------------------------
# The workdir lock.


def test_second_lock_names_the_holder_and_release_removes_it(tmp_path):
    with WorkdirLock(str(tmp_path)) as held:
        holder = rf"pid {os.getpid()} on host {re.escape(socket.gethostname())}, started \d{{4}}-"
        with pytest.raises(WorkdirLockedError, match=rf"in use by another run: {holder}.*command"):
            WorkdirLock(str(tmp_path)).acquire()
        assert json.loads(open(held.path).read())["pid"] == os.getpid()
    assert os.listdir(tmp_path) == []


HOLDER = "import sys, time\nfrom seqjepa_jax.workdir_lock import WorkdirLock\n" + (
    "WorkdirLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(600)\n"
)


def test_killed_holder_never_blocks_the_next_run(tmp_path, caplog):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirLockedError, match=f"pid {holder.pid} on host"):
            WorkdirLock(str(tmp_path)).acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the lock file stays
        holder.wait()
    assert os.listdir(tmp_path) == ["run.lock"]
    with WorkdirLock(str(tmp_path)):  # the kernel released the dead process's flock
        pass
    assert f"ended without releasing it (pid {holder.pid}" in caplog.text


def test_flockless_lock_takes_over_only_stale_holders(tmp_path):
    """gs:// workdirs and filesystems without flock: the lock file's content decides."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    here, now = socket.gethostname(), time.time()
    start = WorkdirLock(str(tmp_path)).details["pid_start"]
    cases = {
        "process gone": ({"host": here, "pid": gone.pid, "heartbeat": now}, True),
        "pid reused": ({"host": here, "pid": os.getpid(), "pid_start": "1", "heartbeat": now},
                       True),
        "alive here": ({"host": here, "pid": os.getpid(), "pid_start": start, "heartbeat": now},
                       False),
        "alive here, late heartbeat": ({"host": here, "pid": os.getpid(), "pid_start": start,
                                        "heartbeat": now - 10 * STALE_AFTER_SECONDS}, False),
        "alive elsewhere": ({"host": "elsewhere", "pid": 1, "heartbeat": now}, False),
        "silent elsewhere": (
            {"host": "elsewhere", "pid": 1, "heartbeat": now - STALE_AFTER_SECONDS - 1},
            True,
        ),
    }  # fmt: skip
    path = tmp_path / "run.lock"
    for name, (holder, stale) in cases.items():
        path.write_text(json.dumps({**holder, "started_text": "earlier"}))
        lock = WorkdirLock(str(tmp_path), use_flock=False)
        if stale:
            lock.acquire()
            assert json.loads(path.read_text())["token"] == lock.details["token"], name
            lock.release()
            assert not path.exists(), name
        else:
            with pytest.raises(WorkdirLockedError, match=r"on host .*stale 150 s after"):
                lock.acquire()


# ------------------------------------------------------------------------------------------------
# Config changes on resume, and atomic writes.


def test_every_free_field_exists():
    config = base_config()
    for field in FREE_FIELDS:
        node = config
        for part in field.removesuffix(".*").split("."):
            assert part in node, f"FREE_FIELDS names {field!r}, which the config does not have"
            node = node[part]


def test_trajectory_changes_are_refused_free_ones_pass_and_the_old_config_is_kept(tmp_path):
    workdir = str(tmp_path)
    config = load_config("default", "tiny")
    save_config(config, workdir, None, [])
    saved = open(tmp_path / "config.json").read()
    assert check_config_change(config, workdir, 4) == []
    config.train.log_every_steps, config.eval.m_val = 5, (1, 2)
    config.data.data_dir, config.train.checkpoint_every_steps = "/moved/data", 9
    free = {k for k, _, _ in check_config_change(config, workdir, 4)}
    assert free == {"train.log_every_steps", "eval.m_val", "data.data_dir"} | {
        "train.checkpoint_every_steps"
    }
    config.seed, config.train.learning_rate = 1, 0.5
    with pytest.raises(
        ConfigChangedError,
        match=r"checkpoint at step 4\).*:\n  - config.seed: 42 -> 1\n  - config.train.learning_"
        r"rate: 0.001 -> 0.5\nRerun .*--allow_config_change to resume at step 4",
    ):
        check_config_change(config, workdir, 4)
    assert check_config_change(config, workdir, None) == []  # no checkpoint: a fresh start
    changes = check_config_change(config, workdir, 4, allow_change=True)
    assert len(changes) == 6
    save_config(config, workdir, 4, changes)
    assert open(tmp_path / "config.step4.json").read() == saved
    second = open(tmp_path / "config.json").read()
    assert json.loads(second)["seed"] == 1
    config.seed = 2  # a second change resumed from the same step keeps the first one too
    save_config(config, workdir, 4, check_config_change(config, workdir, 4, allow_change=True))
    assert open(tmp_path / "config.step4.2.json").read() == second


def test_config_json_of_an_older_version_is_not_refused(tmp_path, caplog):
    config = load_config("default", "tiny")
    tree = json.loads(config.to_json_best_effort())
    del tree["train"]["on_nonfinite"]
    (tmp_path / "config.json").write_text(json.dumps(tree))
    assert check_config_change(config, str(tmp_path), 4) == []
    assert "differ in which fields exist" in caplog.text and "train.on_nonfinite" in caplog.text


def test_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text('{"old": true}')

    class FullDisk:
        def __init__(self, fd, mode):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", FullDisk)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomically(str(path), '{"new": true}')
    assert path.read_text() == '{"old": true}' and os.listdir(tmp_path) == ["config.json"]


# ------------------------------------------------------------------------------------------------
# Damaged data files met by the reader.


def test_reader_fails_the_batch_naming_the_damaged_file(tmp_path):
    folders = tiny_tree(str(tmp_path), objects=4, views=3)
    with open(os.path.join(folders[1], "image_1.jpg"), "r+b") as f:
        f.truncate(300)
    np.save(os.path.join(folders[2], "latent_0.npy"), np.zeros(5))
    np.save(os.path.join(folders[3], "latent_2.npy"), np.zeros(7, np.float32))
    small = tiny_tree(str(tmp_path / "small"), objects=1, views=1, size=8)[0]
    os.replace(os.path.join(small, "image_0.jpg"), os.path.join(folders[0], "image_2.jpg"))
    source = ThreeDIEBenchSource(str(tmp_path), views_per_object=3)  # objects 0, 3 look fine
    cases = [
        (1, 1, r"obj0000000001/image_1.jpg is truncated \(no JPEG end-of-image marker"),
        (2, 0, r"obj0000000002/latent_0.npy is not a complete .npy file of 7 float64 values .*"
         r"'shape': \(5,\)"),
        (3, 2, r"obj0000000003/latent_2.npy is not a complete .npy file .*'descr': '<f4'"),
        (0, 2, r"obj0000000000/image_2.jpg is 8x8 pixels; the dataset's images are 16x16"),
    ]  # fmt: skip
    for obj, view, match in cases:
        with pytest.raises(
            tf.errors.InvalidArgumentError, match="Damaged dataset file: .*" + match
        ):
            source.load_views(tf.constant(obj), tf.constant([view]))
    images, latents = source.load_views(tf.constant(1), tf.constant([0, 2]))  # intact views
    assert images.shape == (2, 16, 16, 3) and np.isfinite(latents.numpy()).all()


def test_damaged_file_mid_run_stops_naming_it_and_keeps_the_trained_steps(tmp_path):
    tree = str(tmp_path / "tree")
    folders = tiny_tree(tree, objects=24, views=8)
    config = load_config("default", "tiny")
    config.data.name, config.data.data_dir = "3diebench", tree
    config.train.checkpoint_every_steps = config.train.eval_every_epochs = 100
    config.eval.compare_random_init = False
    # The third batch of epoch 0 (batch 8: 3 steps per epoch) holds the damaged object.
    order = pipeline.epoch_order(24, config.seed, 0, 0, 1, 24).numpy()
    victim = folders[order[16]]
    for view in range(8):
        np.save(os.path.join(victim, f"latent_{view}.npy"), np.zeros(5))
    workdir = str(tmp_path / "work")
    with pytest.raises(DataReadError) as info:
        train.train_and_evaluate(config, workdir)
    error = info.value
    name = re.escape(os.path.basename(victim))
    assert re.search(
        rf"could not be read after step {error.step}: {tree}/.*{name}/latent_\d.npy is not a "
        rf"complete .npy .*The state after step {error.step} was saved as a checkpoint\. Replace",
        str(error),
    ), str(error)
    assert error.step in (1, 2)  # the host buffer reads one batch ahead
    assert checkpointing.saved_steps(os.path.join(workdir, "checkpoints")) == [error.step]
    history = [json.loads(line) for line in open(os.path.join(workdir, "history.jsonl"))]
    assert all(r["step"] <= error.step for r in history)
    assert user_errors.is_user_error(error) and not os.path.exists(f"{workdir}/run.lock")


# ------------------------------------------------------------------------------------------------
# A full disk, and the command lines.


def run_main(argv: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """`python -m seqjepa_jax.main ...` in this process: (exit status, stderr)."""
    argv = ["main", f"--config={ROOT}/configs/default.py:tiny", *argv, "--noxla_cpu_fast"]
    monkeypatch.setattr(sys, "argv", argv)  # ml_collections reads the overrides from sys.argv
    for name in [name for name in main.FLAGS if name.startswith("config.")]:
        delattr(main.FLAGS, name)  # an earlier parse in this process defined its override flags
    main.parse_flags(argv)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main.main([])
    return exit_info.value.code, capsys.readouterr().err


def test_full_disk_is_one_message_and_leaves_the_workdir_whole(
    tmp_path, capsys, monkeypatch, procedural_cache
):
    """The disk fills up as a resumed run rewrites its config.json (before compiling)."""
    workdir = tmp_path / "work"
    previous_run(types.SimpleNamespace(workdir=str(workdir)))
    before = snapshot(str(workdir))

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(run_config, "write_text_atomically", full_disk)
    argv = [f"--workdir={workdir}", f"--config.data.data_dir={procedural_cache}"]
    status, err = run_main([*argv, "--config.train.log_every_steps=3"], capsys, monkeypatch)
    assert status == 1 and err.count("ERROR:") == 1 and "Traceback" not in err, err
    assert re.search(
        rf"ERROR: No space left on the disk under {workdir} .*config.step4.json.*newest "
        r"complete: step 4\)\. Free some space .*rerun the same command",
        err,
    ), err
    assert snapshot(str(workdir)) == before  # and the lock was released


@pytest.mark.slow  # compiles and trains 4 steps (~25 s on 2 cores); the start-up case above is fast
def test_full_disk_mid_run_is_one_message_and_keeps_the_checkpoints(
    tmp_path, capsys, monkeypatch, procedural_cache
):
    workdir = tmp_path / "work"
    add = training_history.TrainingHistory.add

    def disk_fills_at_step_4(self, step, kind, values):
        if step >= 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._path))
        add(self, step, kind, values)

    monkeypatch.setattr(training_history.TrainingHistory, "add", disk_fills_at_step_4)
    argv = [f"--workdir={workdir}", f"--config.data.data_dir={procedural_cache}"]
    argv += ["--config.train.async_checkpoints=false", "--config.train.checkpoint_every_steps=2"]
    status, err = run_main(argv, capsys, monkeypatch)
    assert status == 1 and err.count("ERROR:") == 1 and "Traceback" not in err, err
    assert re.search(
        rf"ERROR: No space left on the disk under {workdir} .*history.jsonl.*newest complete: "
        r"step 2\)\. Free some space .*rerun the same command",
        err,
    ), err
    assert checkpointing.saved_steps(str(workdir / "checkpoints"))[-1] == 2
    assert json.loads((workdir / "config.json").read_text())["train"]["batch_size"] == 8


def test_orbax_writer_threads_do_not_repeat_a_full_disk(caplog):
    """Each Orbax writer thread logs the error with its traceback; the run reports it once."""
    quiet = checkpointing.QuietLibraryLogs()
    cause = ValueError("RESOURCE_EXHAUSTED: Failed to write 98167 bytes: No space left on device")

    def record(message, exc=None):
        return logging.LogRecord(
            "absl", logging.ERROR, "/site-packages/orbax/checkpoint/future.py", 1, message, None,
            (type(exc), exc, None) if exc else None,
        )  # fmt: skip

    assert not quiet.filter(record("_SignalingThread.run() raised an exception", cause))
    assert not quiet.filter(record(f"Failed to run commit operations: {cause}"))
    assert quiet.filter(record("Orbax: some other error", ValueError("boom")))
    task = record(f"Task exception was never retrieved\nfuture: <Task exception={cause!r}>")
    task.name, task.pathname = "asyncio", "/lib/python3.11/asyncio/base_events.py"
    assert not quiet.filter(task)
    assert user_errors.disk_full_cause(RuntimeError("while saving")) is None
    wrapped = RuntimeError("while saving")
    wrapped.__context__ = cause
    assert user_errors.disk_full_cause(wrapped) is cause


def test_late_writes_of_a_failed_save_print_one_note(capsys):
    """TensorStore reports each write that completes after Orbax closed the loop of a failed save
    as an unraisable exception; the command lines note them once and pass on everything else."""
    tensorstore = pytest.importorskip("tensorstore")
    others = []
    hook = user_errors.QuietLateWrites(others.append)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "unraisablehook", hook)
        for _ in range(3):
            promise, future = tensorstore.Promise.new()
            loop = asyncio.new_event_loop()
            task = loop.create_task(wait_for(future))
            loop.run_until_complete(asyncio.sleep(0.01))
            loop.close()
            promise.set_result(0)  # TensorStore now reports 'Event loop is closed'
            task._log_destroy_pending = False  # the loop is gone: no "Task was destroyed" noise
        hook(types.SimpleNamespace(exc_value=ValueError("another unraisable")))
    assert hook.dropped == 3 and [str(u.exc_value) for u in others] == ["another unraisable"]
    assert capsys.readouterr().err.count("Note: writes of a checkpoint save") == 1


async def wait_for(future):
    return await future


def test_main_prints_a_user_error_as_one_line(tmp_path, capsys, monkeypatch, procedural_cache):
    status, err = run_main(
        [f"--workdir={tmp_path / 'w'}", f"--config.data.data_dir={procedural_cache}"]
        + ["--config.train.batch_size=-4"],
        capsys,
        monkeypatch,
    )
    assert status == 1 and "Traceback" not in err
    assert "ERROR: Invalid configuration:\n  - config.train.batch_size=-4 is not a positive" in err
    assert snapshot(str(tmp_path / "w")) is None


def test_bugs_and_requested_tracebacks_keep_their_traceback(tmp_path, monkeypatch):
    main.parse_flags(["main", f"--config={ROOT}/configs/default.py:tiny", f"--workdir={tmp_path}"])
    monkeypatch.setattr(train, "train_and_evaluate", lambda *args, **kwargs: {}["bug"])
    with pytest.raises(KeyError):
        main.main([])

    def user_mistake(*args, **kwargs):
        raise ConfigChangedError("changed")

    monkeypatch.setattr(train, "train_and_evaluate", user_mistake)
    monkeypatch.setenv(user_errors.TRACEBACK_ENV, "1")
    with pytest.raises(ConfigChangedError):
        main.main([])


def command_line(module: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"seqjepa_jax.{module}", *argv],
        cwd=ROOT,
        env={**ENV, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_evaluate_without_a_checkpoint_says_so_in_one_line(tmp_path, procedural_cache):
    result = command_line(
        "evaluate",
        "--config=configs/default.py:tiny",
        f"--workdir={tmp_path}",
        f"--config.data.data_dir={procedural_cache}",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert re.search(r"ERROR: No checkpoint in .*checkpoints: train first", result.stderr)


def test_convert_refuses_pickled_objects_without_advising_to_run_them(tmp_path):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "with_args.pth")
    torch.save({"model": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=0.1)}, path)
    result = command_line(
        "convert",
        f"--torch_checkpoint={path}",
        "--config=configs/default.py:tiny",
        f"--out={tmp_path / 'out'}",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert re.search(
        r"ERROR: .*with_args.pth holds pickled Python objects such as argparse.Namespace besides "
        r"tensors.*never runs code.*re-save just its weights",
        result.stderr,
    ), result.stderr[-2000:]
    assert "weights_only" not in result.stderr and not (tmp_path / "out").exists()
