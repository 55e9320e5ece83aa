"""3DIEBench reader on tiny trees written by the test (spec §6.1 layout, §6.2 OOD view ids)."""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy.spatial.transform import Rotation

from seqjepa_jax.data import pipeline, threediebench
from seqjepa_jax.data.threediebench import OOD_VIEW_IDS, ThreeDIEBenchSource

N, V, SIZE = 6, 5, 16


def make_data(n=N, v=V, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth images so that JPEG loss stays small.
    grid = np.linspace(0, 1, SIZE)
    scale = rng.uniform(50, 200, (n, v, 1, 1, 3))
    images = (scale * grid[:, None, None] + 40 * grid[None, :, None]).clip(0, 255)
    images = images.astype(np.uint8)
    latents = rng.uniform(-np.pi / 2, np.pi / 2, (n, v, 7))  # float64 on disk, as 3DIEBench
    latents[..., 3:] = rng.uniform(0, 1, (n, v, 4))
    labels = rng.integers(0, 55, n)
    return images, latents, labels


def write_tree(root, images, latents, labels, split="train", view_ids=None, latent_dtype=None):
    """The 3DIEBench layout: <root>/<synset>/<obj>/image_k.jpg, latent_k.npy + split index files."""
    view_ids = range(images.shape[1]) if view_ids is None else view_ids
    entries = []
    for i in range(len(images)):
        entry = f"/{labels[i]:08d}/obj{i:03d}/"
        folder = os.path.join(root, entry.strip("/"))
        os.makedirs(folder, exist_ok=True)
        for j, k in enumerate(view_ids):
            Image.fromarray(images[i, j]).save(os.path.join(folder, f"image_{k}.jpg"), quality=95)
            lat = latents[i, j] if latent_dtype is None else latents[i, j].astype(latent_dtype)
            np.save(os.path.join(folder, f"latent_{k}.npy"), lat)
        entries.append(entry)
    np.save(os.path.join(root, f"{split}_images.npy"), np.array(entries))
    np.save(os.path.join(root, f"{split}_labels.npy"), np.asarray(labels, np.int64))
    return entries


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("3diebench"))
    data = make_data()
    entries = write_tree(root, *data)
    return root, data, entries


def load(source, obj, positions):
    images, latents = source.load_views(tf.constant(obj), tf.constant(positions))
    return images.numpy(), latents.numpy()


def test_reader_matches_written_tree(tree):
    root, (images, latents, labels), entries = tree
    src = ThreeDIEBenchSource(root, "train", views_per_object=V)
    assert (src.num_objects, src.views_per_object, src.image_shape) == (N, V, (SIZE, SIZE))
    np.testing.assert_array_equal(src.labels, labels)
    assert src.labels.dtype == np.int32
    np.testing.assert_array_equal(src.object_ids, np.arange(N))
    assert src.object_paths == [e.strip("/") for e in entries]
    for obj in (0, 3, N - 1):
        got_img, got_lat = load(src, obj, [4, 0, 2])
        assert got_img.dtype == np.uint8 and got_img.shape == (3, SIZE, SIZE, 3)
        assert got_lat.dtype == np.float32
        np.testing.assert_array_equal(got_lat, latents[obj, [4, 0, 2]].astype(np.float32))
        # Exactly PIL's pixels (the official decoder); close to the originals (JPEG loss).
        for j, k in enumerate([4, 0, 2]):
            folder = os.path.join(root, entries[obj].strip("/"))
            pil = np.asarray(Image.open(os.path.join(folder, f"image_{k}.jpg")).convert("RGB"))
            np.testing.assert_array_equal(got_img[j], pil)
        diff = np.abs(got_img.astype(float) - images[obj, [4, 0, 2]])
        assert diff.mean() < 3.0, diff.mean()


def test_pipeline_on_tree(tree):
    root, (_, latents, labels), _ = tree
    src = ThreeDIEBenchSource(root, "train", views_per_object=V)
    ds = pipeline.train_batches(
        src,
        num_views=3,
        global_batch_size=2,
        latent_type="rot",
        seed=0,
        image_size=8,
        process_index=0,
        process_count=1,
    )
    batches = list(itertools.islice(ds.as_numpy_iterator(), 4))
    assert batches[0]["views"].shape == (2, 3, 8, 8, 3)
    for b in batches:
        for i, obj in enumerate(b["object_index"]):
            lat = latents[obj, b["view_ids"][i]].astype(np.float32)
            np.testing.assert_array_equal(b["latents"][i], lat)
            assert b["label"][i] == labels[obj]
            rots = Rotation.from_euler("xyz", lat[:, :3])
            rel = [(rots[k].inv() * rots[k + 1]).as_quat() for k in range(2)]
            np.testing.assert_allclose(b["actions"][i], rel, atol=2e-7)


def test_ood_view_ids_and_float32_latents(tmp_path):
    images, latents, labels = make_data(n=2, v=4, seed=1)
    write_tree(str(tmp_path), images, latents, labels, "val", OOD_VIEW_IDS, np.float32)
    with pytest.raises(
        FileNotFoundError, match=r"view ids \[2, 3, 4, 5\].*view_ids=\[2, 3, 4, 5\]"
    ):
        ThreeDIEBenchSource(str(tmp_path), "val")  # default 50 views: points at the fix
    src = ThreeDIEBenchSource(str(tmp_path), "validation", view_ids=OOD_VIEW_IDS)
    assert src.views_per_object == 4
    got_img, got_lat = load(src, 1, [3, 0])  # positions 3, 0 = view ids 5, 2
    np.testing.assert_array_equal(got_lat, latents[1, [3, 0]].astype(np.float32))
    batch = next(
        pipeline.eval_batches(
            src, num_views=4, global_batch_size=4, process_index=0, process_count=1
        ).as_numpy_iterator()
    )
    assert set(batch["view_ids"][0].tolist()) == set(OOD_VIEW_IDS)
    np.testing.assert_array_equal(batch["mask"], [1, 1, 0, 0])


def test_separate_index_dir(tmp_path):
    images, latents, labels = make_data(n=2, v=2, seed=2)
    root = tmp_path / "images"
    write_tree(str(root), images, latents, labels)
    os.makedirs(tmp_path / "index")
    for f in ("train_images.npy", "train_labels.npy"):
        os.rename(root / f, tmp_path / "index" / f)
    with pytest.raises(FileNotFoundError, match="train_images.npy"):
        ThreeDIEBenchSource(str(root), views_per_object=2)
    src = ThreeDIEBenchSource(str(root), views_per_object=2, index_dir=str(tmp_path / "index"))
    assert src.num_objects == 2


def _broken_tree(tmp_path, breakage):
    images, latents, labels = make_data(n=3, v=2, seed=3)
    root = str(tmp_path)
    entries = write_tree(root, images, latents, labels)
    first = os.path.join(root, entries[0].strip("/"))
    if breakage == "labels_length":
        np.save(os.path.join(root, "train_labels.npy"), np.zeros(2, np.int64))
    elif breakage == "no_index":
        os.remove(os.path.join(root, "train_images.npy"))
    elif breakage == "no_folder":
        for f in os.listdir(first):
            os.remove(os.path.join(first, f))
        os.rmdir(first)
    elif breakage == "no_latent":
        os.remove(os.path.join(first, "latent_1.npy"))
    elif breakage == "bad_latent":
        np.save(os.path.join(first, "latent_0.npy"), np.zeros(6))
    elif breakage == "object_index":
        np.save(os.path.join(root, "train_images.npy"), np.array(entries, dtype=object))
    return root


@pytest.mark.parametrize(
    "breakage, error, match",
    [
        ("labels_length", ValueError, "3 objects but train_labels.npy has 2 labels"),
        ("no_index", FileNotFoundError, r"Missing 'train' index file .*train_images.npy"),
        ("no_folder", FileNotFoundError, r"Object folder .*obj000 .*entry 0.* is missing"),
        ("no_latent", FileNotFoundError, r"obj000 .*latent_1.npy"),
        ("bad_latent", ValueError, r"latent_0.npy holds a float64 array of shape \(6,\)"),
        ("object_index", ValueError, "unicode array"),
    ],
)
def test_malformed_tree_errors(tmp_path, breakage, error, match):
    root = _broken_tree(tmp_path, breakage)
    with pytest.raises(error, match=match) as info:
        ThreeDIEBenchSource(root, "train", views_per_object=2)
    if error is FileNotFoundError:
        assert "Expected the 3DIEBench layout" in str(info.value)


def test_missing_root_and_bad_view_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist.*\n.*layout"):
        ThreeDIEBenchSource(str(tmp_path / "nowhere"))
    root = _broken_tree(tmp_path, None)
    with pytest.raises(ValueError, match="disagrees"):
        ThreeDIEBenchSource(root, views_per_object=3, view_ids=[0, 1])
    with pytest.raises(ValueError, match="distinct"):
        ThreeDIEBenchSource(root, view_ids=[0, 0])
    src = ThreeDIEBenchSource(root, views_per_object=2, validate_all_objects=True)
    with pytest.raises(ValueError, match=r"num_views=3 .* 2 views per object"):
        pipeline.train_batches(src, num_views=3, global_batch_size=1, process_count=1)


def test_procedural_writer_roundtrip(tmp_path):
    """If the procedural renderer's tree writer exists, its trees read back exactly."""
    procedural = pytest.importorskip("seqjepa_jax.data.procedural")
    images, latents, labels = make_data(n=3, v=4, seed=4)
    arrays = procedural.ViewArrays(
        images=images,
        latents=latents.astype(np.float32),
        labels=labels.astype(np.int32),
        object_ids=np.arange(3, dtype=np.int32),
    )
    threediebench.write_3diebench_tree(arrays, str(tmp_path), "train")
    src = ThreeDIEBenchSource(str(tmp_path), "train", views_per_object=4)
    np.testing.assert_array_equal(src.labels, labels)
    for obj in range(3):
        got_img, got_lat = load(src, obj, [0, 1, 2, 3])
        np.testing.assert_allclose(got_lat, latents[obj].astype(np.float32), atol=1e-7)
        assert np.abs(got_img.astype(float) - images[obj]).mean() < 3.0
