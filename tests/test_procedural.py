"""Tests of the procedural 3D-object dataset (seqjepa_jax.data.procedural, procedural_cache)."""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pytest
from PIL import Image

from seqjepa_jax.data import procedural as P
from seqjepa_jax.data import procedural_cache as PC
from seqjepa_jax.data.procedural_shapes import (
    CLASS_NAMES,
    _inside_points,
    make_object,
    object_class,
)
from seqjepa_jax.data.threediebench import write_3diebench_tree

SIZE = 24
NUM_CLASSES = len(CLASS_NAMES)


def _render(prims: np.ndarray, latents: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Render each (object, latent) pair with the library's renderer."""
    rots, lights = P._scene_inputs(np.asarray(latents, np.float32))
    n = int((prims[..., 23] > 0).sum(-1).max())
    return np.asarray(P._render_batch(prims, rots, lights, np.int32(n), size=size))


def _latent(**kw: float) -> np.ndarray:
    base = dict(rx=0.3, ry=-0.4, rz=0.5, floor=0.1, theta=0.3, phi=1.0, spot=0.6)
    base.update(kw)
    return np.array(list(base.values()), np.float32)


def test_same_seed_gives_identical_images_and_other_seed_differs():
    a = P.render_objects(np.array([0, 7]), 3, SIZE, seed=3)
    b = P.render_objects(np.array([0, 7]), 3, SIZE, seed=3)
    c = P.render_objects(np.array([0, 7]), 3, SIZE, seed=4)
    for f in dataclasses.fields(P.ViewArrays):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name))
    assert not np.array_equal(a.images, c.images)
    assert a.images.dtype == np.uint8 and a.images.shape == (2, 3, SIZE, SIZE, 3)
    assert a.latents.dtype == np.float32 and a.latents.shape == (2, 3, 7)
    assert a.labels.dtype == np.int32 and a.object_ids.dtype == np.int32
    np.testing.assert_array_equal(a.object_ids, [0, 7])
    np.testing.assert_array_equal(a.labels, [0, 7 % NUM_CLASSES])


def test_an_object_renders_the_same_whatever_else_is_in_the_call():
    together = P.render_objects(np.arange(10), 3, SIZE, seed=0)
    alone = P.render_objects(np.array([4]), 3, SIZE, seed=0)
    np.testing.assert_array_equal(together.images[4], alone.images[0])
    np.testing.assert_array_equal(together.latents[4], alone.latents[0])


def test_rotation_and_lights_change_the_image():
    prims = np.repeat(make_object(0, 1)[None], 4, 0)
    lat = np.stack(
        [_latent(), _latent(rx=1.2, rz=-0.9), _latent(floor=0.6), _latent(spot=0.1, phi=4.0)]
    )
    img = _render(prims, lat, 32).astype(np.int32)
    for other in (1, 2, 3):
        assert np.abs(img[0] - img[other]).mean() > 4, other
    # Rotating the object must move it, not just recolour it: compare the silhouettes.
    empty = prims.copy()
    empty[..., 23] = 0
    masks = (img != _render(empty, lat, 32)).any(-1)
    assert (masks[0] ^ masks[1]).mean() > 0.05


def test_floor_hue_colours_the_floor_and_spot_hue_tints_the_light():
    prims = np.repeat(make_object(0, 5)[None], 6, 0)
    empty = prims.copy()
    empty[..., 23] = 0
    hues = [0.0, 1 / 3, 2 / 3]
    floor = _render(empty[:3], np.stack([_latent(floor=h, spot=0.5) for h in hues]), 16)
    for channel in range(3):  # red, green, blue floors
        assert np.argmax(floor[channel].reshape(-1, 3).mean(0)) == channel
    lat = np.stack([_latent(theta=0.0, spot=h) for h in hues + [0.0, 0.0, 0.0]])
    img = _render(prims, lat, 32).astype(np.float32)
    mask = (img != _render(empty, lat, 32)).any(-1)[0]
    obj = img[:3, mask].mean(1)  # mean object colour under red, green and blue spot light
    for channel in range(3):
        assert np.argmax(obj[:, channel]) == channel, obj
    assert obj.min(1).mean() > 40  # the object stays visible, whatever the spot colour


def test_latent_ranges_in_distribution_and_ood():
    half = np.pi / 2
    lat = np.concatenate([P.sample_latents(0, i, 200) for i in range(10)])
    assert lat.dtype == np.float32 and lat.shape == (2000, 7)
    eps = 1e-6  # float32 rounding of the sampled float64 values
    assert np.all(np.abs(lat[:, :3]) <= half + eps) and lat[:, :3].std() > 0.8
    for j in (3, 6):  # hues
        assert np.all((lat[:, j] >= 0) & (lat[:, j] <= 1)) and lat[:, j].std() > 0.25
    assert np.all((lat[:, 4] >= 0) & (lat[:, 4] <= np.pi / 4 + eps)) and lat[:, 4].max() > 0.7
    assert np.all((lat[:, 5] >= 0) & (lat[:, 5] <= 2 * np.pi + eps)) and lat[:, 5].max() > 6
    ood = np.concatenate([P.sample_latents(0, i, 200, ood=True) for i in range(10)])
    angles = np.abs(ood[:, :3])
    assert np.all((angles >= half - 1e-6) & (angles <= np.pi + 1e-6))
    for j in range(3):  # independent random signs per angle
        assert 0.4 < (ood[:, j] > 0).mean() < 0.6
    assert np.all((ood[:, 4] >= 0) & (ood[:, 4] <= np.pi / 4))
    # render_objects stores exactly these latents; in-distribution and OOD views differ.
    views = P.render_objects(np.array([3]), 4, 16, seed=0, ood=True)
    np.testing.assert_array_equal(views.latents[0], P.sample_latents(0, 3, 4, ood=True))
    assert not np.allclose(P.sample_latents(0, 3, 4), views.latents[0])


def test_easier_scene_options_scale_angles_and_fix_the_lighting():
    full = P.sample_latents(0, 5, 300)
    easy = P.sample_latents(0, 5, 300, max_angle=np.pi / 4, vary_lighting=False)
    # The same draws, scaled: every angle halves (to float32 rounding), within ±π/4.
    np.testing.assert_allclose(easy[:, :3], full[:, :3] / 2, atol=1e-6)
    assert np.abs(easy[:, :3]).max() <= np.pi / 4 + 1e-6
    np.testing.assert_allclose(easy[:, 3:], np.tile(np.float32(P.FIXED_LIGHTING), (300, 1)))
    # OOD rotations keep the spec range, so they stay disjoint from any in-distribution range.
    ood = P.sample_latents(0, 5, 50, ood=True, max_angle=np.pi / 4)
    assert np.abs(ood[:, :3]).min() >= np.pi / 2 - 1e-6
    # render_objects passes the options through to the stored latents.
    views = P.render_objects(np.array([5]), 3, 16, seed=0, max_angle=0.5, vary_lighting=False)
    np.testing.assert_array_equal(
        views.latents[0], P.sample_latents(0, 5, 3, max_angle=0.5, vary_lighting=False)
    )


def test_objects_of_one_class_vary():
    a, b = make_object(0, 2), make_object(0, 2 + NUM_CLASSES)
    assert object_class(2) == object_class(2 + NUM_CLASSES)
    assert not np.allclose(a, b)
    lat = np.stack([_latent(), _latent()])
    img = _render(np.stack([a, b]), lat, 32).astype(np.int32)
    assert np.abs(img[0] - img[1]).mean() > 4
    # Every object is scaled to reach, but not leave, the unit sphere.
    for oid in range(NUM_CLASSES):
        rows = make_object(0, oid)
        radius = np.linalg.norm(_inside_points(rows[rows[:, 23] > 0].astype(np.float64)), axis=1)
        assert abs(radius.max() - 1) < 1e-4, (CLASS_NAMES[oid], radius.max())


def test_classes_can_be_told_apart_on_held_out_objects():
    train = P.render_objects(np.arange(6 * NUM_CLASSES), 4, SIZE, seed=0)
    test = P.render_objects(P.VAL_ID_OFFSET + np.arange(3 * NUM_CLASSES), 4, SIZE, seed=0)
    assert set(train.labels) == set(test.labels) == set(range(NUM_CLASSES))

    def features(v: P.ViewArrays) -> np.ndarray:
        x = v.images.astype(np.float32).mean(-1).reshape(-1, SIZE * SIZE)
        x = x - x.mean(1, keepdims=True)
        return x / (x.std(1, keepdims=True) + 1e-6)

    xtr, xte = features(train), features(test)
    ytr, yte = np.repeat(train.labels, 4), np.repeat(test.labels, 4)
    means = np.stack([xtr[ytr == c].mean(0) for c in range(NUM_CLASSES)])
    pred = ((xte[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    accuracy = (pred == yte).mean()
    assert accuracy > 2.4 / NUM_CLASSES, accuracy  # chance is 1/12; measured 0.31


def test_objects_fill_the_frame():
    ids = np.arange(2 * NUM_CLASSES)
    prims = np.repeat(np.stack([make_object(0, i) for i in ids]), 4, 0)
    lat = np.concatenate([P.sample_latents(0, i, 4) for i in ids])
    empty = prims.copy()
    empty[..., 23] = 0
    fill = (_render(prims, lat, 32) != _render(empty, lat, 32)).any(-1).mean((1, 2))
    assert fill.mean() > 0.35, fill.mean()
    assert fill.min() > 0.1, fill.min()
    # The view window crops only the tips of long parts: the image border is mostly floor.
    masks = _render(prims, lat, 32) != _render(empty, lat, 32)
    border = np.concatenate([masks[:, 0], masks[:, -1], masks[:, :, 0], masks[:, :, -1]], 1)
    assert border.any(-1).mean() < 0.15, border.any(-1).mean()  # measured 0.09


def test_split_ids_are_disjoint_and_independent_of_other_splits():
    small = P.ProceduralConfig(num_train_objects=3, num_val_objects=4, num_ood_objects=2)
    big = P.ProceduralConfig(num_train_objects=30, num_val_objects=4, num_ood_objects=5)
    ids = {s: P.split_object_ids(small, s) for s in ("train", "val", "ood")}
    assert len(np.unique(np.concatenate(list(ids.values())))) == 9
    np.testing.assert_array_equal(ids["val"], P.split_object_ids(big, "val"))
    np.testing.assert_array_equal(ids["ood"], P.split_object_ids(big, "ood")[:2])
    assert all(v.dtype == np.int32 for v in ids.values())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_size": 8}, "image_size"),
        ({"views_per_object": 1}, "views_per_object"),
        ({"num_train_objects": -1}, "num_train_objects"),
        ({"num_ood_objects": 2.5}, "num_ood_objects"),
        ({"seed": -3}, "seed"),
        ({"max_angle": 2.0}, "max_angle"),
        ({"max_angle": 0.0}, "max_angle"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        P.ProceduralConfig(**kwargs)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="split"):
        PC.load_or_render(str(tmp_path), P.ProceduralConfig(num_train_objects=1), ("test",))
    with pytest.raises(ValueError, match="image_size"):
        P.render_objects(np.array([0]), 2, 4, seed=0)
    with pytest.raises(ValueError, match="object_ids"):
        P.render_objects(np.array([-1]), 2, 16, seed=0)
    with pytest.raises(ValueError, match="object_ids"):
        P.render_objects(np.array([1.5]), 2, 16, seed=0)


def _tiny_config(**kw: int) -> P.ProceduralConfig:
    base = dict(num_train_objects=3, num_val_objects=2, num_ood_objects=2, views_per_object=2)
    base.update(image_size=16, seed=0)
    base.update(kw)
    return P.ProceduralConfig(**base)


def test_cache_round_trip_reuse_and_new_file_on_changed_setting(tmp_path, monkeypatch, caplog):
    cfg = _tiny_config()
    first = PC.load_or_render(str(tmp_path), cfg, splits=("train", "val", "ood"))
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 3 and all(f.endswith(".npz") for f in files)
    assert first["ood"].object_ids.min() >= P.OOD_ID_OFFSET

    def fail(*args, **kwargs):
        raise AssertionError("re-rendered although a cache file exists")

    monkeypatch.setattr(P, "render_objects", fail)
    with caplog.at_level(logging.INFO, logger=PC.__name__):
        second = PC.load_or_render(str(tmp_path), cfg, splits=("train", "val", "ood"))
    assert "reusing cache" in caplog.text
    for split in first:
        for f in dataclasses.fields(P.ViewArrays):
            np.testing.assert_array_equal(
                getattr(first[split], f.name), getattr(second[split], f.name)
            )
    monkeypatch.undo()

    for changed in (
        _tiny_config(seed=1),
        _tiny_config(image_size=20),
        _tiny_config(views_per_object=3),
        _tiny_config(max_angle=np.pi / 4),
        _tiny_config(vary_lighting=False),
    ):
        assert PC.cache_path(str(tmp_path), changed, "train") not in {
            os.path.join(tmp_path, f) for f in files
        }
    PC.load_or_render(str(tmp_path), _tiny_config(seed=1), splits=("train",))
    assert len(os.listdir(tmp_path)) == 4
    # A split's file does not depend on the sizes of the other splits.
    assert PC.cache_path("d", _tiny_config(num_val_objects=9), "train") == PC.cache_path(
        "d", cfg, "train"
    )


def test_truncated_cache_is_rendered_again_with_a_warning(tmp_path):
    cfg = _tiny_config()
    good = PC.load_or_render(str(tmp_path), cfg, splits=("val",))["val"]
    path = PC.cache_path(str(tmp_path), cfg, "val")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=os.path.basename(path)):
        again = PC.load_or_render(str(tmp_path), cfg, splits=("val",))["val"]
    np.testing.assert_array_equal(again.images, good.images)
    # the damaged file was replaced by a good one, and no temporary file is left behind
    np.testing.assert_array_equal(
        PC._load_cache(path, PC._cache_settings(cfg, "val")).images, good.images
    )
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]


def test_write_3diebench_tree_layout(tmp_path):
    arrays = P.render_objects(np.array([0, 1, 13]), 3, 32, seed=0)
    root = str(tmp_path / "3DIEBench")
    write_3diebench_tree(arrays, root, "train")
    index = np.load(os.path.join(root, "train_images.npy"))
    labels = np.load(os.path.join(root, "train_labels.npy"))
    assert index.dtype.kind == "U" and index.shape == (3,)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, arrays.labels)
    assert len(set(index)) == 3
    for i, entry in enumerate(index):
        assert entry.startswith("/") and entry.endswith("/")
        synset, obj = entry.strip("/").split("/")
        assert synset == f"{arrays.labels[i]:08d}" and len(synset) == 8
        folder = os.path.join(root, entry[1:])  # as the official loader builds paths (spec §6.1)
        assert sorted(os.listdir(folder)) == sorted(
            [f"image_{k}.jpg" for k in range(3)] + [f"latent_{k}.npy" for k in range(3)]
        )
        for k in range(3):
            latent = np.load(os.path.join(folder, f"latent_{k}.npy"))
            assert latent.dtype == np.float64 and latent.shape == (7,)
            np.testing.assert_array_equal(latent.astype(np.float32), arrays.latents[i, k])
            with Image.open(os.path.join(folder, f"image_{k}.jpg")) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                pixels = np.asarray(im).astype(np.int32)
            assert pixels.shape == (32, 32, 3)
            assert np.abs(pixels - arrays.images[i, k]).mean() < 4.5  # JPEG q95 4:4:4: ~3
