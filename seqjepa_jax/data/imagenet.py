"""ImageNet-1k for the saccade recipe, streamed from TFDS (spec §6.4.3).

ImageNet does not fit in host memory, so unlike `image_sources.py` its images are streamed from the
TFDS ``imagenet2012`` builder (prepared once from the official tar files in TFDS's ``manual_dir``).
The host decodes each JPEG, takes the full-image crop of spec §6.4.3 and hands 224x224 uint8 images
(and, when released maps are given, the saliency map cropped by the same box) to the same batch
format (at ``config.data.saccades.source_size``, 224 in the recipe) and device-side saccade view
maker as STL-10 (`image_pipeline.py`, `view_makers.SaccadeViews`):

- train: an Inception-style random resized crop
  (``tf.image.stateless_sample_distorted_bounding_box`` with area (0.08, 1), aspect ratio (3/4,
  4/3), 10 attempts, whole image as fallback; the torchvision ``RandomResizedCrop(224)`` of the
  official code samples the same distribution but falls back to a central crop of clamped aspect
  ratio) and a bilinear antialiased resize;
- eval: resize the shorter side to 256, centre crop 224 (official val transform).

Saliency (Q23 fixed): released maps are at the native image resolution; the crop box is scaled to
the map's resolution and the same region is resized to 224x224, so the fixations live in the image
the glimpses are taken from. Files are looked up under ``<saliency_dir>/<split>/<wnid>/`` with
either the ``_sal`` or the ``-sal`` suffix (Q22). Class indices are TFDS's sorted wnids, identical
for train and validation (Q24 fixed).

Order and resume: epoch e reads host p's even split of the files shuffled with seed (seed, e) and a
seeded shuffle buffer; the random crop is keyed on (seed, e, hash(file name)) and the views on
(seed, e, sample_id = hash(file name)). A resume at step s re-creates epoch s // steps_per_epoch and
skips the undecoded records of the steps already taken, so the stream equals the uninterrupted one
(deterministic tf.data). Evaluation uses TFDS's even split with ``drop_remainder=True``, i.e. up to
P - 1 validation images are left out on P hosts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from jax.sharding import Mesh

from seqjepa_jax.data import pipeline, view_makers
from seqjepa_jax.data.datasets import RunData, build_view_maker
from seqjepa_jax.data.sources import hide_gpus_from_tensorflow

TFDS_NAME = "imagenet2012"
EVAL_CROP_FRACTION = 224 / 256  # Resize(256) + CenterCrop(224)
CROP_AREA = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
_HASH_BUCKETS = 2**31 - 1
_SHUFFLE_BUFFER = 10_000


def load_builder(data_dir: str | None, manual_dir: str | None = None, split: str = "train"):  # noqa: ANN201
    """The TFDS ImageNet builder, prepared from `manual_dir` first when given and needed.

    Raises a ValueError with the preparation steps when `split` cannot be read.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir or None)
    if manual_dir and not builder.is_prepared():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    try:
        builder.as_dataset(split=split)
    except Exception as error:  # not prepared, or an unknown split
        raise ValueError(
            f"TFDS {TFDS_NAME!r} split {split!r} cannot be read under "
            f"{data_dir or '~/tensorflow_datasets'} ({error}). Put ILSVRC2012_img_train.tar and "
            "ILSVRC2012_img_val.tar in a folder MANUAL and run once with "
            "--config.data.manual_dir=MANUAL (TFDS extracts and prepares them), or set "
            "config.data.data_dir to where imagenet2012 is already prepared."
        ) from error
    return builder


def _saliency_loader(saliency_dir: str, split_folder: str, wnids: list[str]):  # noqa: ANN202
    from seqjepa_jax.data.saliency_files import imagenet_saliency_path

    def load(file_name: bytes, label: np.int64) -> np.ndarray:
        image_id = file_name.decode().rsplit(".", 1)[0]
        path = imagenet_saliency_path(saliency_dir, split_folder, wnids[int(label)], image_id)
        saliency = np.load(path, allow_pickle=False).astype(np.float32)
        return saliency.reshape(saliency.shape[-2:])

    return load


def _crop_and_resize(x: tf.Tensor, box: tuple[tf.Tensor, ...], size: int) -> tf.Tensor:
    top, left, height, width = box
    crop = tf.image.crop_to_bounding_box(x, top, left, height, width)
    return tf.image.resize(crop, (size, size), method="bilinear", antialias=True)


def _scaled_box(box: tuple[tf.Tensor, ...], src_hw: tf.Tensor, dst_hw: tf.Tensor) -> tuple:
    """The same region in a map of another resolution (at least one pixel)."""
    scale = tf.cast(dst_hw, tf.float32) / tf.cast(src_hw, tf.float32)
    top = tf.cast(tf.floor(tf.cast(box[0], tf.float32) * scale[0]), tf.int32)
    left = tf.cast(tf.floor(tf.cast(box[1], tf.float32) * scale[1]), tf.int32)
    height = tf.maximum(tf.cast(tf.round(tf.cast(box[2], tf.float32) * scale[0]), tf.int32), 1)
    width = tf.maximum(tf.cast(tf.round(tf.cast(box[3], tf.float32) * scale[1]), tf.int32), 1)
    height = tf.minimum(height, dst_hw[0] - top)
    width = tf.minimum(width, dst_hw[1] - left)
    return top, left, height, width


def _crop_box(image_hw: tf.Tensor, train: bool, key: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """(top, left, height, width) of the full-image crop (module docstring)."""
    if train:
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.concat([image_hw, [3]], 0),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=key,
            min_object_covered=0.0,
            aspect_ratio_range=CROP_RATIO,
            area_range=CROP_AREA,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin[0], begin[1], size[0], size[1]
    # Resize(256) + CenterCrop(224) is the centre square of side 224/256 of the shorter side.
    shorter = tf.cast(tf.reduce_min(image_hw), tf.float32)
    side = tf.cast(tf.round(shorter * EVAL_CROP_FRACTION), tf.int32)
    return (image_hw[0] - side) // 2, (image_hw[1] - side) // 2, side, side


def _element_fn(seed: int, train: bool, size: int, saliency_loader):  # noqa: ANN001, ANN202
    def fn(epoch: tf.Tensor, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        sample_id = tf.cast(
            tf.strings.to_hash_bucket_fast(example["file_name"], _HASH_BUCKETS), tf.int32
        )
        image = tf.io.decode_jpeg(example["image"], channels=3)
        image_hw = tf.shape(image)[:2]
        key = tf.stack(
            [
                tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64),
                tf.cast(sample_id, tf.int64),
            ]
        )
        box = _crop_box(image_hw, train, key)
        pixels = _crop_and_resize(tf.cast(image, tf.float32), box, size)
        out = {
            "image": tf.cast(tf.clip_by_value(tf.round(pixels), 0, 255), tf.uint8),
            "label": tf.cast(example["label"], tf.int32),
            "sample_id": sample_id,
            "epoch": tf.cast(epoch, tf.int32),
            "mask": tf.constant(1.0, tf.float32),
        }
        if saliency_loader is not None:
            saliency = tf.numpy_function(
                saliency_loader, [example["file_name"], example["label"]], tf.float32
            )
            saliency = tf.ensure_shape(saliency, (None, None))[..., None]
            map_box = _scaled_box(box, image_hw, tf.shape(saliency)[:2])
            cropped = tf.maximum(_crop_and_resize(saliency, map_box, size)[..., 0], 0.0)
            out["saliency"] = cropped / tf.maximum(tf.reduce_sum(cropped), 1e-12)
        return out

    return fn


class ImageNetData(RunData):
    """ImageNet-1k saccade data streamed from TFDS (module docstring)."""

    individual_target_name = "position"

    def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh) -> None:
        import tensorflow_datasets as tfds

        hide_gpus_from_tensorflow()
        self._config, self._mesh = config, mesh
        data = config.data
        self._builder = load_builder(data.data_dir, data.manual_dir, data.train_split)
        self._wnids = list(self._builder.info.features["label"].names)
        self._p, self._num_p = jax.process_index(), jax.process_count()
        self._splits = {
            "ssl": data.train_split,
            "train": data.probe_train_split or data.train_split,
            "eval": data.eval_split,
        }
        self._host_split = {
            role: tfds.even_splits(split, n=self._num_p, drop_remainder=True)[self._p]
            for role, split in self._splits.items()
        }
        self.num_train_examples = self._count(data.train_split)
        self._train_views, self._probe_views = view_makers.train_and_probe_view_fns(
            build_view_maker(config), mesh, config.eval.num_views
        )

    def _count(self, split: str) -> int:
        info = self._builder.info.splits
        if info and split in info:
            return int(info[split].num_examples)
        return int(sum(1 for _ in self._builder.as_dataset(split=split)))  # unprepared metadata

    def describe(self) -> dict[str, str]:
        """See :meth:`RunData.describe`."""
        return {f"{r}_data": f"{TFDS_NAME}/{s} (streamed)" for r, s in self._splits.items()}

    def _records(self, role: str, read_seed: int | None) -> tf.data.Dataset:
        import tensorflow_datasets as tfds

        return self._builder.as_dataset(
            split=self._host_split[role],
            shuffle_files=read_seed is not None,
            read_config=tfds.ReadConfig(shuffle_seed=read_seed),
            decoders={"image": tfds.decode.SkipDecoding()},
        )

    def _saliency_loader(self, role: str):  # noqa: ANN202
        s = self._config.data.saccades
        if not s.saliency_dir or not s.use_saliency:
            return None
        folder = "train" if self._splits[role] == "train" else "val"
        return _saliency_loader(s.saliency_dir, folder, self._wnids)

    def _host_batches(self, role: str, epoch: int, skip: int, take: int | None) -> tf.data.Dataset:
        config = self._config
        train = role == "ssl"
        records = self._records(role, config.seed * 1_000_003 + epoch if train else None)
        if train:
            records = records.shuffle(_SHUFFLE_BUFFER, seed=config.seed * 1_000_003 + epoch)
        if take is not None:
            records = records.take(take)
        records = records.skip(skip)
        fn = _element_fn(
            config.seed, train, config.data.saccades.source_size, self._saliency_loader(role)
        )
        ds = records.map(lambda ex: fn(epoch, ex), num_parallel_calls=tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True
        return ds.with_options(options)

    def train_batches(self, start_step: int) -> Iterator[dict[str, jax.Array]]:
        """See :meth:`RunData.train_batches`."""
        local = self._config.train.batch_size // self._num_p
        steps = self.steps_per_epoch(self._config.train.batch_size)
        start_epoch, step_in_epoch = divmod(int(start_step), steps)

        def host() -> Iterator[dict[str, np.ndarray]]:
            for epoch in itertools.count(start_epoch):
                skip = step_in_epoch * local if epoch == start_epoch else 0
                ds = self._host_batches("ssl", epoch, skip, steps * local)
                yield from ds.batch(local, drop_remainder=True).as_numpy_iterator()

        for raw in pipeline.global_batch_iterator(host(), self._mesh):
            yield self._train_views(raw)

    def probe_batches(self, split: str, max_examples: int | None) -> Iterator[dict[str, jax.Array]]:
        """See :meth:`RunData.probe_batches`; the last batch is padded with mask 0."""
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval'; got {split!r}.")
        local = self._config.eval.batch_size // self._num_p
        take = None if max_examples is None else -(-max_examples // self._num_p)
        ds = self._host_batches(split, 0, 0, take).batch(local)

        def padded() -> Iterator[dict[str, np.ndarray]]:
            for batch in ds.as_numpy_iterator():
                missing = local - len(batch["mask"])
                if missing:
                    batch = {
                        k: np.concatenate([v, np.repeat(v[:1], missing, 0)])
                        for k, v in batch.items()
                    }
                    batch["mask"][-missing:] = 0.0
                    batch["label"][-missing:] = -1
                    batch["sample_id"][-missing:] = -1
                yield batch

        for raw in pipeline.global_batch_iterator(padded(), self._mesh):
            yield self._probe_views(raw)
