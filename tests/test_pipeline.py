"""tf.data pipeline on in-memory views: batch contract, sampling, determinism, resume, sharding."""

import dataclasses
import itertools

import jax
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from seqjepa_jax.data import pipeline
from seqjepa_jax.data.sources import ArraySource


@dataclasses.dataclass(frozen=True)
class FakeViewArrays:
    """Same fields as seqjepa_jax.data.procedural.ViewArrays."""

    images: np.ndarray
    latents: np.ndarray
    labels: np.ndarray
    object_ids: np.ndarray


def make_arrays(n=12, v=8, size=16, seed=0):
    rng = np.random.default_rng(seed)
    latents = np.concatenate(
        [
            rng.uniform(-np.pi / 2, np.pi / 2, (n, v, 3)),
            rng.uniform(0, 1, (n, v, 1)),
            rng.uniform(0, np.pi / 4, (n, v, 1)),
            rng.uniform(0, 2 * np.pi, (n, v, 1)),
            rng.uniform(0, 1, (n, v, 1)),
        ],
        axis=-1,
    ).astype(np.float32)
    return FakeViewArrays(
        images=rng.integers(0, 256, (n, v, size, size, 3), dtype=np.uint8),
        latents=latents,
        labels=(np.arange(n) % 5).astype(np.int32),
        object_ids=(1000 + np.arange(n)).astype(np.int32),
    )


ARRAYS = make_arrays()
SOURCE = ArraySource(ARRAYS)
MEAN, STD = np.array(pipeline.THREEDIEBENCH_MEAN), np.array(pipeline.THREEDIEBENCH_STD)


def take(ds, n=None):
    return list(itertools.islice(ds.as_numpy_iterator(), n))


def train(n_steps, source=SOURCE, **kw):
    args = dict(num_views=4, global_batch_size=4, latent_type="rotcolor", seed=3)
    args.update(process_index=0, process_count=1)
    args.update(kw)
    return take(pipeline.train_batches(source, **args), n_steps)


def scipy_rel(lat):
    rots = Rotation.from_euler("xyz", lat[:, :3])
    return np.stack([(rots[k].inv() * rots[k + 1]).as_quat() for k in range(len(lat) - 1)])


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_contract_and_content():
    steps = pipeline.steps_per_epoch(12, 4)
    batches = train(2 * steps)
    expected = {
        "views": ((4, 4, 16, 16, 3), np.float32),
        "actions": ((4, 3, 6), np.float32),
        "label": ((4,), np.int32),
        "latents": ((4, 4, 7), np.float32),
        "object_index": ((4,), np.int32),
        "view_ids": ((4, 4), np.int32),
        "mask": ((4,), np.float32),
    }
    assert {k: (v.shape, v.dtype) for k, v in batches[0].items()} == expected
    for b in batches:
        np.testing.assert_array_equal(b["mask"], 1.0)
        for i, obj in enumerate(b["object_index"]):
            ids = b["view_ids"][i]
            assert len(set(ids.tolist())) == 4  # distinct views within a sequence
            np.testing.assert_array_equal(b["latents"][i], ARRAYS.latents[obj, ids])
            assert b["label"][i] == ARRAYS.labels[obj]
            want = (ARRAYS.images[obj, ids] / 255.0 - MEAN) / STD
            np.testing.assert_allclose(b["views"][i], want, atol=1e-5)
            rel = scipy_rel(ARRAYS.latents[obj, ids])
            np.testing.assert_allclose(b["actions"][i, :, :4], rel, atol=2e-7)
            hues = ARRAYS.latents[obj, ids][:, [3, 6]]
            np.testing.assert_allclose(b["actions"][i, :, 4:], np.diff(hues, axis=0), atol=1e-6)
    # An epoch visits steps * batch distinct objects.
    for e in range(2):
        objs = np.concatenate([b["object_index"] for b in batches[e * steps : (e + 1) * steps]])
        assert len(set(objs.tolist())) == len(objs) == 12


def test_fresh_views_each_epoch_and_seed_determinism():
    steps = pipeline.steps_per_epoch(12, 4)
    batches = train(4 * steps)
    tuples = {}  # object -> list of view tuples, one per epoch
    for b in batches:
        for obj, ids in zip(b["object_index"], b["view_ids"]):
            tuples.setdefault(int(obj), []).append(tuple(ids.tolist()))
    assert all(len(t) == 4 for t in tuples.values())
    # No Q5 repetition: an object's tuple changes between epochs (P(same) = 1/1680 each).
    assert sum(len(set(t)) == 1 for t in tuples.values()) == 0
    # Random order: the target (last view) is not always the largest id.
    assert any(t[-1] != max(t) for ts in tuples.values() for t in ts)
    # All views of the source get used.
    assert {i for ts in tuples.values() for t in ts for i in t} == set(range(8))
    # Object order differs between epochs.
    orders = [
        np.concatenate([b["object_index"] for b in batches[e * steps : (e + 1) * steps]])
        for e in (0, 1)
    ]
    assert not np.array_equal(*orders)

    assert_batches_equal(train(4 * steps), batches)  # same seed, same data
    other = train(steps, seed=4)
    assert not np.array_equal(other[0]["view_ids"], batches[0]["view_ids"])


def test_resume_equals_uninterrupted():
    full = train(9)  # 3 steps per epoch: crosses two epoch boundaries
    for s in (1, 3, 5):
        assert_batches_equal(train(9 - s, start_step=s), full[s:])
    # num_epochs counts from epoch 0, so a resumed finite stream ends at the same step.
    assert len(train(None, num_epochs=2, start_step=4)) == 2


def test_hosts_disjoint_and_independent_of_host_count():
    kw = dict(global_batch_size=6, num_views=3, latent_type="rot")
    one = train(4, **kw)  # 12 // 6 = 2 steps per epoch
    hosts = [train(4, process_index=p, process_count=3, **kw) for p in range(3)]
    for t in range(4):
        local = [h[t] for h in hosts]
        assert all(b["views"].shape[0] == 2 for b in local)
        objs = [set(b["object_index"].tolist()) for b in local]
        assert sum(len(o) for o in objs) == 6 and len(set.union(*objs)) == 6  # disjoint
        # The global batch has the same objects, with the same views, as on one host.
        glob = {int(o): tuple(v) for b in local for o, v in zip(b["object_index"], b["view_ids"])}
        ref = {int(o): tuple(v) for o, v in zip(one[t]["object_index"], one[t]["view_ids"])}
        assert glob == ref


def test_uneven_hosts_run_the_same_number_of_steps():
    source = ArraySource(make_arrays(n=11, v=4, size=8))
    kw = dict(num_views=2, global_batch_size=4, num_epochs=1, process_count=2, source=source)
    counts = [len(train(None, process_index=p, **kw)) for p in range(2)]
    assert counts == [pipeline.steps_per_epoch(11, 4, 2)] * 2 == [2, 2]


def test_resize_matches_pil_and_normalisation():
    batch = train(1, image_size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))[0]
    assert batch["views"].shape == (4, 4, 8, 8, 3)
    obj, ids = batch["object_index"][0], batch["view_ids"][0]
    for j, k in enumerate(ids):
        pil = Image.fromarray(ARRAYS.images[obj, k]).resize((8, 8), Image.BILINEAR)
        diff = np.abs(batch["views"][0, j] * 255.0 - np.asarray(pil, np.float64))
        assert diff.max() <= 1.0, diff.max()  # antialiased bilinear: within one level of PIL
    # Integer levels, as PIL's uint8 output.
    np.testing.assert_allclose(batch["views"] * 255.0, np.round(batch["views"] * 255.0), atol=1e-3)


def test_eval_padding_mask_and_fixed_views():
    kw = dict(num_views=3, global_batch_size=8, seed=5)
    one = take(pipeline.eval_batches(SOURCE, process_index=0, process_count=1, **kw))
    assert len(one) == 2  # ceil(12 / 8)
    assert one[0]["actions"].shape == (8, 2, 6)  # rotcolor by default, as official eval
    masks = np.concatenate([b["mask"] for b in one])
    objs = np.concatenate([b["object_index"] for b in one])
    np.testing.assert_array_equal(masks, [1] * 12 + [0] * 4)
    np.testing.assert_array_equal(objs, list(range(12)) + [-1] * 4)
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in one])[12:], -1)
    assert_batches_equal(take(pipeline.eval_batches(SOURCE, process_count=1, **kw)), one)

    hosts = [
        take(pipeline.eval_batches(SOURCE, process_index=p, process_count=2, **kw)) for p in (0, 1)
    ]
    assert [len(h) for h in hosts] == [2, 2]
    real = {}
    for h in hosts:
        for b in h:
            assert b["views"].shape[0] == 4
            for o, v, m in zip(b["object_index"], b["view_ids"], b["mask"]):
                if m:
                    assert int(o) not in real
                    real[int(o)] = tuple(v)
    ref = real_views(one)
    assert real == ref  # every object once, same views whatever the sharding
    # The views of an object depend on the seed only, not on the batch size.
    small = take(pipeline.eval_batches(SOURCE, process_count=1, **{**kw, "global_batch_size": 5}))
    assert real_views(small) == ref


def real_views(batches):
    keys = ("object_index", "view_ids", "mask")
    return {int(o): tuple(v) for b in batches for o, v, m in zip(*[b[k] for k in keys]) if m}


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_views=9), r"num_views=9.*8 views per object.*M_tr"),
        (dict(num_views=1), "at least one observation"),
        (dict(global_batch_size=5, process_count=2), "multiple of the process count 2"),
        (dict(global_batch_size=16), "Only 12 objects"),
        (dict(latent_type="rgb"), "valid latent types"),
    ],
)
def test_validation_errors(kw, match):
    args = dict(num_views=4, global_batch_size=4, process_count=1, process_index=0)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        pipeline.train_batches(SOURCE, **args)


def test_array_source_rejects_bad_arrays():
    bad = dataclasses.replace(ARRAYS, latents=ARRAYS.latents[..., :6])
    with pytest.raises(ValueError, match="latents"):
        ArraySource(bad)


def test_global_batch_iterator_single_device():
    import tensorflow as tf

    assert tf.config.get_visible_devices("GPU") == []
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    local = train(3)
    out = list(pipeline.global_batch_iterator(iter(local), mesh))
    assert len(out) == 3
    for g, b in zip(out, local):
        for k in b:
            assert isinstance(g[k], jax.Array) and g[k].shape == b[k].shape
            assert g[k].sharding.spec == jax.sharding.PartitionSpec("data")
            np.testing.assert_array_equal(np.asarray(g[k]), b[k])
    assert len(list(pipeline.global_batch_iterator(iter(local), mesh, buffer_size=0))) == 3
