"""Parameterised augmentations (spec §6.3): sampling, exact parameters, actions, batching."""

from __future__ import annotations

import dataclasses

import augment_reference as reference
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from seqjepa_jax.data import augment, view_makers

OBS, TARGET = augment.official_view_specs(32)
CIFAR_MEAN, CIFAR_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
NUM_DRAWS = 4000


def _binomial_ok(flags: np.ndarray, prob: float) -> bool:
    """Observed frequency within 5 standard deviations of prob (exact at 0 and 1)."""
    sd = np.sqrt(prob * (1 - prob) / flags.size)
    return abs(flags.mean() - prob) <= 5 * sd


def _draw_views(spec: augment.AugmentSpec, source_hw=(32, 32), seed: int = 0) -> dict:
    keys = jax.random.split(jax.random.key(seed), NUM_DRAWS)
    sample = jax.jit(jax.vmap(lambda k: augment.sample_view_params(k, spec, source_hw)))
    return {name: np.asarray(value) for name, value in sample(keys).items()}


def test_official_specs_follow_the_spec_table():
    assert [augment.official_blur_kernel_size(s) for s in (32, 64, 96, 224)] == [3, 7, 9, 23]
    obs, target = augment.official_view_specs(64)
    assert (obs.blur_prob, obs.solarize_prob, target.blur_prob, target.solarize_prob) == (
        1.0,
        0.0,
        0.1,
        0.2,
    )
    assert obs.blur_kernel_size == target.blur_kernel_size == 7
    for spec in (obs, target):
        assert (spec.scale, spec.ratio, spec.flip_prob, spec.interpolation) == (
            (0.2, 1.0),
            (3 / 4, 4 / 3),
            0.5,
            "bicubic",
        )
        assert (spec.jitter_prob, spec.gray_prob, spec.blur_sigma) == (0.8, 0.2, (0.1, 2.0))
        assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.4, 0.4, 0.2, 0.1)
    names = augment.param_names(obs)
    assert names == ("crop_i", "crop_j", "crop_h", "crop_w") + (
        "brightness",
        "contrast",
        "saturation",
        "hue",
        "blur_sigma",
    )
    no_blur, no_blur_target = augment.official_view_specs(32, use_blur=False)
    assert augment.num_params(obs) == 9 and augment.num_params(no_blur) == 8
    assert augment.param_names(no_blur) == names[:8]
    assert no_blur_target.solarize_prob == 0.2


@pytest.mark.parametrize(
    "field, value",
    [("flip_prob", 1.5), ("scale", (0.5, 0.2)), ("ratio", (0.0, 1.0)), ("blur_kernel_size", 4)],
)
def test_bad_spec_fields_raise(field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(OBS, **{field: value})


@pytest.mark.parametrize("source_hw", [(32, 32), (60, 20)])
def test_crop_distribution_matches_torchvision_get_params(source_hw):
    """Same law as RandomResizedCrop.get_params; (60, 20) rejects many draws, often falls back."""
    height, width = source_hw
    ours = _draw_views(OBS, source_hw)
    crops = np.stack([ours[k] for k in ("crop_i", "crop_j", "crop_h", "crop_w")], axis=1)
    rng = np.random.default_rng(0)
    ref = np.array(
        [reference.get_crop_params(rng, height, width, OBS.scale, OBS.ratio) for _ in crops]
    )
    i, j, h, w = crops.T
    assert np.all((h >= 1) & (h <= height) & (w >= 1) & (w <= width))
    assert np.all((i >= 0) & (i + h <= height) & (j >= 0) & (j + w <= width))
    # Rounding h and w to pixels moves the area fraction by at most this much.
    fraction = h * w / (height * width)
    slack = (np.sqrt(OBS.scale[0] * height * width * 4 / 3) + 0.25) / (height * width)
    assert fraction.min() >= OBS.scale[0] - slack and fraction.max() <= 1.0
    for column in range(4):
        result = stats.ks_2samp(crops[:, column], ref[:, column])
        assert result.pvalue > 1e-4, (column, result)
    for statistic in (lambda c: c[:, 2] * c[:, 3], lambda c: c[:, 3] / c[:, 2]):
        assert stats.ks_2samp(statistic(crops), statistic(ref)).pvalue > 1e-4
    # width / height < 3/4: full width, h = round(width / 0.75), centred.
    fallback = ((height - round(width / 0.75)) // 2, 0, round(width / 0.75), width)
    ours_fallback = np.all(crops == fallback, axis=1).mean()
    ref_fallback = np.all(ref == fallback, axis=1).mean()
    assert abs(ours_fallback - ref_fallback) < 0.03
    if source_hw == (60, 20):
        assert ref_fallback > 0.05  # the case really exercises the fallback


@pytest.mark.parametrize(
    "source_hw, ratio, expected",
    [((10, 40), (3 / 4, 4 / 3), (0, 13, 10, 13)), ((40, 10), (3 / 4, 4 / 3), (13, 0, 13, 10))],
)
def test_crop_fallback_is_the_central_crop(source_hw, ratio, expected):
    # scale > 1 never fits, so every draw takes the central fallback.
    crop = augment.sample_crop(jax.random.key(0), source_hw, (2.0, 3.0), ratio)
    assert tuple(int(v) for v in crop) == expected
    square = augment.sample_crop(jax.random.key(1), (20, 20), (2.0, 3.0), ratio)
    assert tuple(int(v) for v in square) == (0, 0, 20, 20)


@pytest.mark.parametrize("spec", [OBS, TARGET], ids=["observation", "target"])
def test_view_parameter_distributions(spec):
    draws = _draw_views(spec)
    for flag, prob in [
        ("flip", spec.flip_prob),
        ("jitter", spec.jitter_prob),
        ("gray", spec.gray_prob),
        ("blur", spec.blur_prob),
        ("solarize", spec.solarize_prob),
    ]:
        assert _binomial_ok(draws[flag], prob), (flag, draws[flag].mean())
    blurred = draws["blur"]
    sigma = draws["blur_sigma"]
    assert np.all(sigma[~blurred] == 0.0)
    assert np.all((sigma[blurred] >= 0.1) & (sigma[blurred] <= 2.0))
    assert stats.kstest(sigma[blurred], stats.uniform(0.1, 1.9).cdf).pvalue > 1e-3
    jittered = draws["jitter"]
    factors = np.stack([draws[k] for k in augment.JITTER_NAMES], axis=1)
    np.testing.assert_array_equal(
        factors[~jittered], np.tile([1.0, 1.0, 1.0, 0.0], (sum(~jittered), 1))
    )
    np.testing.assert_array_equal(
        draws["order"][~jittered], np.tile(np.arange(4), (sum(~jittered), 1))
    )
    bounds = [(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]
    for column, (lo, hi) in enumerate(bounds):
        values = factors[jittered, column]
        assert values.min() >= lo and values.max() <= hi
        assert stats.kstest(values, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
    orders = draws["order"][jittered]
    np.testing.assert_array_equal(np.sort(orders, axis=1), np.tile(np.arange(4), (len(orders), 1)))
    # Each op leads in about a quarter of the jittered views.
    assert all(_binomial_ok(orders[:, 0] == op, 0.25) for op in range(4))


def test_observation_views_are_never_solarised_nor_unblurred():
    draws = _draw_views(OBS, seed=1)
    assert not draws["solarize"].any() and draws["blur"].all()
    no_blur = _draw_views(augment.official_view_specs(32, use_blur=False)[1], seed=2)
    assert not no_blur["blur"].any() and np.all(no_blur["blur_sigma"] == 0.0)


# A spec where every flag is a coin flip, a 5-tap blur and a bilinear crop, to reach every branch.
_MIXED = dataclasses.replace(
    OBS, blur_prob=0.5, solarize_prob=0.5, gray_prob=0.5, blur_kernel_size=5
)


@pytest.mark.parametrize("spec", [_MIXED, dataclasses.replace(_MIXED, interpolation="bilinear")])
def test_apply_view_matches_the_reference_chain_for_its_recorded_params(spec):
    """The recorded params describe the pixels: a PIL/numpy/colorsys/scipy chain reproduces them."""
    rng = np.random.default_rng(5)
    image01 = rng.random((32, 40, 3)).astype(np.float32)
    out_size = 24
    keys = jax.random.split(jax.random.key(3), 16)
    params = jax.vmap(lambda k: augment.sample_view_params(k, spec, (32, 40)))(keys)
    views = jax.jit(jax.vmap(lambda p: augment.apply_view(image01, p, spec, out_size)))(params)
    params = {name: np.asarray(value) for name, value in params.items()}
    for flag in ("flip", "jitter", "gray", "blur", "solarize"):
        assert 0 < params[flag].sum() < len(keys), flag  # both branches are tested
    for index in range(len(keys)):
        view_params = {name: value[index] for name, value in params.items()}
        expected, before_solarize = reference.view(
            image01, view_params, spec.blur_kernel_size, out_size, spec.interpolation
        )
        # Skip pixels within float error of the solarize threshold (a discontinuity).
        settled = np.abs(before_solarize - 128 / 255) > 1e-4
        assert settled.mean() > 0.99
        np.testing.assert_allclose(
            np.asarray(views[index])[settled], expected[settled], atol=1e-4, err_msg=str(index)
        )


def test_augment_sequence_is_deterministic_given_its_params():
    image = np.random.default_rng(6).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    key = jax.random.key(7)
    obs = dataclasses.replace(OBS, blur_prob=1.0)
    # A bilinear target renders differently from the observations: the two-program path.
    target = dataclasses.replace(TARGET, blur_prob=0.0, solarize_prob=1.0, interpolation="bilinear")
    sequence = jax.jit(augment.augment_sequence, static_argnums=(2, 3, 4, 5))
    views, vectors = sequence(key, image, 4, obs, target, 16)
    assert views.shape == (4, 16, 16, 3) and vectors.shape == (4, 9)
    sample = jax.jit(augment.sample_sequence_params, static_argnums=(1, 2, 3, 4))
    params = sample(key, 4, obs, target, (20, 28))
    assert np.all(params["blur"][:3]) and not params["blur"][3] and params["solarize"][3]
    apply = jax.jit(augment.apply_sequence, static_argnums=(2, 3, 4))
    again, again_vectors = apply(image.astype(np.float32) / 255.0, params, obs, target, 16)
    np.testing.assert_allclose(np.asarray(again), np.asarray(views), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(again_vectors), np.asarray(vectors))
    for index in range(4):
        single = {name: value[index] for name, value in params.items()}
        np.testing.assert_array_equal(
            augment.action_vector(single, obs), np.asarray(vectors[index])
        )
    assert np.all(vectors[:3, 8] > 0) and vectors[3, 8] == 0  # sigma slot from the right spec


def _batch(batch: int, seed: int, hw=(32, 32)):
    keys = view_makers.example_keys(seed, 0, 0, jnp.arange(batch))
    images = np.random.default_rng(seed).integers(0, 256, (batch, *hw, 3), dtype=np.uint8)
    return keys, images


def test_augment_batch_is_per_example_and_compiles_once():
    """Halves of a batch (raw uint32 keys) equal the full batch; one compilation per shape."""
    keys, images = _batch(4, seed=8)
    args = (4, OBS, TARGET, 32, CIFAR_MEAN, CIFAR_STD)
    views, params = augment.augment_batch(keys, images, *args)
    assert views.shape == (4, 4, 32, 32, 3) and views.dtype == jnp.float32
    assert params.shape == (4, 4, 9)
    raw_keys = keys
    before = augment.augment_batch._cache_size()
    halves = [
        augment.augment_batch(raw_keys[s], images[s], *args) for s in (slice(0, 2), slice(2, 4))
    ]
    assert augment.augment_batch._cache_size() == before + 1  # the second half reuses it
    np.testing.assert_array_equal(np.concatenate([h[1] for h in halves]), params)
    # Pixels agree to float32 rounding (XLA may vectorise exp/division differently per size).
    np.testing.assert_allclose(np.concatenate([h[0] for h in halves]), views, atol=1e-5)
    assert not np.array_equal(halves[0][1], halves[1][1])
    unnormalised = np.asarray(views) * np.array(CIFAR_STD) + np.array(CIFAR_MEAN)
    assert unnormalised.min() >= -1e-5 and unnormalised.max() <= 1 + 1e-5


def test_example_keys_depend_on_the_global_index_not_the_batch():
    full = view_makers.example_keys(3, 1, 7, jnp.arange(6))
    part = view_makers.example_keys(3, 1, 7, jnp.array([4, 5]))
    np.testing.assert_array_equal(part, full[4:])
    base = jax.random.fold_in(jax.random.PRNGKey(3), 1)
    expected = jax.random.fold_in(jax.random.fold_in(base, 7), 4)
    np.testing.assert_array_equal(part[0], expected)
    per_example_epochs = view_makers.example_keys(3, 1, jnp.full(6, 7), jnp.arange(6))
    np.testing.assert_array_equal(per_example_epochs, full)
    other_epoch = view_makers.example_keys(3, 1, 8, jnp.arange(6))
    other_stream = view_makers.example_keys(3, 2, 7, jnp.arange(6))
    for other in (other_epoch, other_stream):
        assert not np.any(np.all(np.asarray(other) == np.asarray(full), axis=1))


def test_augment_batch_rejects_bad_inputs():
    keys, images = _batch(2, seed=11)
    args = (OBS, TARGET, 32, CIFAR_MEAN, CIFAR_STD)
    with pytest.raises(ValueError, match="uint8"):
        augment.augment_batch(keys, images.astype(np.float32), 4, *args)
    with pytest.raises(ValueError, match="one key per"):
        augment.augment_batch(keys[:1], images, 4, *args)
    with pytest.raises(ValueError, match="num_views"):
        augment.augment_batch(keys, images, 1, *args)
    no_blur_target = augment.official_view_specs(32, use_blur=False)[1]
    with pytest.raises(ValueError, match="use_blur"):
        augment.augment_batch(keys, images, 4, OBS, no_blur_target, 32, CIFAR_MEAN, CIFAR_STD)


def test_action_scale_is_the_width_of_each_sampling_range():
    np.testing.assert_allclose(
        augment.action_scale(OBS, (32, 48)), [32, 48, 32, 48, 0.8, 0.8, 0.4, 0.2, 2.0], rtol=1e-6
    )
    wide = dataclasses.replace(OBS, brightness=1.5, hue=0.0, use_blur=False)
    np.testing.assert_allclose(
        augment.action_scale(wide, (64, 64)), [64, 64, 64, 64, 2.5, 0.8, 0.4, 1.0], rtol=1e-6
    )


def test_actions_are_scaled_differences_of_consecutive_views():
    params = np.random.default_rng(12).normal(size=(3, 4, 9)).astype(np.float32)
    scale = augment.action_scale(OBS, (32, 32))
    actions = np.asarray(augment.actions_from_params(params, scale=scale))
    assert actions.shape == (3, 3, 9)
    for j in range(3):
        np.testing.assert_allclose(actions[:, j], (params[:, j + 1] - params[:, j]) / scale, 1e-6)
    # An observation action does not depend on the target view.
    changed = params.copy()
    changed[:, -1] += 5.0
    changed_actions = np.asarray(augment.actions_from_params(changed, scale=scale))
    np.testing.assert_array_equal(changed_actions[:, :-1], actions[:, :-1])
    with pytest.raises(ValueError, match="action_scale"):
        augment.actions_from_params(params)


def test_q4_flag_matches_torch_f_normalize_along_views():
    params = np.abs(np.random.default_rng(13).normal(size=(2, 4, 9))) * 10
    params[0, :, 8] = 0.0  # sigma 0 in every view: stays 0 thanks to eps
    norm = np.maximum(np.linalg.norm(params, axis=1, keepdims=True), 1e-12)
    normalised = params / norm
    expected = normalised[:, 1:] - normalised[:, :-1]
    actions = np.asarray(augment.actions_from_params(params, normalize_across_views=True))
    np.testing.assert_allclose(actions, expected, atol=1e-6)
    assert np.all(actions[0, :, 8] == 0.0)
    # Q4's defect: observation actions change when only the target view changes.
    changed = params.copy()
    changed[:, -1] *= 3
    changed_actions = np.asarray(augment.actions_from_params(changed, normalize_across_views=True))
    assert not np.allclose(changed_actions[:, 0], actions[:, 0])
