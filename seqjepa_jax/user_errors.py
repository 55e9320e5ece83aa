"""Errors the user can fix, printed by the command lines as one message without a traceback.

A traceback is the right answer to a bug in this library. For a mistake in the input (a config
value, a data file, a workdir in use, a full disk) it buries the one line that says what to fix
under forty lines of frames (issue 20). The command lines (`main`, `evaluate`, `convert`) are
therefore wrapped in `entry_point`, which prints such an error as `ERROR: <message>` on stderr and
exits with status 1 (absl's status for bad flags), and lets every other exception through with its
traceback. An error counts as the user's when it is

- a `UserError` (raised where the cause is known: a workdir in use, a changed config, a damaged
  data file met during training, a full disk);
- a ValueError, OSError or TensorFlow OpError raised inside `checking_inputs()`: the block that
  reads and checks a run's inputs before anything compiles; its checks raise ValueError naming the
  field or file and the fix (the table in tests/test_bad_inputs.py);
- any exception caused by a full disk (ENOSPC or EDQUOT anywhere in its chain, or the text of
  either in a TensorStore/Orbax error): one message naming the disk's folder replaces the dozen
  tracebacks of Orbax's writer threads.

`SEQJEPA_TRACEBACK=1` in the environment shows the traceback of every error (to report a bug).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

TRACEBACK_ENV = "SEQJEPA_TRACEBACK"
EXIT_STATUS = 1
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
DAMAGED_FILE = "Damaged dataset file: "
"""How a message about a damaged data file starts (the start-up scan and the reader's checks)."""
DAMAGED_FILE_ADVICE = (
    "Replace the file (re-extract or re-download it), or drop the damaged objects with "
    "--config.data.verify_files=true --config.data.on_bad_file=skip; then rerun the same command "
    "to resume from the newest checkpoint."
)
_MARK = "_seqjepa_user_error"


class UserError(Exception):
    """An error caused by the input or the environment; its message names the cause and the fix."""


class DiskFullError(UserError):
    """A write failed because the disk (or the user's quota) is full."""


def mark_user_error(error: BaseException) -> BaseException:
    """Flags `error` as the user's (see the module docstring) and returns it."""
    with contextlib.suppress(AttributeError, TypeError):  # built-in instances without __dict__
        setattr(error, _MARK, True)
    return error


def is_user_error(error: BaseException) -> bool:
    """Whether `entry_point` prints `error` as a message (module docstring)."""
    return (
        isinstance(error, UserError)
        or bool(getattr(error, _MARK, False))
        or disk_full_cause(error) is not None
    )


def _input_error_types() -> tuple[type[BaseException], ...]:
    """ValueError, OSError, and TensorFlow's OpError if TensorFlow is loaded (never imports it)."""
    tf = sys.modules.get("tensorflow")
    op_error = getattr(getattr(tf, "errors", None), "OpError", None)
    return (ValueError, OSError) + ((op_error,) if isinstance(op_error, type) else ())


def mark_if_input_error(error: BaseException) -> None:
    """Marks `error` as the user's if it has a type that input checks raise."""
    if isinstance(error, _input_error_types()):
        mark_user_error(error)


@contextlib.contextmanager
def checking_inputs() -> Iterator[None]:
    """Marks ValueError, OSError and TensorFlow OpError raised in the block as user errors.

    Wrap only code that reads and checks inputs (config, data, workdir, checkpoint shapes), whose
    errors say what to fix; a ValueError from a bug elsewhere keeps its traceback.
    """
    try:
        yield
    except BaseException as error:
        mark_if_input_error(error)
        raise


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then its causes and contexts (each once)."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend([current.__context__, current.__cause__])


def is_disk_full_text(text: str) -> bool:
    """Whether a message reports a full disk or quota ("No space left on device", ...)."""
    return any(phrase in text for phrase in DISK_FULL_TEXTS)


def disk_full_cause(error: BaseException) -> BaseException | None:
    """The exception in `error`'s chain that reports a full disk or quota, or None."""
    for current in _chain(error):
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        if is_disk_full_text(str(current)):
            return current
    return None


def disk_full_message(cause: BaseException, where: str | None = None, saved: str = "") -> str:
    """One message for a full disk: what failed, where, what was kept, and how to go on."""
    place = f" under {where}" if where else ""
    detail = first_line(str(cause), limit=400)
    return (
        f"No space left on the disk{place} (or the disk quota is exhausted): {detail}. "
        f"{saved}Free some space (or lower config.train.keep_checkpoints), then rerun the same "
        "command: the run resumes from its newest complete checkpoint."
    )


def first_line(text: str, limit: int = 600) -> str:
    """The first non-empty line of `text`, shortened to `limit` characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else text.strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def clean_op_error_text(text: str) -> str:
    """A TensorFlow OpError message without `{{function_node ...}}` and `[[{{node ...}}]]` parts;
    an assertion's data (the message the graph built, e.g. naming a damaged file) when present."""
    asserted = re.search(r"assertion failed: \[(.*?)\]\s*(\[\[|$)", text, re.DOTALL)
    if asserted:  # the graph's string, which TensorFlow printed with escaped quotes
        return asserted.group(1).strip().replace("\\'", "'").replace('\\"', '"')
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    text = re.split(r"\s*\[\[", text, maxsplit=1)[0]
    return re.sub(r"\s*\[Op:\w+\].*$", "", text.strip(), flags=re.DOTALL).strip()


def user_message(error: BaseException) -> str | None:
    """The message `entry_point` prints for `error`, or None if it is not the user's."""
    if not is_user_error(error):
        return None
    cause = disk_full_cause(error)
    if cause is not None and not isinstance(error, DiskFullError):
        return disk_full_message(cause)
    message = getattr(error, "message", None) if not isinstance(error, UserError) else None
    if isinstance(message, str):  # TensorFlow's OpError: drop its graph-node decorations
        text = clean_op_error_text(message)
        if text.startswith(DAMAGED_FILE):  # met while evaluating: no DataReadError around it
            return f"{text}. {DAMAGED_FILE_ADVICE}"
    else:
        text = str(error).strip()
    if isinstance(error, (UserError, ValueError)) or not text:
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}"


def release_frames(error: BaseException) -> None:
    """Frees the locals of the finished frames in `error`'s tracebacks, now.

    They hold the run's resources (a tf.data iterator with its threads, arrays); left to the
    interpreter's shutdown, a tf.data iterator's destructor can wait forever for its threads.
    """
    for current in _chain(error):
        traceback.clear_frames(current.__traceback__)
    gc.collect()


def is_late_write(error: BaseException | None) -> bool:
    """A checkpoint write that finished after its save had failed: Orbax closed its asyncio loop
    on the first error, and TensorStore then calls `loop.call_soon_threadsafe` on a closed loop."""
    if not isinstance(error, RuntimeError) or str(error) != "Event loop is closed":
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return any(frame.name == "call_soon_threadsafe" for frame in frames)


class QuietLateWrites:
    """`sys.unraisablehook` that notes TensorStore's late writes once instead of one traceback
    each (hundreds ahead of the real message when a save fails on a full disk); every other
    unraisable exception goes to the previous hook."""

    def __init__(self, previous: Callable[[Any], Any]) -> None:
        self.previous = previous
        self.dropped = 0

    def __call__(self, unraisable: Any) -> None:
        if not is_late_write(unraisable.exc_value):
            self.previous(unraisable)
            return
        self.dropped += 1
        if self.dropped == 1:
            sys.stderr.write(
                "Note: writes of a checkpoint save that had already failed finished late "
                "('Event loop is closed'); such reports are not shown.\n"
            )


def entry_point(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    """`main` of a command line, printing user errors as one line and exiting with status 1."""

    @functools.wraps(main)
    def run(argv: list[str]) -> Any:
        if not isinstance(sys.unraisablehook, QuietLateWrites):
            sys.unraisablehook = QuietLateWrites(sys.unraisablehook)
        try:
            return main(argv)
        except Exception as error:
            message = user_message(error)
            if message is None or os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
                raise
            release_frames(error)
        sys.stdout.flush()
        sys.stderr.write(f"ERROR: {message}\n")
        sys.stderr.flush()
        sys.exit(EXIT_STATUS)

    return run
