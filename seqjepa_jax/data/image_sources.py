"""Readers of the image datasets of the paper: whole splits as uint8 arrays in host memory.

The transformed-views recipes on CIFAR-100 and TinyImageNet and the saccade recipe on STL-10 draw
every view from one source image (spec §6.3, §6.4), so a split is just ``(N, H, W, 3)`` uint8
images and their labels. They fit in host memory (CIFAR-100 train 150 MB, TinyImageNet train
1.2 GB, STL-10 unlabelled 2.8 GB), which makes random access, and therefore a data order that is a
pure function of (seed, step) and an exact resume, trivial (`image_pipeline.py`).

- CIFAR-100 and STL-10 come through their TFDS builders (downloaded and prepared on first use when
  `download=True` and the network allows it). The STL-10 SSL split is TFDS's ``unlabelled``
  (British spelling); its labels are -1.
- TinyImageNet is not in the TFDS catalogue; it is read from the official release layout
  (``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` + ``val_annotations.txt``,
  spec §6.3 "Splits") and cached once as ``.npy`` arrays (no pickle) next to the data.
- ImageNet-1k is too large for memory and is streamed instead (`imagenet.py`).

Class indices are the sorted class names and are the same for every split (the official
ImageNet loader's unsorted, per-split `os.listdir` order is quirk Q24). A missing dataset stops at
start-up with a message that says where it was expected and how to obtain it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

TFDS_NAMES = {"cifar100": "cifar100", "stl10": "stl10"}


@dataclasses.dataclass(frozen=True)
class ImageArrays:
    """One split of an image dataset in host memory.

    Attributes:
      images: uint8 (N, H, W, 3).
      labels: int32 (N,), -1 where unknown (STL-10 unlabelled).
      name: "<dataset>/<split>" for logs.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(
                f"{self.name}: images must be uint8 (N, H, W, 3); got {self.images.dtype} "
                f"{self.images.shape}."
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name}: {self.labels.shape[0]} labels for {self.images.shape[0]} images."
            )
        if self.images.shape[0] == 0:
            raise ValueError(f"{self.name}: the split is empty.")

    @property
    def num_examples(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the stored images."""
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    def describe(self) -> str:
        """One line for logs."""
        h, w = self.image_shape
        return f"{self.name}: {self.num_examples} images of {h}x{w}"


def _missing_tfds_message(name: str, split: str, data_dir: str | None, reason: str) -> str:
    where = data_dir or "~/tensorflow_datasets (TFDS's default; set config.data.data_dir)"
    return (
        f"TFDS dataset {name!r} (split {split!r}) is not available under {where}: {reason}. "
        f"Prepare it once on a machine with internet access with "
        f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
        f"data_dir='DIR').download_and_prepare()\"` and point config.data.data_dir at DIR, or "
        "set config.data.download=True where the network allows it."
    )


def load_tfds_images(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    read_batch: int = 4096,
) -> ImageArrays:
    """A whole TFDS split (features 'image' and 'label') as :class:`ImageArrays`.

    Raises a ValueError naming the directory and the fix when the dataset is not prepared and
    `download` is False, or when preparing it fails (e.g. no network).
    """
    import tensorflow_datasets as tfds

    from seqjepa_jax.data.sources import hide_gpus_from_tensorflow

    hide_gpus_from_tensorflow()
    data_dir = os.path.expanduser(data_dir) if data_dir else None
    builder = tfds.builder(name, data_dir=data_dir)
    if download and not builder.is_prepared():
        try:
            builder.download_and_prepare()
        except Exception as error:  # network, disk, checksum: all end the same way
            raise ValueError(
                _missing_tfds_message(name, split, data_dir, f"download failed ({error})")
            ) from error
    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as error:  # not prepared, or an unknown split
        raise ValueError(
            _missing_tfds_message(name, split, data_dir, f"it is not prepared ({error})")
        ) from error
    images, labels = [], []
    for batch in tfds.as_numpy(dataset.batch(read_batch)):
        images.append(batch["image"])
        labels.append(batch["label"])
    return ImageArrays(
        images=np.concatenate(images).astype(np.uint8, copy=False),
        labels=np.concatenate(labels).astype(np.int32),
        name=f"{name}/{split}",
    )


# ------------------------------------------------------------------------------------------------
# TinyImageNet (official release layout).


def _decode_rgb(path: str, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size, size):
            raise ValueError(
                f"TinyImageNet image {path} is {image.size[0]}x{image.size[1]}, expected "
                f"{size}x{size}: the tree under the data directory is not the official release."
            )
        return np.asarray(image, dtype=np.uint8)


def tinyimagenet_files(root: str, split: str) -> tuple[list[str], np.ndarray]:
    """(image paths, labels) of a TinyImageNet split; labels index the sorted wnids."""
    wnids_path = os.path.join(root, "wnids.txt")
    if not os.path.isfile(wnids_path):
        raise ValueError(
            f"TinyImageNet not found: {wnids_path} is missing. Download "
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzip it and set "
            "config.data.data_dir to the tiny-imagenet-200 folder."
        )
    with open(wnids_path) as f:
        wnids = sorted(line.strip() for line in f if line.strip())
    index = {wnid: i for i, wnid in enumerate(wnids)}
    paths: list[str] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            folder = os.path.join(root, "train", wnid, "images")
            if not os.path.isdir(folder):
                raise ValueError(f"TinyImageNet train folder {folder} is missing.")
            for fname in sorted(os.listdir(folder)):
                paths.append(os.path.join(folder, fname))
                labels.append(index[wnid])
    elif split == "val":
        annotations = os.path.join(root, "val", "val_annotations.txt")
        if not os.path.isfile(annotations):
            raise ValueError(f"TinyImageNet validation labels {annotations} are missing.")
        with open(annotations) as f:
            rows = sorted(line.split("\t")[:2] for line in f if line.strip())
        for fname, wnid in rows:
            if wnid not in index:
                raise ValueError(f"{annotations}: class {wnid!r} of {fname} is not in wnids.txt.")
            paths.append(os.path.join(root, "val", "images", fname))
            labels.append(index[wnid])
    else:
        raise ValueError(f"TinyImageNet split must be 'train' or 'val'; got {split!r}.")
    return paths, np.asarray(labels, np.int32)


def load_tinyimagenet(root: str, split: str, *, image_size: int = 64) -> ImageArrays:
    """A TinyImageNet split, decoded once and cached as ``<root>/seqjepa_cache/<split>_*.npy``."""
    root = os.path.expanduser(root)
    paths, labels = tinyimagenet_files(root, split)
    cache = os.path.join(root, "seqjepa_cache")
    images_file = os.path.join(cache, f"{split}_images_{image_size}.npy")
    labels_file = os.path.join(cache, f"{split}_labels.npy")
    if os.path.isfile(images_file) and os.path.isfile(labels_file):
        images = np.load(images_file, mmap_mode="r", allow_pickle=False)
        cached_labels = np.load(labels_file, allow_pickle=False)
        if images.shape[0] == len(paths) and np.array_equal(cached_labels, labels):
            return ImageArrays(np.asarray(images), labels, f"tinyimagenet/{split}")
    images = np.stack([_decode_rgb(p, image_size) for p in paths])
    os.makedirs(cache, exist_ok=True)
    for target, array in ((images_file, images), (labels_file, labels)):
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written cache
    return ImageArrays(images, labels, f"tinyimagenet/{split}")


def write_tinyimagenet_tree(
    root: str, num_classes: int = 3, per_class: int = 4, val_per_class: int = 2, seed: int = 0
) -> None:
    """Writes a tiny tree in the official TinyImageNet layout (64x64 JPEGs), for tests and demos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    wnids = [f"n{10000000 + 7 * i:08d}" for i in range(num_classes)]
    os.makedirs(os.path.join(root, "val", "images"), exist_ok=True)
    with open(os.path.join(root, "wnids.txt"), "w") as f:
        f.write("\n".join(reversed(wnids)) + "\n")  # unsorted on purpose: indices must sort
    rows = []
    for c, wnid in enumerate(wnids):
        folder = os.path.join(root, "train", wnid, "images")
        os.makedirs(folder, exist_ok=True)
        for k in range(per_class + val_per_class):
            pixels = rng.integers(120, 136, (64, 64, 3), dtype=np.uint8)
            pixels[..., c % 3] = 40 * c  # a class-dependent channel (survives JPEG)
            if k < per_class:
                Image.fromarray(pixels).save(os.path.join(folder, f"{wnid}_{k}.JPEG"))
            else:
                fname = f"val_{c}_{k}.JPEG"
                Image.fromarray(pixels).save(os.path.join(root, "val", "images", fname))
                rows.append(f"{fname}\t{wnid}\t0\t0\t63\t63")
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as f:
        f.write("\n".join(rows) + "\n")
