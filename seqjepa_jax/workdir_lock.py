"""One run per workdir: a lock that names its holder and never outlives a dead run (issue 20).

Two runs on one workdir interleave their checkpoints and history: one crashed inside Orbax, the
other recorded every step twice. `train.train_and_evaluate` therefore holds `<workdir>/run.lock`
from the end of its start-up checks to its return; a second run stops at once with a message
naming the holder (host, pid, start time, command).

How a lock is held, and why a dead run never blocks the next one:

- Local and NFS workdirs: an exclusive `fcntl.flock` on the open file, which the kernel (or the
  NFS lock manager) releases when the process ends however it ends: SIGKILL, OOM, a crash. So there
  are no stale locks on these filesystems. The file holds the holder's details; a clean exit
  deletes it, and a file left by a killed run is simply locked again and overwritten by the next
  run, which logs whose run ended without releasing it.
- Workdirs without flock (gs:// and other URLs, some FUSE mounts): the file's content is the lock.
  The holder rewrites its heartbeat time every `HEARTBEAT_SECONDS`. A lock counts as stale, and is
  taken over with a warning, when its holder's process is gone from this host (or its pid now
  belongs to another process), or when its heartbeat is older than `STALE_AFTER_SECONDS` (a holder
  on another host that died). Creating the file is atomic on local disks (O_EXCL); on object stores
  the last writer wins, so the run re-reads the file after writing and gives way if it lost.

Multi-host runs: only process 0 takes the lock (`hold_for_run`); it publishes the outcome in JAX's
distributed key-value store, and every other process raises the same error, so no host writes
into a workdir that another run holds.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from absl import logging

from seqjepa_jax.user_errors import UserError

LOCK_FILE = "run.lock"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 150.0
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class WorkdirLockedError(UserError):
    """Another run holds the workdir."""


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def holder_details() -> dict[str, Any]:
    """Who this process is: host, pid, start time, command line and a unique token."""
    now = time.time()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _process_start(os.getpid()),
        "started": now,
        "started_text": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(now)),
        "heartbeat": now,
        "command": " ".join(sys.argv)[:500],
        "token": uuid.uuid4().hex,
    }


def describe(holder: dict[str, Any]) -> str:
    """'pid 12 on host h, started 2025-01-01 10:00:00 UTC (command: ...)' of a lock's content."""
    if not holder:
        return "a run whose details are not written yet"
    text = (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
        f"{holder.get('started_text', '?')}"
    )
    return text + (f" (command: {holder['command']})" if holder.get("command") else "")


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {"unreadable": text[:200]}
    return value if isinstance(value, dict) else {}


def stale_reason(holder: dict[str, Any], now: float, host: str) -> str | None:
    """Why a lock file with this content (flock-less workdirs) no longer protects a run: its
    process is gone from this host (or its pid was reused), or, for a holder on another host, its
    heartbeat is older than STALE_AFTER_SECONDS. None while it protects one."""
    if holder.get("host") == host and isinstance(holder.get("pid"), int):
        pid = holder["pid"]
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"its process {pid} is no longer running on this host"
        except PermissionError:
            pass  # alive, owned by another user
        start = _process_start(pid)
        if holder.get("pid_start") and start and start != holder["pid_start"]:
            return f"pid {pid} now belongs to another process"
        return None  # alive on this host: a late heartbeat means a busy run, not a dead one
    heartbeat = holder.get("heartbeat")
    if not isinstance(heartbeat, (int, float)) or now - heartbeat > STALE_AFTER_SECONDS:
        return f"its heartbeat is older than {STALE_AFTER_SECONDS:.0f} s"
    return None


class WorkdirLock:
    """The lock of one workdir (module docstring); a context manager.

    Args:
      workdir: the run's folder (must exist; local path or URL).
      use_flock: None picks flock for local paths; False forces the flock-less protocol (tests).
    """

    def __init__(self, workdir: str, *, use_flock: bool | None = None) -> None:
        self.workdir = workdir
        self.remote = "://" in workdir
        self.path = (
            workdir.rstrip("/") + "/" + LOCK_FILE
            if self.remote
            else os.path.join(workdir, LOCK_FILE)
        )
        self.use_flock = (not self.remote) if use_flock is None else use_flock
        self.details = holder_details()
        self._fd: int | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _refuse(self, holder: dict[str, Any]) -> WorkdirLockedError:
        if self.use_flock:
            released = "A killed run releases it by itself"
        else:
            released = (
                f"A run killed on another host leaves it, stale {STALE_AFTER_SECONDS:.0f} s after "
                f"its last heartbeat; delete {self.path} sooner only if you are sure that run "
                "has stopped"
            )
        return WorkdirLockedError(
            f"--workdir={self.workdir} is in use by another run: {describe(holder)}. Two runs on "
            "one workdir overwrite each other's checkpoints and history. Wait for that run to "
            f"finish or stop it, or pass a different --workdir. ({released}.)"
        )

    def acquire(self) -> WorkdirLock:
        """Takes the lock or raises WorkdirLockedError naming the holder."""
        if self.use_flock:
            try:
                self._acquire_flock()
                return self
            except OSError as error:
                if error.errno not in _NO_FLOCK:
                    raise
                logging.warning("No flock on %s (%s); using the lock's content.", self.path, error)
                self.use_flock = False
        self._acquire_by_content()
        return self

    def _acquire_flock(self) -> None:
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse(os.pread(fd, 65536, 0).decode(errors="replace"))
                os.close(fd)
                raise self._refuse(holder) from None
            except BaseException:
                os.close(fd)
                raise
            try:  # a releasing holder may have deleted the file we opened: lock the new one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _parse(os.pread(fd, 65536, 0).decode(errors="replace"))
        if previous:
            logging.warning(
                "Taking over %s from a run that ended without releasing it (%s).",
                self.path,
                describe(previous),
            )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(self.details, indent=1).encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _read(self) -> dict[str, Any] | None:
        from etils import epath

        try:
            return _parse(epath.Path(self.path).read_text())
        except FileNotFoundError:
            return None

    def _write(self, exclusive: bool) -> None:
        from etils import epath

        data = json.dumps(self.details, indent=1)
        if self.remote or not exclusive:
            epath.Path(self.path).write_text(data)
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(data)

    def _acquire_by_content(self) -> None:
        from etils import epath

        holder = self._read()
        if holder is not None:
            reason = stale_reason(holder, time.time(), self.details["host"])
            if reason is None:
                raise self._refuse(holder)
            logging.warning(
                "Taking over the stale lock %s (%s): %s.", self.path, describe(holder), reason
            )
            with contextlib.suppress(FileNotFoundError):
                epath.Path(self.path).unlink()
        try:
            self._write(exclusive=True)
        except FileExistsError:  # another run created it in between
            raise self._refuse(self._read() or {}) from None
        if self.remote:  # object stores: last writer wins; check that it was us
            time.sleep(1.0)
            current = self._read() or {}
            if current.get("token") != self.details["token"]:
                raise self._refuse(current)
        self._heartbeat = threading.Thread(target=self._beat, name="workdir-lock", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                current = self._read() or {}
                if current.get("token") != self.details["token"]:
                    logging.error("Lost %s to %s.", self.path, describe(current))
                    return
                self.details["heartbeat"] = time.time()
                self._write(exclusive=False)
            except Exception as error:  # a heartbeat that fails once must not end the run
                logging.warning("Could not refresh %s: %s", self.path, error)

    def release(self) -> None:
        """Deletes the lock file and releases the lock (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still locked: a waiter then locks a fresh file
            os.close(self._fd)
            self._fd = None
        if self._heartbeat is not None:
            self._stop.set()
            self._heartbeat.join(timeout=5)
            self._heartbeat = None
            current = self._read() or {}
            if current.get("token") == self.details["token"]:
                from etils import epath

                with contextlib.suppress(FileNotFoundError):
                    epath.Path(self.path).unlink()

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


LOCK_RESULT_KEY = "seqjepa_workdir_lock"
_runs_in_this_process = 0  # every process starts its runs in the same order: one key per run


def hold_for_run(workdir: str, stack: contextlib.ExitStack) -> None:
    """Process 0 takes the workdir's lock until `stack` closes; every process raises if it fails.

    Multi-host: the outcome travels through JAX's distributed key-value store (no compilation),
    so the other processes stop with the same message instead of waiting at a barrier.
    """
    import jax

    global _runs_in_this_process
    _runs_in_this_process += 1
    key = f"{LOCK_RESULT_KEY}_{_runs_in_this_process}"
    error: WorkdirLockedError | None = None
    if jax.process_index() == 0:
        try:
            stack.enter_context(WorkdirLock(workdir))
        except WorkdirLockedError as refused:
            error = refused
    if jax.process_count() > 1:
        import orbax.checkpoint as ocp

        client = ocp.multihost.get_jax_distributed_client()
        if jax.process_index() == 0:
            client.key_value_set(key, str(error or ""))
        else:
            message = client.blocking_key_value_get(key, 300_000)
            error = WorkdirLockedError(message) if message else None
    if error is not None:
        raise error
