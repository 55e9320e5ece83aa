"""View sources: where the views of one object come from, as TensorFlow graph ops.

A *view source* is a dataset of objects, each with a fixed set of rendered views and their
generating latents in the 3DIEBench layout (spec §6.1: ``[rot_x, rot_y, rot_z, floor_hue,
spot_theta, spot_phi, spot_hue]``). The tf.data pipeline (:mod:`seqjepa_jax.data.pipeline`) only
talks to this interface, so the same pipeline serves:

- :class:`ArraySource`: views already in memory (the procedural renderer's ``ViewArrays``);
- :class:`seqjepa_jax.data.threediebench.ThreeDIEBenchSource`: the real 3DIEBench tree on disk.

``load_views`` takes *view positions* ``0 .. views_per_object-1``; ``view_ids`` maps a position to
the file/array view id. They differ for the 3DIEBench-OOD folders, which hold views 2..5 only
(spec §6.2, quirk Q31).
"""

from __future__ import annotations

import abc
from typing import Protocol

import numpy as np
import tensorflow as tf

from seqjepa_jax.data.latents import NUM_LATENTS

_TF_GPUS_HIDDEN = False


def hide_gpus_from_tensorflow() -> None:
    """Make TensorFlow CPU-only so it never reserves accelerator memory that JAX needs.

    Called (once, guarded) when a source or dataset is built, never at import time. If the TF
    runtime is already initialised, the visible devices can no longer change; that is harmless
    with tensorflow-cpu (no GPU support compiled in) and is otherwise left to the caller.
    """
    global _TF_GPUS_HIDDEN
    if _TF_GPUS_HIDDEN:
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass
    _TF_GPUS_HIDDEN = True


class ViewArraysLike(Protocol):
    """The fields of ``seqjepa_jax.data.procedural.ViewArrays`` that :class:`ArraySource` reads."""

    images: np.ndarray  # uint8 (N, V, H, W, 3)
    latents: np.ndarray  # float32 (N, V, 7)
    labels: np.ndarray  # int32 (N,)
    object_ids: np.ndarray  # int32 (N,)


class ViewSource(abc.ABC):
    """Objects with ``views_per_object`` views each; views are loaded as tf ops.

    Subclasses set ``num_objects``, ``views_per_object``, ``view_ids`` (int32, one per view
    position), ``labels`` (int32 (num_objects,)), ``object_ids`` (int32 (num_objects,)) and
    ``image_shape`` ((H, W) of the stored images), and implement :meth:`load_views`.
    """

    num_objects: int
    views_per_object: int
    view_ids: np.ndarray
    labels: np.ndarray
    object_ids: np.ndarray
    image_shape: tuple[int, int]

    @abc.abstractmethod
    def load_views(
        self, object_index: tf.Tensor, view_indices: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Views of one object, traceable inside ``tf.data`` map functions.

        Args:
          object_index: scalar int tensor in ``[0, num_objects)``.
          view_indices: int tensor (V,) of view *positions* in ``[0, views_per_object)``.

        Returns:
          ``images`` uint8 (V, H, W, 3) with (H, W) = ``image_shape`` and ``latents`` float32
          (V, 7) in the 3DIEBench layout.
        """

    def describe(self) -> str:
        """One line for logs."""
        return (
            f"{type(self).__name__}: {self.num_objects} objects x {self.views_per_object} views "
            f"of {self.image_shape[0]}x{self.image_shape[1]}"
        )


class ArraySource(ViewSource):
    """In-memory views, e.g. the procedural renderer's ``ViewArrays``.

    The arrays are converted once to TensorFlow tensors and captured by the tf.data functions;
    ``load_views`` is two gathers. Views are indexed directly (``view_ids = arange(V)``).
    """

    def __init__(self, arrays: ViewArraysLike) -> None:
        images = np.asarray(arrays.images)
        latents = np.asarray(arrays.latents)
        labels = np.asarray(arrays.labels)
        object_ids = np.asarray(arrays.object_ids)
        if images.dtype != np.uint8 or images.ndim != 5 or images.shape[-1] != 3:
            raise ValueError(
                f"ViewArrays.images must be uint8 of shape (N, V, H, W, 3); got {images.dtype} "
                f"{images.shape}."
            )
        n, v = images.shape[:2]
        if latents.shape != (n, v, NUM_LATENTS):
            raise ValueError(
                f"ViewArrays.latents must have shape (N, V, {NUM_LATENTS}) = {(n, v, NUM_LATENTS)} "
                f"to match images {images.shape}; got {latents.shape}."
            )
        for name, arr in (("labels", labels), ("object_ids", object_ids)):
            if arr.shape != (n,):
                raise ValueError(f"ViewArrays.{name} must have shape ({n},); got {arr.shape}.")
        if n == 0 or v == 0:
            raise ValueError(f"ViewArrays is empty: images of shape {images.shape}.")
        self.num_objects = int(n)
        self.views_per_object = int(v)
        self.view_ids = np.arange(v, dtype=np.int32)
        self.labels = labels.astype(np.int32)
        self.object_ids = object_ids.astype(np.int32)
        self.image_shape = (int(images.shape[2]), int(images.shape[3]))
        hide_gpus_from_tensorflow()
        with tf.device("/CPU:0"):
            self._images = tf.constant(images)
            self._latents = tf.constant(latents.astype(np.float32))

    def load_views(
        self, object_index: tf.Tensor, view_indices: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """See :meth:`ViewSource.load_views`."""
        images = tf.gather(tf.gather(self._images, object_index), view_indices)
        latents = tf.gather(tf.gather(self._latents, object_index), view_indices)
        return images, latents
