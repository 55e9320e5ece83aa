"""Reader for the 3DIEBench tree on disk (spec §6.1, §6.2), as a :class:`ViewSource`.

Layout (from SIE, read by the official ``Dataset_3DIEBench_MultipleViews``, spec §6.1)::

    <index_dir>/{split}_images.npy   1-D str array of object folders, e.g. '/02691156/1a04e3eab45c/'
    <index_dir>/{split}_labels.npy   1-D int array of class ids (55 ShapeNet synsets), same length
    <root>/<synset>/<object>/image_{k}.jpg    RGB render (256x256 in 3DIEBench)
    <root>/<synset>/<object>/latent_{k}.npy   7 float64: [rot_x, rot_y, rot_z, floor_hue,
                                              spot_theta, spot_phi, spot_hue]

with k = 0..49 (50 views per object); the 3DIEBench-OOD folders hold k = 2..5 only (spec §6.2,
quirk Q31), which ``view_ids=range(2, 6)`` reads. ``index_dir`` defaults to ``root`` (the official
repository keeps the index files in ``data/3DIEBench/``, separate from the images). The leading '/'
of an index entry is stripped, as the official loader does.

Everything is read with TensorFlow ops (``tf.io.read_file``), so it runs in parallel inside tf.data
and works on any filesystem ``tf.io.gfile`` supports (local, GCS). Images are decoded as RGB uint8,
bit-identical to PIL (the official decoder). A latent ``.npy`` is decoded after its header, which
is checked in the graph against the first file's (checked with NumPy at construction).

The tree is validated at construction, before any training starts: missing root or index files,
mismatched index/label lengths, and a missing folder or file of any object raise errors that name
the path, the expected layout and the fix; the contents of the first and last objects (or of every
object with ``validate_all_objects=True``) are checked too (`integrity.py`). Every file is checked
again when it is read for a batch: a truncated or non-image file, an image of another size, or a
latent file that is not a complete ``.npy`` of 7 values of the first file's dtype fails the batch
with a message that starts with ``DAMAGED_FILE`` and names the file (issue 20).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from seqjepa_jax.data import integrity, kinds
from seqjepa_jax.data.latents import NUM_LATENTS
from seqjepa_jax.data.sources import ViewArraysLike, ViewSource, hide_gpus_from_tensorflow
from seqjepa_jax.user_errors import DAMAGED_FILE

DEFAULT_VIEWS_PER_OBJECT = 50
"""Views per object in 3DIEBench (spec §6.1)."""

OOD_VIEW_IDS = kinds.OOD_VIEW_IDS
"""View ids present in the 3DIEBench-OOD folders (spec §6.2)."""

SPLIT_FILES = {
    "train": ("train_images.npy", "train_labels.npy"),
    "val": ("val_images.npy", "val_labels.npy"),
    "validation": ("val_images.npy", "val_labels.npy"),
}
"""Split name -> (index file, label file). Other names map to ``{split}_images.npy`` etc."""

LAYOUT_HELP = """Expected the 3DIEBench layout (spec §6.1):
  <index_dir>/{split}_images.npy  1-D array of object folders such as '/02691156/1a04e3eab45c/'
  <index_dir>/{split}_labels.npy  1-D int array of class ids, one per object
  <root>/<synset>/<object>/image_{k}.jpg and latent_{k}.npy for every view id k
      (k = 0..49 in 3DIEBench; 2..5 in the OOD folders: pass view_ids=(2, 3, 4, 5))
To fix: point root at the extracted 3DIEBench folder (and index_dir at the folder with the split
files, e.g. the official repository's data/3DIEBench/), or write a procedural tree with
seqjepa_jax.data.threediebench.write_3diebench_tree."""


def split_files(split: str) -> tuple[str, str]:
    """File names of the index and label arrays of ``split`` ('train', 'val', or any name)."""
    return SPLIT_FILES.get(split, (f"{split}_images.npy", f"{split}_labels.npy"))


def _join(*parts: str) -> str:
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def _load_npy(path: str, what: str) -> np.ndarray:
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"Missing {what} file {path}.\n{LAYOUT_HELP}")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise ValueError(
            f"Cannot read {what} file {path} as a plain .npy array ({e}). Object arrays are not "
            "accepted; save the index as a unicode array (np.array(list_of_str))."
        ) from e


class ThreeDIEBenchSource(ViewSource):
    """3DIEBench objects on disk (see the module docstring for the layout).

    Args:
      root: folder holding ``<synset>/<object>/``.
      split: 'train', 'val' (alias 'validation'), or any name with ``{split}_images.npy`` files.
      views_per_object: number of views per object, view ids ``0..views_per_object-1``.
      view_ids: explicit view ids instead (e.g. :data:`OOD_VIEW_IDS`); sets views_per_object.
      index_dir: folder with the split files; defaults to ``root``.
      validate_all_objects: check the contents of every object's files (JPEG markers, latent
        headers), not only of the first and last object (slow on the full dataset: two small reads
        per view, `data/integrity.py`). Every object's files are always checked to be present.
      on_bad_file: what a damaged or missing file found at construction does (issue 7.5): "fail"
        raises an error naming it; "skip" drops its object from the split (counted in
        ``skipped_objects``).
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        *,
        views_per_object: int | None = None,
        view_ids: Sequence[int] | None = None,
        index_dir: str | None = None,
        validate_all_objects: bool = False,
        on_bad_file: str = "fail",
    ) -> None:
        hide_gpus_from_tensorflow()
        root = str(root)
        index_dir = root if index_dir is None else str(index_dir)
        if not tf.io.gfile.isdir(root):
            raise FileNotFoundError(f"3DIEBench root {root} does not exist.\n{LAYOUT_HELP}")
        images_file, labels_file = split_files(split)
        entries = _load_npy(_join(index_dir, images_file), f"{split!r} index")
        labels = _load_npy(_join(index_dir, labels_file), f"{split!r} labels")
        if entries.ndim != 1 or entries.dtype.kind not in "US":
            raise ValueError(
                f"{_join(index_dir, images_file)} must be a 1-D string array of object folders; "
                f"got dtype {entries.dtype}, shape {entries.shape}.\n{LAYOUT_HELP}"
            )
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{_join(index_dir, labels_file)} must be a 1-D integer array; got dtype "
                f"{labels.dtype}, shape {labels.shape}.\n{LAYOUT_HELP}"
            )
        if len(entries) != len(labels):
            raise ValueError(
                f"{images_file} has {len(entries)} objects but {labels_file} has {len(labels)} "
                f"labels (in {index_dir}); the two files must come from the same split.\n"
                f"{LAYOUT_HELP}"
            )
        if len(entries) == 0:
            raise ValueError(f"{_join(index_dir, images_file)} lists no objects.\n{LAYOUT_HELP}")
        if view_ids is None:
            n_views = DEFAULT_VIEWS_PER_OBJECT if views_per_object is None else views_per_object
            view_ids = range(int(n_views))
        view_ids = np.asarray(list(view_ids), dtype=np.int32)
        if view_ids.ndim != 1 or len(view_ids) == 0 or len(set(view_ids.tolist())) != len(view_ids):
            raise ValueError(f"view_ids must be a non-empty list of distinct ints; got {view_ids}.")
        if views_per_object is not None and views_per_object != len(view_ids):
            raise ValueError(
                f"views_per_object={views_per_object} disagrees with {len(view_ids)} view_ids "
                f"{view_ids.tolist()}; pass only one of them."
            )

        self.root = root
        self.split = split
        self.object_paths = [str(e).strip("/") for e in entries.tolist()]
        self.views_per_object = len(view_ids)
        self.view_ids = view_ids
        self.labels = labels.astype(np.int32)

        # Every object's files must be present (one listing per object, before any training);
        # contents are read for the first and last objects, or all (issue 20).
        folders = [_join(root, p) for p in self.object_paths]
        contents = None if validate_all_objects else {0, len(folders) - 1}
        problems = integrity.find_problems(
            folders, view_ids.tolist(), (NUM_LATENTS,), contents=contents
        )
        bad = [i for i, found in enumerate(problems) if found]
        if bad and on_bad_file == "fail":
            self._check_object(bad[0])  # missing files: FileNotFoundError with the layout help
        keep = integrity.scan_objects(
            folders, view_ids.tolist(), (NUM_LATENTS,), on_bad_file, problems=problems
        )
        self.skipped_objects = int((~keep).sum())
        if not keep.any():
            raise ValueError(f"Every object of the {split!r} split is damaged.")
        self.object_paths = [p for p, k in zip(self.object_paths, keep) if k]
        self.labels = self.labels[keep]
        self.num_objects = len(self.object_paths)
        self.object_ids = np.arange(self.num_objects, dtype=np.int32)
        self._latent_dtype, self._latent_descr = self._inspect_latent(
            _join(root, self.object_paths[0], f"latent_{view_ids[0]}.npy")
        )
        first_image = _join(root, self.object_paths[0], f"image_{view_ids[0]}.jpg")
        shape = self._decode(tf.constant(first_image)).shape
        self.image_shape = (int(shape[0]), int(shape[1]))

        self._dirs = tf.constant([_join(root, p) + "/" for p in self.object_paths])
        self._view_id_strings = tf.constant([str(k) for k in view_ids.tolist()])

    def _check_object(self, i: int) -> None:
        folder = _join(self.root, self.object_paths[i])
        entry = f"entry {i} ({self.object_paths[i]!r}) of the {self.split!r} index"
        if not tf.io.gfile.isdir(folder):
            raise FileNotFoundError(f"Object folder {folder} ({entry}) is missing.\n{LAYOUT_HELP}")
        present = set(tf.io.gfile.listdir(folder))
        missing = [
            name
            for k in self.view_ids.tolist()
            for name in (f"image_{k}.jpg", f"latent_{k}.npy")
            if name not in present
        ]
        if missing:
            found = sorted(
                int(n[len("image_") : -len(".jpg")])
                for n in present
                if n.startswith("image_") and n.endswith(".jpg") and n[6:-4].isdigit()
            )
            raise FileNotFoundError(
                f"Object folder {folder} ({entry}) lacks {len(missing)} expected files, e.g. "
                f"{missing[:4]}. Expected view ids {self.view_ids.tolist()}; the folder has "
                f"images for view ids {found}. If this is an OOD tree or has fewer views, pass "
                f"view_ids={found} (or views_per_object=...).\n{LAYOUT_HELP}"
            )

    @staticmethod
    def _inspect_latent(path: str) -> tuple[tf.DType, str]:
        """(TF dtype, NumPy descr such as '<f8') of the first latent file, checked with NumPy."""
        latent = _load_npy(path, "latent")
        if latent.shape != (NUM_LATENTS,) or latent.dtype not in (np.float64, np.float32):
            raise ValueError(
                f"Latent file {path} must hold {NUM_LATENTS} float64 (or float32) values; got "
                f"dtype {latent.dtype}, shape {latent.shape}.\n{LAYOUT_HELP}"
            )
        if latent.dtype.byteorder == ">":
            raise ValueError(f"Latent file {path} is big-endian; re-save it little-endian.")
        dtype = tf.float64 if latent.dtype == np.float64 else tf.float32
        return dtype, latent.dtype.str

    @staticmethod
    def _decode(path: tf.Tensor) -> tf.Tensor:
        """RGB uint8 of an image file (see `decode_image_bytes`)."""
        return decode_image_bytes(tf.io.read_file(path))

    def _read_view(self, paths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = checked_image(paths[0], self.image_shape)
        latent = checked_latent(paths[1], self._latent_descr, self._latent_dtype)
        return image, tf.cast(latent, tf.float32)

    def load_views(
        self, object_index: tf.Tensor, view_indices: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """See :meth:`ViewSource.load_views`; ``view_indices`` are positions into ``view_ids``."""
        folder = tf.gather(self._dirs, object_index)
        ids = tf.gather(self._view_id_strings, view_indices)
        paths = tf.stack(
            [
                tf.strings.join([folder, "image_", ids, ".jpg"]),
                tf.strings.join([folder, "latent_", ids, ".npy"]),
            ],
            axis=1,
        )
        return tf.map_fn(
            self._read_view,
            paths,
            fn_output_signature=(
                tf.TensorSpec((*self.image_shape, 3), tf.uint8),
                tf.TensorSpec((NUM_LATENTS,), tf.float32),
            ),
        )


PNG_START = b"\x89PNG\r\n\x1a\n"
NPY_START = b"\x93NUMPY"


def decode_image_bytes(data: tf.Tensor) -> tf.Tensor:
    """RGB uint8. JPEGs use the accurate integer DCT, which gives PIL's pixels exactly (the
    official loader decodes with PIL); TF's default fast DCT is off by up to ~7 levels."""
    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )


def _checked(condition: tf.Tensor, value: tf.Tensor, *message: tf.Tensor | str) -> tf.Tensor:
    """`value`, once `condition` holds; else the pipeline fails with DAMAGED_FILE + message."""
    check = tf.debugging.Assert(condition, [tf.strings.join([DAMAGED_FILE, *message])])
    with tf.control_dependencies([check]):
        return tf.identity(value)


def checked_image(path: tf.Tensor, image_shape: tuple[int, int]) -> tf.Tensor:
    """The RGB image at `path`, failing with the file named when it is not a complete JPEG (or a
    PNG) of `image_shape`: a truncated JPEG would otherwise fail without its name, or decode."""
    data = tf.io.read_file(path)
    size = tf.strings.length(data)
    is_jpeg = tf.equal(tf.strings.substr(data, 0, len(integrity.JPEG_START)), integrity.JPEG_START)
    is_png = tf.equal(tf.strings.substr(data, 0, len(PNG_START)), PNG_START)
    start = tf.maximum(size - integrity.JPEG_TAIL_BYTES, 0)
    tail = tf.io.decode_raw(tf.strings.substr(data, start, integrity.JPEG_TAIL_BYTES), tf.uint8)
    ends = tf.reduce_any(tf.logical_and(tf.equal(tail[:-1], 0xFF), tf.equal(tail[1:], 0xD9)))
    problem = tf.where(
        is_jpeg,
        " is truncated (no JPEG end-of-image marker FF D9 at its end; ",
        " is not a JPEG or PNG image (",
    )
    data = _checked(
        tf.logical_or(is_png, tf.logical_and(is_jpeg, ends)),
        data,
        path,
        problem,
        tf.strings.as_string(size),
        " bytes)",
    )
    image = decode_image_bytes(data)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    image = _checked(
        tf.logical_and(tf.equal(height, image_shape[0]), tf.equal(width, image_shape[1])),
        image,
        path,
        " is ",
        tf.strings.as_string(height),
        "x",
        tf.strings.as_string(width),
        f" pixels; the dataset's images are {image_shape[0]}x{image_shape[1]}",
    )
    return tf.ensure_shape(image, (*image_shape, 3))


def checked_latent(path: tf.Tensor, descr: str, dtype: tf.DType) -> tf.Tensor:
    """The NUM_LATENTS values of the .npy at `path`, failing with the file named unless its header
    says shape (NUM_LATENTS,) and dtype `descr` (e.g. '<f8') and its size matches: a latent of
    another shape would otherwise be read from the header's bytes."""
    data = tf.io.read_file(path)
    size = tf.strings.length(data)
    padded = tf.strings.join([data, "\0" * 12])  # fixed-offset reads stay inside the string
    major = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 6, 1), tf.uint8)[0], tf.int32)
    short = tf.io.decode_raw(tf.strings.substr(padded, 8, 2), tf.uint16, little_endian=True)[0]
    long = tf.io.decode_raw(tf.strings.substr(padded, 8, 4), tf.int32, little_endian=True)[0]
    header_start = tf.where(tf.equal(major, 1), 10, 12)
    data_start = header_start + tf.where(tf.equal(major, 1), tf.cast(short, tf.int32), long)
    header_length = tf.clip_by_value(data_start - header_start, 0, size)
    header = tf.strings.substr(padded, header_start, header_length)
    itemsize = dtype.size
    valid = tf.reduce_all(
        tf.stack(
            [
                tf.equal(tf.strings.substr(padded, 0, len(NPY_START)), NPY_START),
                tf.logical_and(major >= 1, major <= 3),
                tf.strings.regex_full_match(header, rf"(?s).*'shape': \({NUM_LATENTS},\).*"),
                tf.strings.regex_full_match(header, f"(?s).*'descr': '{descr}'.*"),
                tf.equal(size, data_start + NUM_LATENTS * itemsize),
            ]
        )
    )
    found = tf.strings.regex_replace(
        tf.strings.substr(header, 0, 160), r"(?s)^\s*(\{.*\})\s*$", r"\1"
    )
    data_start = _checked(
        valid,
        data_start,
        path,
        f" is not a complete .npy file of {NUM_LATENTS} {np.dtype(descr).name} values like the "
        "dataset's first latent file (its header: ",
        found,
        "; ",
        tf.strings.as_string(size),
        " bytes)",
    )
    raw = tf.strings.substr(padded, data_start, NUM_LATENTS * itemsize)
    return tf.reshape(tf.io.decode_raw(raw, dtype, little_endian=True), (NUM_LATENTS,))


def write_3diebench_tree(
    arrays: ViewArraysLike, root: str, split: str, view_ids: Sequence[int] | None = None
) -> None:
    """Write views in the 3DIEBench release layout (spec §6.1), e.g. to test its reader.

    `<root>/<synset>/<object>/image_{k}.jpg` (RGB JPEG) and `latent_{k}.npy` (7 float64) for
    k < V (or the k of `view_ids`, one per view: `OOD_VIEW_IDS` for the OOD layout, spec §6.2),
    with synset f"{label:08d}" and object f"obj{object_id:010d}"; the index files
    `<root>/{split}_images.npy` (unicode entries "/<synset>/<object>/") and `{split}_labels.npy`
    (int64). The OOD split shares no object with train/val, so all splits may share one root.
    """
    from PIL import Image

    if not split or "/" in split or os.sep in split:
        raise ValueError(f"split must be a plain name such as 'train', got {split!r}")
    images = arrays.images
    if images.dtype != np.uint8 or images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, V, H, W, 3), got {images.dtype}{images.shape}")
    n, v = images.shape[:2]
    view_ids = list(range(v)) if view_ids is None else [int(k) for k in view_ids]
    if len(view_ids) != v:
        raise ValueError(f"view_ids {view_ids} must name one id per view ({v} views)")
    shapes = (arrays.latents.shape, arrays.labels.shape, arrays.object_ids.shape)
    if shapes != ((n, v, 7), (n,), (n,)):
        raise ValueError("latents must be (N, V, 7) and labels, object_ids (N,), as the images")
    entries = []
    for i in range(n):
        entry = f"/{int(arrays.labels[i]):08d}/obj{int(arrays.object_ids[i]):010d}/"
        folder = os.path.join(root, entry.strip("/"))
        os.makedirs(folder, exist_ok=True)
        for j, k in enumerate(view_ids):
            Image.fromarray(arrays.images[i, j], "RGB").save(
                os.path.join(folder, f"image_{k}.jpg"), quality=95, subsampling=0
            )
            np.save(
                os.path.join(folder, f"latent_{k}.npy"), arrays.latents[i, j].astype(np.float64)
            )
        entries.append(entry)
    np.save(os.path.join(root, f"{split}_images.npy"), np.array(entries, dtype=np.str_))
    np.save(os.path.join(root, f"{split}_labels.npy"), arrays.labels.astype(np.int64))
