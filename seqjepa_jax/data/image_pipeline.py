"""Host batches of source images for the augmentation and saccade recipes.

For CIFAR-100, TinyImageNet and STL-10 every view of a sequence is made from one source image
(spec §6.3, §6.4), on the accelerator, by a jitted view maker (`view_makers.py`). The host only
gathers source images from memory, so a host batch is::

    image      uint8   (b, H, W, 3)  source images
    label      int32   (b,)          class id, -1 where unknown or on padding
    sample_id  int32   (b,)          index of the image in its split, -1 on padding
    epoch      int32   (b,)          the epoch the example belongs to (keys its random views)
    mask       float32 (b,)          1 for real examples, 0 for evaluation padding
    saliency   float32 (b, H, W)     only when saliency maps are given (STL-10 released maps)

The order is the same function of (seed, epoch) as the view-source pipeline's
(:func:`seqjepa_jax.data.pipeline.epoch_order`, one global permutation per epoch, host p taking
every P-th entry), and the view maker keys every example's random draws on (seed, epoch,
sample_id). So a batch is a pure function of (seed, step) and of nothing else: no iterator state
to checkpoint, an exact resume, and views that do not depend on the number of hosts or devices.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from seqjepa_jax.data import pipeline
from seqjepa_jax.data.image_sources import ImageArrays


def _check_batch(arrays: ImageArrays, global_batch_size: int, process_count: int) -> int:
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"Global batch size {global_batch_size} must be a positive multiple of the process "
            f"count {process_count}; each host loads global_batch // process_count examples."
        )
    return global_batch_size // process_count


def _gather(
    arrays: ImageArrays, saliency: np.ndarray | None, indices: np.ndarray, real: np.ndarray
) -> dict[str, np.ndarray]:
    safe = np.where(real, indices, 0)
    batch = {
        "image": np.asarray(arrays.images[safe]),
        "label": np.where(real, arrays.labels[safe], -1).astype(np.int32),
        "sample_id": np.where(real, indices, -1).astype(np.int32),
        "mask": real.astype(np.float32),
    }
    if saliency is not None:
        batch["saliency"] = np.asarray(saliency[safe], np.float32)
    return batch


def check_saliency(arrays: ImageArrays, saliency: np.ndarray | None) -> None:
    """Saliency maps must be one (H, W) map per image of the split, at the image's resolution."""
    if saliency is None:
        return
    expected = (arrays.num_examples, *arrays.image_shape)
    if tuple(saliency.shape) != expected:
        raise ValueError(
            f"Saliency maps of shape {tuple(saliency.shape)} do not match {arrays.describe()}: "
            f"expected {expected} (one map per image, at the image resolution)."
        )


def train_image_batches(
    arrays: ImageArrays,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    saliency: np.ndarray | None = None,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless host-local training batches from `start_step` on (see the module docstring)."""
    local_batch = _check_batch(arrays, global_batch_size, process_count)
    check_saliency(arrays, saliency)
    n = arrays.num_examples
    steps = pipeline.steps_per_epoch(n, global_batch_size, process_count)
    if steps < 1:
        raise ValueError(
            f"{arrays.describe()} has fewer images per host than the local batch {local_batch}: "
            "not a single training step per epoch. Lower the batch size."
        )
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0; got {start_step}.")
    epoch, step_in_epoch = divmod(int(start_step), steps)
    real = np.ones(local_batch, bool)
    while True:
        order = pipeline.epoch_order(
            n, seed, epoch, process_index, process_count, steps * local_batch
        ).numpy()
        for s in range(step_in_epoch, steps):
            batch = _gather(arrays, saliency, order[s * local_batch : (s + 1) * local_batch], real)
            batch["epoch"] = np.full(local_batch, epoch, np.int32)
            yield batch
        epoch, step_in_epoch = epoch + 1, 0


def eval_image_batches(
    arrays: ImageArrays,
    *,
    global_batch_size: int,
    max_examples: int | None = None,
    saliency: np.ndarray | None = None,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over the first `max_examples` images in index order, padded with mask 0.

    Host p takes padded positions p, p+P, ... (as the view-source evaluation does); the epoch is
    0, so the views of an image are fixed by the seed alone.
    """
    local_batch = _check_batch(arrays, global_batch_size, process_count)
    check_saliency(arrays, saliency)
    n = arrays.num_examples if max_examples is None else min(arrays.num_examples, max_examples)
    total = -(-n // global_batch_size) * global_batch_size
    positions = np.arange(total, dtype=np.int64)[process_index::process_count]
    for start in range(0, len(positions), local_batch):
        indices = positions[start : start + local_batch]
        batch = _gather(arrays, saliency, indices, indices < n)
        batch["epoch"] = np.zeros(local_batch, np.int32)
        yield batch
