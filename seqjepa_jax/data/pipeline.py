"""tf.data pipeline from a view source to sharded batches of the DESIGN.md batch contract.

Every batch (host-local numpy, or global ``jax.Array`` after :func:`global_batch_iterator`) is::

    views        float32 (b, V, H, W, 3)  normalised images; V = M_tr + 1, the last is the target
    actions      float32 (b, V-1, d_a)    actions[:, j] = relative latent from view j to view j+1
    label        int32   (b,)             class id (-1 on eval padding)
    latents      float32 (b, V, 7)        raw 3DIEBench latents (absolute pose, for evaluation)
    object_index int32   (b,)             index of the object in the source (-1 on eval padding)
    view_ids     int32   (b, V)           file/array view id of each view
    mask         float32 (b,)             1 for real examples, 0 for eval padding

Sampling (spec §6.1 "Per-sample sampling"): each object yields V *distinct* views in random order,
like ``np.random.choice(views_per_object, V, replace=False)``. Unlike the official loader, whose
worker re-seeding repeats the view tuples every epoch (quirk Q5), the tuple is drawn afresh each
epoch from stateless random ops keyed on (seed, epoch, object index). The object order of an epoch
is a permutation keyed on (seed, epoch). The data is therefore a pure function of (seed, step):
resuming at step s (``start_step=s``) reproduces the uninterrupted stream exactly without
checkpointing iterator state.

Multi-host: every host computes the same global permutation and host p of P takes every P-th
entry, with local batch ``global_batch // P``. Hosts see disjoint objects; the *set* of objects in
global batch t, and their views, do not depend on P (only their order within the batch does); and
every host runs ``num_objects // global_batch`` steps per epoch (the min over hosts).

Images (spec §6.1): uint8 -> bilinear antialiased resize (like PIL ``Resize``, rounded back to
integer levels as PIL returns uint8) -> /255 -> (x - mean) / std, 3DIEBench constants by default.
Actions come from :func:`seqjepa_jax.data.latents.relative_actions` (raw quaternion sign, no hue
wrap, quirk Q36), computed in NumPy float64 on each batch.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
import tensorflow as tf
from jax.sharding import Mesh

from seqjepa_jax import sharding
from seqjepa_jax.config_defaults import THREEDIEBENCH_MEAN, THREEDIEBENCH_STD
from seqjepa_jax.data import latents as latents_lib
from seqjepa_jax.data.sources import ViewSource, hide_gpus_from_tensorflow

BATCH_KEYS = ("views", "actions", "label", "latents", "object_index", "view_ids", "mask")

# Independent random streams under one user seed.
ORDER_STREAM, TRAIN_VIEW_STREAM, EVAL_VIEW_STREAM = 0, 1, 2
_RNG_ALG = "philox"  # pinned so the data does not depend on the device TF would pick


def _process_layout(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    index = jax.process_index() if process_index is None else int(process_index)
    count = jax.process_count() if process_count is None else int(process_count)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"Invalid process_index={index} for process_count={count}.")
    return index, count


def validate(
    source: ViewSource,
    num_views: int,
    global_batch_size: int,
    latent_type: str,
    process_count: int = 1,
    *,
    drop_remainder: bool = True,
) -> int:
    """Check a data configuration before any heavy work; returns the local batch size."""
    latents_lib.action_dim(latent_type)  # raises on unknown types
    if num_views < 2:
        raise ValueError(
            f"num_views={num_views}: a sequence needs at least one observation and the target "
            "(num_views = M_tr + 1 >= 2)."
        )
    if num_views > source.views_per_object:
        raise ValueError(
            f"num_views={num_views} (M_tr + 1, with M_tr={num_views - 1} observations and one "
            f"target) exceeds the {source.views_per_object} views per object of the source, and "
            "views within a sequence are distinct. Lower M_tr to at most "
            f"{source.views_per_object - 1} or use a source with more views per object."
        )
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"Global batch size {global_batch_size} must be a positive multiple of the process "
            f"count {process_count}; each host loads global_batch // process_count examples."
        )
    local_batch = global_batch_size // process_count
    if drop_remainder and source.num_objects // process_count < local_batch:
        raise ValueError(
            f"Only {source.num_objects} objects ({source.num_objects // process_count} per host "
            f"on {process_count} hosts) for a local batch of {local_batch}: not a single training "
            "step per epoch. Lower the batch size or use more objects."
        )
    return local_batch


def steps_per_epoch(num_objects: int, global_batch_size: int, process_count: int = 1) -> int:
    """Training steps per epoch, identical on all hosts: min_p(local objects) // local batch."""
    return (num_objects // process_count) // (global_batch_size // process_count)


def _key(seed: int, stream: int, *data: tf.Tensor) -> tf.Tensor:
    key = tf.constant([seed, stream], tf.int64)
    for d in data:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(d, tf.int64), alg=_RNG_ALG)
    return key


def _random_permutation(n: int, key: tf.Tensor) -> tf.Tensor:
    """A uniformly random permutation of range(n), as argsort of stateless uniforms."""
    return tf.argsort(tf.random.stateless_uniform((n,), seed=key, alg=_RNG_ALG), stable=True)


def epoch_order(
    num_examples: int,
    seed: int,
    epoch: tf.Tensor | int,
    process_index: int,
    process_count: int,
    per_epoch: int,
) -> tf.Tensor:
    """This host's example indices for one epoch (int32, length `per_epoch`).

    The global order is a permutation keyed on (seed, epoch); host p takes every P-th entry. Both
    the view-source pipeline (inside tf.data) and the in-memory image pipeline (eagerly) use it.
    """
    order = _random_permutation(num_examples, _key(seed, ORDER_STREAM, epoch))
    return tf.cast(order[process_index::process_count][:per_epoch], tf.int32)


def _resolve_size(source: ViewSource, image_size: int | Sequence[int] | None) -> tuple[int, int]:
    if image_size is None:
        return tuple(source.image_shape)
    if isinstance(image_size, int):
        return (image_size, image_size)
    return (int(image_size[0]), int(image_size[1]))


def _element_fn(
    source: ViewSource,
    num_views: int,
    seed: int,
    view_stream: int,
    image_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> Any:
    labels = tf.constant(source.labels, tf.int32)
    view_ids = tf.constant(source.view_ids, tf.int32)
    mean_t = tf.constant(mean, tf.float32)
    std_t = tf.constant(std, tf.float32)

    def fn(epoch: tf.Tensor, object_index: tf.Tensor, mask: tf.Tensor) -> dict[str, tf.Tensor]:
        real = mask > 0
        obj = tf.where(real, object_index, 0)  # padding repeats object 0, masked out
        key = _key(seed, view_stream, epoch, obj)
        positions = _random_permutation(source.views_per_object, key)[:num_views]
        images, latents = source.load_views(obj, positions)
        x = tf.cast(images, tf.float32)
        if tuple(source.image_shape) != image_size:
            x = tf.image.resize(x, image_size, method="bilinear", antialias=True)
            x = tf.clip_by_value(tf.round(x), 0.0, 255.0)
        x = (x / 255.0 - mean_t) / std_t
        return {
            "views": tf.ensure_shape(x, (num_views, *image_size, 3)),
            "label": tf.where(real, tf.gather(labels, obj), -1),
            "latents": tf.ensure_shape(latents, (num_views, latents_lib.NUM_LATENTS)),
            "object_index": tf.where(real, tf.cast(obj, tf.int32), -1),
            "view_ids": tf.gather(view_ids, positions),
            "mask": tf.cast(mask, tf.float32),
        }

    return fn


def _finish(
    indices: tf.data.Dataset,
    element_fn: Any,
    local_batch: int,
    latent_type: str,
    num_views: int,
    num_parallel_calls: int,
    prefetch: int,
) -> tf.data.Dataset:
    d_a = latents_lib.action_dim(latent_type)

    def add_actions(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        actions = tf.numpy_function(
            lambda lat: latents_lib.relative_actions(lat, latent_type),
            [batch["latents"]],
            tf.float32,
            stateful=False,
        )
        batch["actions"] = tf.ensure_shape(actions, (local_batch, num_views - 1, d_a))
        return {k: batch[k] for k in BATCH_KEYS}

    ds = indices.map(element_fn, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True)
    ds = ds.map(add_actions, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def train_batches(
    source: ViewSource,
    *,
    num_views: int,
    global_batch_size: int,
    latent_type: str = "rot",
    seed: int = 0,
    start_step: int = 0,
    num_epochs: int | None = None,
    image_size: int | Sequence[int] | None = None,
    mean: Sequence[float] = THREEDIEBENCH_MEAN,
    std: Sequence[float] = THREEDIEBENCH_STD,
    process_index: int | None = None,
    process_count: int | None = None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    prefetch: int = 2,
) -> tf.data.Dataset:
    """Host-local training batches (module docstring), from ``start_step`` on.

    Epoch e visits ``steps_per_epoch * global_batch_size`` objects of the permutation keyed on
    (seed, e); each object gets V fresh distinct views keyed on (seed, e, object). Step s is the
    same batch whatever ``start_step <= s`` the stream was started from. ``num_epochs=None``
    repeats forever (counted from epoch 0, so the stream ends at the same step after a resume).
    ``process_index``/``process_count`` default to JAX's. Iterate with ``.as_numpy_iterator()``.
    """
    hide_gpus_from_tensorflow()
    p, num_p = _process_layout(process_index, process_count)
    local_batch = validate(source, num_views, global_batch_size, latent_type, num_p)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0; got {start_step}.")
    steps = steps_per_epoch(source.num_objects, global_batch_size, num_p)
    start_epoch, step_in_epoch = divmod(int(start_step), steps)
    per_epoch = steps * local_batch
    n = source.num_objects

    def epoch_indices(epoch: tf.Tensor) -> tf.data.Dataset:
        local = epoch_order(n, seed, epoch, p, num_p, per_epoch)
        return tf.data.Dataset.from_tensor_slices(
            (tf.fill([per_epoch], epoch), local, tf.ones([per_epoch], tf.int32))
        )

    end = np.iinfo(np.int64).max if num_epochs is None else int(num_epochs)
    epochs = tf.data.Dataset.range(start_epoch, max(end, start_epoch))
    indices = epochs.flat_map(epoch_indices).skip(step_in_epoch * local_batch)
    element_fn = _element_fn(
        source,
        num_views,
        seed,
        TRAIN_VIEW_STREAM,
        _resolve_size(source, image_size),
        mean,
        std,
    )
    return _finish(
        indices, element_fn, local_batch, latent_type, num_views, num_parallel_calls, prefetch
    )


def eval_batches(
    source: ViewSource,
    *,
    num_views: int,
    global_batch_size: int,
    latent_type: str = "rotcolor",
    seed: int = 0,
    image_size: int | Sequence[int] | None = None,
    mean: Sequence[float] = THREEDIEBENCH_MEAN,
    std: Sequence[float] = THREEDIEBENCH_STD,
    process_index: int | None = None,
    process_count: int | None = None,
    num_parallel_calls: int = tf.data.AUTOTUNE,
    prefetch: int = 2,
) -> tf.data.Dataset:
    """One pass over every object in index order, with views fixed by ``seed``.

    The object list is padded to a multiple of the global batch (padding: object 0's data with
    mask 0, label -1, object_index -1), so every host runs ``ceil(N / global_batch)`` steps and
    sharded evaluation sees every object exactly once. Host p takes padded positions p, p+P, ...
    The views of an object do not depend on the batch size or host count. ``latent_type``
    defaults to 'rotcolor', as the official evaluation forces (spec §6.1).
    """
    hide_gpus_from_tensorflow()
    p, num_p = _process_layout(process_index, process_count)
    local_batch = validate(
        source, num_views, global_batch_size, latent_type, num_p, drop_remainder=False
    )
    n = source.num_objects
    total = -(-n // global_batch_size) * global_batch_size
    padded = np.arange(total, dtype=np.int32)[p::num_p]
    mask = (padded < n).astype(np.int32)
    indices = tf.data.Dataset.from_tensor_slices(
        (np.zeros_like(padded), np.where(mask > 0, padded, 0).astype(np.int32), mask)
    )
    element_fn = _element_fn(
        source, num_views, seed, EVAL_VIEW_STREAM, _resolve_size(source, image_size), mean, std
    )
    return _finish(
        indices, element_fn, local_batch, latent_type, num_views, num_parallel_calls, prefetch
    )


def global_batch_iterator(
    batches: Iterator[dict[str, np.ndarray]],
    mesh: Mesh,
    *,
    buffer_size: int = 1,
) -> Iterator[dict[str, jax.Array]]:
    """Host-local numpy batches -> global ``jax.Array`` batches sharded along 'data'.

    Each batch goes through :func:`seqjepa_jax.sharding.global_batch`: the global batch is the
    concatenation of the hosts' local batches in process order. ``buffer_size`` batches are
    transferred ahead of the consumer (0 disables it).
    """

    def to_global(batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return sharding.global_batch(batch, mesh)

    queue: collections.deque = collections.deque()
    for batch in batches:
        queue.append(to_global(batch))
        if len(queue) > buffer_size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()
