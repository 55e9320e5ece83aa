"""Host-side readers for the released saliency maps of the official PLS recipes (spec §6.4).

- STL-10 (spec §6.4.1): one array per split, ``<root>/<split>/saliency_<split>.npy``, shape
  (N, 1, 96, 96), each map a DeepGaze IIE density summing to 1 (HF ``Hafez/salmap-stl10``). The
  unlabeled split is 100k x 96 x 96 float32 (3.7 GB), so it is memory-mapped, not read.
- ImageNet-1k (spec §6.4.3): one file per image, ``<root>/<split>/<class_folder>/<id>_sal.npy``
  as the official loader reads it, but ``<id>-sal.npy`` as its extraction script writes it (quirk
  Q22); both names are accepted. These maps are at the image's native resolution (Q23): crop and
  resize them together with the image before sampling fixations.

Every read uses ``allow_pickle=False``: a saliency file is plain numbers, never Python objects.
"""

from __future__ import annotations

import os

import numpy as np

STL10_SPLITS = ("train", "test", "unlabeled")
STL10_IMAGE_SIZE = 96  # spec §6.4.2, hard-coded officially (Q19)


def stl10_saliency_path(root: str, split: str) -> str:
    """``<root>/<split>/saliency_<split>.npy``, the official layout (spec §6.4.1)."""
    if split not in STL10_SPLITS:
        raise ValueError(f"STL-10 saliency split must be one of {STL10_SPLITS}, got {split!r}.")
    return os.path.join(root, split, f"saliency_{split}.npy")


def load_stl10_saliency(
    root: str, split: str, *, image_size: int = STL10_IMAGE_SIZE, expected_count: int | None = None
) -> np.ndarray:
    """The STL-10 saliency maps of one split as an (N, image_size, image_size) float32 array.

    The file is memory-mapped; the result is a view of it (no copy) when it is stored as float32,
    the official dtype, and an in-memory float32 copy otherwise. Both (N, 1, S, S), the official
    layout, and (N, S, S) are accepted. ``expected_count`` (the number of images of the split, e.g.
    100000 for unlabeled) is checked like the official loader's length assertion.
    """
    path = stl10_saliency_path(root, split)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No STL-10 saliency file at {path}. Expected <root>/{split}/saliency_{split}.npy of "
            f"shape (N, 1, {image_size}, {image_size}) (the HF Hafez/salmap-stl10 release)."
        )
    maps = np.load(path, mmap_mode="r", allow_pickle=False)
    stored_shape = maps.shape
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3 or maps.shape[1:] != (image_size, image_size):
        raise ValueError(
            f"{path} has shape {stored_shape}; expected "
            f"(N, 1, {image_size}, {image_size}) or (N, {image_size}, {image_size})."
        )
    if not np.issubdtype(maps.dtype, np.floating):
        raise ValueError(f"{path} holds {maps.dtype} values; saliency maps must be floating point.")
    if expected_count is not None and maps.shape[0] != expected_count:
        raise ValueError(
            f"{path} holds {maps.shape[0]} maps but the {split} split has {expected_count} images; "
            "the maps must be in the dataset's image order, one per image."
        )
    return maps if maps.dtype == np.float32 else maps.astype(np.float32)


def imagenet_saliency_path(root: str, split: str, class_folder: str, image_id: str) -> str:
    """Path of one ImageNet saliency map, accepting both file names of quirk Q22.

    ``image_id`` is the image file name without extension (e.g. ``n01440764_10026``), as the
    official loader derives it. ``<id>_sal.npy`` (the loader's name) is preferred over
    ``<id>-sal.npy`` (the extraction script's name) when both exist.
    """
    folder = os.path.join(root, split, class_folder)
    candidates = [os.path.join(folder, f"{image_id}{sep}sal.npy") for sep in ("_", "-")]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"No saliency map for image {image_id!r}: neither {candidates[0]} nor {candidates[1]} "
        "exists (layout <root>/<split>/<class_folder>/<id>_sal.npy or <id>-sal.npy, spec §6.4.3)."
    )


def load_imagenet_saliency(path: str) -> np.ndarray:
    """One ImageNet saliency map as (H, W) float32 (a leading singleton axis is dropped)."""
    saliency = np.load(path, allow_pickle=False)
    if saliency.ndim == 3 and saliency.shape[0] == 1:
        saliency = saliency[0]
    if saliency.ndim != 2 or not np.issubdtype(saliency.dtype, np.floating):
        raise ValueError(
            f"{path} holds a {saliency.dtype} array of shape {saliency.shape}; expected a float "
            "saliency map of shape (H, W) or (1, H, W)."
        )
    return saliency.astype(np.float32, copy=False)
