"""Image datasets: readers (TFDS, TinyImageNet layout) and the host batches of source images."""

from __future__ import annotations

import os

import numpy as np
import pytest

from seqjepa_jax.data import image_pipeline, image_sources
from seqjepa_jax.data.image_sources import ImageArrays


def _arrays(n: int = 20, size: int = 8) -> ImageArrays:
    images = (
        np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, size, size, 3))
    ).astype(np.uint8)
    return ImageArrays(images, np.arange(n, dtype=np.int32) % 5, "synthetic/train")


# ------------------------------------------------------------------------------------------------
# Readers.


def test_tinyimagenet_reader_sorts_classes_and_reads_val_annotations(tmp_path):
    root = str(tmp_path / "tiny")
    image_sources.write_tinyimagenet_tree(root, num_classes=3, per_class=4, val_per_class=2)
    train = image_sources.load_tinyimagenet(root, "train")
    val = image_sources.load_tinyimagenet(root, "val")
    assert train.images.shape == (12, 64, 64, 3) and train.images.dtype == np.uint8
    assert val.images.shape == (6, 64, 64, 3)
    # wnids.txt lists the classes in reverse; indices follow the sorted names (Q24's fix).
    with open(os.path.join(root, "wnids.txt")) as f:
        wnids = sorted(line.strip() for line in f if line.strip())
    paths, labels = image_sources.tinyimagenet_files(root, "train")
    for path, label in zip(paths, labels, strict=True):
        assert f"/{wnids[label]}/" in path
    np.testing.assert_array_equal(train.labels, labels)
    # The tree writer sets channel c % 3 of class c to 40 * c: the decoded pixels carry it.
    for c in range(3):
        mean = train.images[train.labels == c][..., c % 3].mean()
        assert abs(mean - 40 * c) < 6, (c, mean)
    assert sorted(np.bincount(val.labels).tolist()) == [2, 2, 2]
    # The second load comes from the .npy cache and is identical.
    assert os.path.isdir(os.path.join(root, "seqjepa_cache"))
    again = image_sources.load_tinyimagenet(root, "train")
    np.testing.assert_array_equal(again.images, train.images)


def test_tinyimagenet_missing_root_names_the_download(tmp_path):
    with pytest.raises(ValueError, match="tiny-imagenet-200.zip"):
        image_sources.load_tinyimagenet(str(tmp_path / "nowhere"), "train")
    with pytest.raises(ValueError, match="'train' or 'val'"):
        image_sources.write_tinyimagenet_tree(str(tmp_path / "t"), 1, 1, 1)
        image_sources.load_tinyimagenet(str(tmp_path / "t"), "test")


def test_unprepared_tfds_dataset_stops_with_instructions(tmp_path):
    with pytest.raises(ValueError, match=r"not prepared.*download_and_prepare"):
        image_sources.load_tfds_images("cifar100", "train", data_dir=str(tmp_path))
    assert os.listdir(tmp_path) == [] or not any(
        os.path.isfile(os.path.join(tmp_path, f)) for f in os.listdir(tmp_path)
    )


@pytest.mark.parametrize(("name", "split", "shape"), [("cifar100", "test", (32, 32, 3))])
def test_tfds_reader_on_mock_data(name, split, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=10):
        arrays = image_sources.load_tfds_images(name, split, data_dir="/nonexistent", read_batch=4)
    assert arrays.images.shape == (10, *shape) and arrays.images.dtype == np.uint8
    assert arrays.labels.dtype == np.int32 and arrays.name == f"{name}/{split}"


def test_image_arrays_reject_bad_shapes():
    with pytest.raises(ValueError, match="uint8"):
        ImageArrays(np.zeros((2, 4, 4, 3), np.float32), np.zeros(2, np.int32), "x")
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        ImageArrays(np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3, np.int32), "x")


# ------------------------------------------------------------------------------------------------
# Host batches.


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_train_batches_are_a_function_of_seed_and_step():
    arrays = _arrays(20)
    stream = _take(image_pipeline.train_image_batches(arrays, global_batch_size=4, seed=3), 12)
    # 5 steps per epoch: every epoch visits 20 distinct images, a new order each epoch.
    for epoch in range(2):
        ids = np.concatenate([b["sample_id"] for b in stream[5 * epoch : 5 * epoch + 5]])
        assert sorted(ids.tolist()) == list(range(20))
        assert all((b["epoch"] == epoch).all() for b in stream[5 * epoch : 5 * epoch + 5])
    assert not np.array_equal(stream[0]["sample_id"], stream[5]["sample_id"])
    # Images and labels are gathered by sample_id.
    b = stream[7]
    np.testing.assert_array_equal(b["image"][:, 0, 0, 0], b["sample_id"])
    np.testing.assert_array_equal(b["label"], b["sample_id"] % 5)
    # Resuming at step 7 replays the uninterrupted stream exactly.
    resumed = _take(
        image_pipeline.train_image_batches(arrays, global_batch_size=4, seed=3, start_step=7), 5
    )
    for a, r in zip(stream[7:], resumed, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], r[key])
    other_seed = next(image_pipeline.train_image_batches(arrays, global_batch_size=4, seed=4))
    assert not np.array_equal(other_seed["sample_id"], stream[0]["sample_id"])


def test_hosts_split_each_global_batch_disjointly():
    arrays = _arrays(24)
    single = _take(image_pipeline.train_image_batches(arrays, global_batch_size=8, seed=0), 3)
    hosts = [
        _take(
            image_pipeline.train_image_batches(
                arrays, global_batch_size=8, seed=0, process_index=p, process_count=2
            ),
            3,
        )
        for p in range(2)
    ]
    for step in range(3):
        a, b = hosts[0][step]["sample_id"], hosts[1][step]["sample_id"]
        assert len(a) == len(b) == 4 and not set(a) & set(b)
        assert set(a) | set(b) == set(single[step]["sample_id"])


def test_eval_batches_pad_with_mask_and_cover_each_image_once():
    arrays = _arrays(10)
    saliency = np.random.default_rng(0).random((10, 8, 8)).astype(np.float32)
    batches = list(
        image_pipeline.eval_image_batches(arrays, global_batch_size=4, saliency=saliency)
    )
    assert len(batches) == 3
    mask = np.concatenate([b["mask"] for b in batches])
    ids = np.concatenate([b["sample_id"] for b in batches])
    np.testing.assert_array_equal(mask, [1] * 10 + [0, 0])
    np.testing.assert_array_equal(ids[:10], np.arange(10))
    assert (ids[10:] == -1).all() and (
        np.concatenate([b["label"] for b in batches])[10:] == -1
    ).all()
    np.testing.assert_array_equal(batches[1]["saliency"], saliency[4:8])
    capped = list(image_pipeline.eval_image_batches(arrays, global_batch_size=4, max_examples=5))
    assert np.concatenate([b["mask"] for b in capped]).sum() == 5


def test_bad_batch_and_saliency_are_refused():
    arrays = _arrays(6)
    with pytest.raises(ValueError, match="multiple of the process count 2"):
        next(
            image_pipeline.train_image_batches(
                arrays, global_batch_size=3, seed=0, process_index=0, process_count=2
            )
        )
    with pytest.raises(ValueError, match="not a single training step"):
        next(image_pipeline.train_image_batches(arrays, global_batch_size=8, seed=0))
    with pytest.raises(ValueError, match=r"expected \(6, 8, 8\)"):
        next(
            image_pipeline.train_image_batches(
                arrays, global_batch_size=2, seed=0, saliency=np.zeros((6, 4, 4), np.float32)
            )
        )
