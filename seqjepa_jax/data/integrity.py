"""Cheap integrity checks of dataset files, run at start-up (issues 7.5, 20).

A 3DIEBench object is usable when every view has a complete JPEG and a latent `.npy` of 7 floats
(spec §6.1). Decoding millions of JPEGs at start-up would take longer than many runs, so the
start-up scan lists every object's folder (every file present: one listing per object, in
parallel) and reads the contents of the first and last objects, or of all of them with
`config.data.verify_files`. The reader then checks each file again when it reads it for a batch
(`threediebench.py`), so a damaged file stops the run with its name instead of being trained on.
The content checks read only what reveals the common faults, an interrupted copy or download:

- JPEG: starts with the start-of-image marker FF D8 FF and has the end-of-image marker FF D9 among
  its last bytes (a truncated file ends inside the entropy-coded data, where FF D9 cannot occur).
  Bit flips inside a complete file are not detected.
- latent `.npy`: a valid header, shape (7,), float32/float64, and as many data bytes as it says.

`scan_objects` applies them to many objects in parallel (cheap on local disks, and it hides the
latency of network filesystems) and either fails naming the first bad file or drops the bad
objects, by `config.data.on_bad_file`.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Collection, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from seqjepa_jax.user_errors import DAMAGED_FILE

BAD_FILE_POLICIES = ("fail", "skip")
"""Values of `config.data.on_bad_file`."""

JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
JPEG_TAIL_BYTES = 64  # the end marker may be followed by a little padding


def _read_head_and_tail(path: str, head: int, tail: int) -> tuple[bytes, bytes, int]:
    with tf.io.gfile.GFile(path, "rb") as f:
        size = f.size()
        first = f.read(head)
        f.seek(max(size - tail, 0))
        last = f.read(tail)
    return first, last, size


def jpeg_problem(path: str) -> str | None:
    """Why `path` is not a complete JPEG, or None if it looks complete."""
    first, last, size = _read_head_and_tail(path, len(JPEG_START), JPEG_TAIL_BYTES)
    if size == 0:
        return f"{path} is empty"
    if first != JPEG_START:
        return f"{path} is not a JPEG (it does not start with FF D8 FF)"
    if JPEG_END not in last:
        return f"{path} is truncated (no JPEG end-of-image marker FF D9 at its end)"
    return None


def npy_problem(path: str, shape: tuple[int, ...], kinds: str = "f") -> str | None:
    """Why `path` is not a .npy array of `shape` with a dtype kind in `kinds`, or None."""
    with tf.io.gfile.GFile(path, "rb") as f:
        size = f.size()
        try:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            stored_shape, _, dtype = read_header(f)
        except ValueError as error:
            return f"{path} is not a valid .npy file ({error})"
        header_end = f.tell()
    if dtype.hasobject or dtype.kind not in kinds or tuple(stored_shape) != tuple(shape):
        return (
            f"{path} holds a {dtype} array of shape {tuple(stored_shape)}; expected float32 or "
            f"float64 of shape {tuple(shape)}"
        )
    needed = header_end + int(np.prod(shape)) * dtype.itemsize
    if size < needed:
        return f"{path} is truncated ({size} bytes, the header promises {needed})"
    return None


def object_problems(
    folder: str, view_ids: Sequence[int], latent_shape: tuple[int, ...], contents: bool = True
) -> list:
    """Problems of one 3DIEBench object folder (missing or damaged files); [] when usable.

    `contents=False` checks only that the folder holds every file (one listing, no reads).
    """
    if not tf.io.gfile.isdir(folder):
        return [f"{folder} is missing"]
    present = set(tf.io.gfile.listdir(folder))
    problems = []
    for k in view_ids:
        image, latent = f"image_{k}.jpg", f"latent_{k}.npy"
        for name in (image, latent):
            if name not in present:
                problems.append(f"{folder}/{name} is missing")
        if contents and image in present:
            problems.append(jpeg_problem(f"{folder}/{image}"))
        if contents and latent in present:
            problems.append(npy_problem(f"{folder}/{latent}", latent_shape))
    return [p for p in problems if p]


def find_problems(
    folders: Sequence[str],
    view_ids: Sequence[int],
    latent_shape: tuple[int, ...],
    *,
    contents: Collection[int] | None = None,
    max_workers: int = 16,
) -> list[list[str]]:
    """`object_problems` of every folder, in parallel; file contents only of the folders whose
    index is in `contents` (None: all)."""
    ids = [int(k) for k in view_ids]

    def check(i: int) -> list[str]:
        return object_problems(folders[i], ids, latent_shape, contents is None or i in contents)

    with concurrent.futures.ThreadPoolExecutor(max_workers) as pool:
        return list(pool.map(check, range(len(folders))))


def scan_objects(
    folders: Sequence[str],
    view_ids: Sequence[int],
    latent_shape: tuple[int, ...],
    policy: str,
    *,
    max_workers: int = 16,
    contents: Collection[int] | None = None,
    problems: list[list[str]] | None = None,
) -> np.ndarray:
    """Checks every object folder; returns a bool mask of the usable ones.

    With policy "fail" raises ValueError naming the first bad file (in folder order); with
    "skip" logs a warning with the number of dropped objects and the first problems. `contents`
    as in `find_problems`; `problems` reuses its result.
    """
    if policy not in BAD_FILE_POLICIES:
        raise ValueError(f"config.data.on_bad_file={policy!r}; use one of {BAD_FILE_POLICIES}.")
    if problems is None:
        problems = find_problems(
            folders, view_ids, latent_shape, contents=contents, max_workers=max_workers
        )
    bad = [i for i, p in enumerate(problems) if p]
    if bad and policy == "fail":
        i = bad[0]
        raise ValueError(
            f"{DAMAGED_FILE}{problems[i][0]} (object {i} of {len(folders)}; "
            f"{len(bad)} objects have problems). Re-extract or re-download the file, or set "
            "config.data.on_bad_file='skip' to drop the damaged objects from the split."
        )
    if bad:
        examples = "; ".join(problems[i][0] for i in bad[:3])
        logging.warning(
            "Dropped %d of %d objects with missing or damaged files "
            "(config.data.on_bad_file='skip'), e.g. %s",
            len(bad),
            len(folders),
            examples,
        )
    keep = np.ones(len(folders), bool)
    keep[bad] = False
    return keep
