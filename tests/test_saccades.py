"""Saccade sampling, glimpses and position actions (spec §3.2, §6.4.2, §6.4.3; Q19, Q20, Q25)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as torch_f

from seqjepa_jax.data import saccades
from seqjepa_jax.data.glimpses import extract_glimpses, glimpse_sample_coordinates

# ------------------------------------------------------------------------------------------------
# Fixation sampling (spec §6.4.2 step 1)


def _draw_many(saliency, num_draws, num_fixations, radius, seed=0, **flags):
    keys = jax.random.split(jax.random.key(seed), num_draws)
    draw = jax.vmap(
        lambda k: saccades.sample_fixations(k, saliency, num_fixations, radius, **flags)
    )
    return np.asarray(draw(keys))


def _assert_no_revisit(fixations, radius):
    """No later fixation inside the inclusive (2R+1)^2 window of an earlier one."""
    for i, j in itertools.combinations(range(fixations.shape[1]), 2):
        inside = np.all(np.abs(fixations[:, j] - fixations[:, i]) <= radius, axis=-1)
        assert not inside.any(), f"fixation {j} fell in the window of fixation {i}"


@pytest.mark.parametrize("hot_block", [False, True])
def test_inhibition_of_return_never_revisits_a_window(hot_block):
    rng = np.random.default_rng(0)
    saliency = rng.uniform(0.5, 1.0, (20, 20))
    if hot_block:  # almost all mass in one block: IoR must push later fixations out of it
        saliency = np.full((20, 20), 1e-3)
        saliency[3:9, 10:16] = 1e3
    saliency = jnp.asarray(saliency / saliency.sum(), jnp.float32)
    radius, num_fixations = 2, 8  # 8 windows of 25 px never cover the 400 px map
    fixations = _draw_many(saliency, 300, num_fixations, radius)
    assert fixations.dtype == np.int32 and fixations.shape == (300, num_fixations, 2)
    assert fixations.min() >= 0 and fixations.max() < 20
    _assert_no_revisit(fixations, radius)
    if hot_block:  # the first fixation lands in the block; the 2nd..4th also fit in the block
        assert np.all((fixations[:, 0, 0] >= 3) & (fixations[:, 0, 0] < 9))


def test_fully_suppressed_map_becomes_uniform():
    # R = 5 on a 5x5 map inhibits everything after the first draw: every pixel then holds the
    # 1e-16 floor, so the second fixation is uniform, revisits included.
    saliency = jnp.asarray(np.random.default_rng(1).uniform(0.1, 1.0, (5, 5)), jnp.float32)
    second = _draw_many(saliency, 5000, 2, 5)[:, 1]
    counts = np.bincount(second[:, 0] * 5 + second[:, 1], minlength=25)
    assert scipy.stats.chisquare(counts).pvalue > 1e-4


def test_one_hot_region_gets_the_first_fixation():
    saliency = np.zeros((12, 10), np.float32)
    saliency[7:9, 2:4] = 0.25
    first = _draw_many(jnp.asarray(saliency), 200, 3, 1)[:, 0]
    assert np.all((first[:, 0] >= 7) & (first[:, 0] <= 8) & (first[:, 1] >= 2) & (first[:, 1] <= 3))
    # row = index // w, col = index % w on a non-square map: a single hot pixel is hit exactly.
    single = np.zeros((4, 5), np.float32)
    single[2, 3] = 1.0
    np.testing.assert_array_equal(_draw_many(jnp.asarray(single), 20, 1, 0)[:, 0], [[2, 3]] * 20)


def test_draws_follow_the_map_and_the_ior_renormalisation():
    # With R = 0 the second draw is from p_j / (1 - p_i): the pair (i, j) has probability
    # p_i p_j / (1 - p_i). Chi-square of 30k pairs against it over the 72 off-diagonal cells.
    p = np.arange(1, 10, dtype=np.float64) / 45.0
    fixations = _draw_many(jnp.asarray(p.reshape(3, 3), jnp.float32), 30000, 2, 0, seed=3)
    flat = fixations[..., 0] * 3 + fixations[..., 1]
    assert np.all(flat[:, 0] != flat[:, 1])
    observed = np.zeros((9, 9))
    np.add.at(observed, (flat[:, 0], flat[:, 1]), 1)
    expected = 30000 * p[:, None] * p[None, :] / (1.0 - p[:, None])
    off = ~np.eye(9, dtype=bool)
    statistic = np.sum((observed[off] - expected[off]) ** 2 / expected[off])
    assert statistic < scipy.stats.chi2.ppf(0.9999, df=71)
    first_counts = np.bincount(flat[:, 0], minlength=9)
    assert scipy.stats.chisquare(first_counts, 30000 * p).pvalue > 1e-4


def test_uniform_draws_ignore_the_map_and_officially_ignore_ior():
    saliency = jnp.asarray(np.eye(4, 6, dtype=np.float32))  # ignored without use_saliency
    fixations = _draw_many(saliency, 6000, 2, 0, use_saliency=False)
    counts = np.bincount(fixations[:, 0, 0] * 6 + fixations[:, 0, 1], minlength=24)
    assert counts.size == 24 and scipy.stats.chisquare(counts).pvalue > 1e-4
    # Official: uniform draws ignore the inhibited map, so a pixel repeats with probability 1/24.
    repeats = np.all(fixations[:, 0] == fixations[:, 1], axis=-1).sum()
    assert 150 < repeats < 360  # expected 250
    respected = _draw_many(saliency, 6000, 2, 0, use_saliency=False, uniform_respects_ior=True)
    assert not np.all(respected[:, 0] == respected[:, 1], axis=-1).any()
    counts = np.bincount(respected[:, 0, 0] * 6 + respected[:, 0, 1], minlength=24)
    assert scipy.stats.chisquare(counts).pvalue > 1e-4


def test_without_ior_fixations_may_repeat():
    saliency = jnp.asarray([[0.9, 0.1]], jnp.float32)
    fixations = _draw_many(saliency, 500, 3, 1, inhibition_of_return=False)
    assert np.all(fixations[:, :, 1] == 0, axis=1).mean() > 0.6  # 0.729 expected


# ------------------------------------------------------------------------------------------------
# Glimpses (spec §6.4.2 step 3, Q20)


def _numpy_bilinear(image, y, x):
    """Bilinear sample at pixel-index coordinates (y, x); neighbours outside the image are 0."""
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    value = np.zeros(image.shape[-1])
    for yy, wy in ((y0, 1.0 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1.0 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < image.shape[0] and 0 <= xx < image.shape[1]:
                value += wy * wx * image[yy, xx]
    return value


def _numpy_glimpse(image, centre_y, centre_x, size):
    offsets = -size / 2.0 + np.arange(size) * size / (size - 1.0)
    return np.array(
        [
            [_numpy_bilinear(image, centre_y - 0.5 + oy, centre_x - 0.5 + ox) for ox in offsets]
            for oy in offsets
        ]
    )


def test_glimpses_equal_a_direct_bilinear_sample():
    image = np.random.default_rng(0).uniform(size=(12, 10, 2))
    centres = np.array([[0, 0], [11, 9], [5, 3], [2, 8], [6.25, 4.5]])
    for size in (5, 6):
        glimpses = np.asarray(extract_glimpses(jnp.asarray(image, jnp.float32), centres, size))
        assert glimpses.shape == (len(centres), size, size, 2)
        for glimpse, (row, col) in zip(glimpses, centres):
            np.testing.assert_allclose(glimpse, _numpy_glimpse(image, row, col, size), atol=2e-6)


def test_samples_outside_the_image_are_zero():
    image = jnp.ones((16, 16, 3), jnp.float32)
    glimpse = np.asarray(extract_glimpses(image, np.array([[0.0, 15.0]]), 8))[0]
    ys, xs = (np.asarray(c)[0] for c in glimpse_sample_coordinates(np.array([[0.0, 15.0]]), 8))
    np.testing.assert_allclose(ys, -4.5 + np.arange(8) * 8 / 7, atol=1e-6)
    outside = (ys[:, None] <= -1) | (xs[None, :] >= 16)
    inside = (ys[:, None] >= 0) & (xs[None, :] <= 15)
    assert outside.any() and inside.any()
    assert np.all(glimpse[outside] == 0.0)
    np.testing.assert_allclose(glimpse[inside], 1.0, atol=1e-6)


def _official_patches(image_hwc, centres, size):
    """The official extraction written out in torch from spec §6.4.2 step 3: normalised grid
    linspace(-1, 1, F) * F / S + 2c / S - 1 with row on grid-x and col on grid-y (meshgrid 'ij'),
    grid_sample(bilinear, zeros, align_corners=False), rotate(-90) (clockwise) and hflip."""
    side = image_hwc.shape[0]
    base = torch.linspace(-1, 1, size)
    grid_x, grid_y = torch.meshgrid(base, base, indexing="ij")
    normalised = torch.tensor(centres, dtype=torch.float32) * 2 / side - 1
    grid_x = grid_x[None] * (size / side) + normalised[:, 0, None, None]
    grid_y = grid_y[None] * (size / side) + normalised[:, 1, None, None]
    grid = torch.stack([grid_x, grid_y], -1)
    images = torch.tensor(image_hwc).permute(2, 0, 1)[None].repeat(len(centres), 1, 1, 1)
    out = torch_f.grid_sample(
        images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    out = torch.flip(torch.rot90(out, k=-1, dims=(-2, -1)), dims=(-1,))
    return out.permute(0, 2, 3, 1).numpy()


def test_transposed_centre_reproduces_the_official_grid_sample():
    image = np.random.default_rng(2).uniform(size=(20, 20, 3)).astype(np.float32)
    centres = np.array([[3, 14], [0, 19], [10, 10], [17, 2]], np.float32)
    official = _official_patches(image, centres, 8)
    ours = np.asarray(extract_glimpses(jnp.asarray(image), centres, 8, transposed_centre=True))
    np.testing.assert_allclose(ours, official, atol=1e-5)
    # The official patch is centred at (col, row) (Q20); the default centres it at (row, col).
    swapped = np.asarray(extract_glimpses(jnp.asarray(image), centres[:, ::-1].copy(), 8))
    np.testing.assert_allclose(swapped, official, atol=1e-5)
    default = np.asarray(extract_glimpses(jnp.asarray(image), centres, 8))
    assert np.abs(default - official).max() > 0.1


def test_quantize_like_pil_matches_torch_byte_truncation():
    values = np.concatenate(
        [np.random.default_rng(3).uniform(size=2000), np.arange(256) / 255.0, [0.0, 1.0, 0.5]]
    ).astype(np.float32)
    levels = torch.tensor(values).mul(255).byte().numpy()  # ToPILImage's uint8 levels
    ours = np.asarray(saccades.quantize_like_pil(jnp.asarray(values)))
    np.testing.assert_array_equal(np.round(ours * 255).astype(np.uint8), levels)
    # ToTensor's / 255, up to one float32 ulp (XLA may multiply by 1/255 instead of dividing).
    np.testing.assert_allclose(ours, levels.astype(np.float32) / 255, rtol=2e-7, atol=0)


# ------------------------------------------------------------------------------------------------
# Sequences, batches and actions (spec §3.2, §6.4.2 steps 2-5, §6.4.3)

_SEQ = {"num_saccades": 4, "fovea_size": 6, "inhibition_radius": 2}


def _inputs(batch=6, height=12, width=16, seed=0):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.uniform(size=(batch, height, width, 3)), jnp.float32)
    saliency = rng.uniform(0.1, 1.0, (batch, height, width))
    saliency = jnp.asarray(saliency / saliency.sum(axis=(1, 2), keepdims=True), jnp.float32)
    return jax.random.split(jax.random.key(seed), batch), images, saliency


def test_sequence_positions_follow_the_sampling_order_and_image_size():
    keys, images, saliency = _inputs()
    glimpses, positions = saccades.saccade_sequence(keys[0], images[0], saliency[0], **_SEQ)
    fixations = saccades.sample_fixations(keys[0], saliency[0], 4, 2)
    np.testing.assert_allclose(positions, np.asarray(fixations) / np.array([12.0, 16.0]), atol=0)
    assert positions.dtype == jnp.float32 and glimpses.shape == (4, 6, 6, 3)
    assert np.all((np.asarray(positions) >= 0) & (np.asarray(positions) < 1))
    np.testing.assert_allclose(glimpses, extract_glimpses(images[0], fixations, 6), atol=1e-6)


def test_positions_stay_in_unit_interval_over_many_draws():
    keys, images, saliency = _inputs(batch=64, seed=5)
    _, positions = saccades.saccade_batch(keys, images, None, use_saliency=False, **_SEQ)
    positions = np.asarray(positions)
    assert positions.min() >= 0.0 and positions.max() <= 15.0 / 16.0
    np.testing.assert_allclose(positions[..., 0] * 12, np.round(positions[..., 0] * 12), atol=1e-5)


def test_batch_equals_per_example_sequences_and_any_batch_split():
    keys, images, saliency = _inputs()
    views, positions = saccades.saccade_batch(keys, images, saliency, **_SEQ)
    assert views.shape == (6, 4, 6, 6, 3) and positions.shape == (6, 4, 2)
    for b in range(6):
        glimpses, pos = saccades.saccade_sequence(keys[b], images[b], saliency[b], **_SEQ)
        np.testing.assert_allclose(views[b], glimpses, atol=1e-6)
        np.testing.assert_array_equal(positions[b], pos)
    halves = [saccades.saccade_batch(keys[s], images[s], saliency[s], **_SEQ) for s in (
        slice(0, 2), slice(2, 6))]  # fmt: skip
    np.testing.assert_allclose(views, np.concatenate([h[0] for h in halves]), atol=1e-6)
    np.testing.assert_array_equal(positions, np.concatenate([h[1] for h in halves]))


def test_stl10_pixel_pipeline_quantizes_then_normalises():
    keys, images, saliency = _inputs()
    plain, positions = saccades.saccade_batch(keys, images, saliency, **_SEQ)
    views, positions2 = saccades.saccade_batch(
        keys, images, saliency, quantize_uint8=True, mean=saccades.STL10_MEAN,
        std=saccades.STL10_STD, **_SEQ,
    )  # fmt: skip
    expected = (np.floor(np.asarray(plain) * 255) / 255 - np.array(saccades.STL10_MEAN)) / np.array(
        saccades.STL10_STD
    )
    np.testing.assert_allclose(views, expected, atol=1e-4)
    np.testing.assert_array_equal(positions, positions2)
    as_uint8 = np.round(np.asarray(images) * 255).astype(np.uint8)
    from_uint8, _ = saccades.saccade_batch(keys, jnp.asarray(as_uint8), saliency, **_SEQ)
    from_float, _ = saccades.saccade_batch(keys, jnp.asarray(as_uint8 / 255.0), saliency, **_SEQ)
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-6)


def test_imagenet_glimpses_come_from_the_normalised_image():
    keys, images, _ = _inputs(batch=2)
    corner = np.zeros((2, 12, 16), np.float32)
    corner[:, 0, 0] = 1.0  # the first fixation is the top-left pixel
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    views, _ = saccades.saccade_batch(
        keys, images, jnp.asarray(corner), glimpse_from="normalised", mean=mean, std=std, **_SEQ
    )
    normalised = (np.asarray(images) - np.array(mean)) / np.array(std)
    for b in range(2):
        expected = extract_glimpses(jnp.asarray(normalised[b], jnp.float32), np.zeros((1, 2)), 6)
        np.testing.assert_allclose(views[b, :1], expected, atol=1e-5)
    assert np.all(np.asarray(views)[:, 0, 0, 0] == 0.0)  # padding = the mean colour
    unit, _ = saccades.saccade_batch(keys, images, jnp.asarray(corner), mean=mean, std=std, **_SEQ)
    np.testing.assert_allclose(unit[:, 0, 0, 0], np.tile(-np.array(mean) / np.array(std), (2, 1)))


def test_positions_to_actions_are_consecutive_differences():
    positions = np.array([[[0.1, 0.2], [0.4, 0.1], [0.0, 0.9]]], np.float32)
    np.testing.assert_allclose(
        saccades.positions_to_actions(positions), [[[0.3, -0.1], [-0.4, 0.8]]], atol=1e-7
    )
    assert isinstance(saccades.positions_to_actions(jnp.asarray(positions)), jax.Array)
    with pytest.raises(ValueError, match="V >= 2"):
        saccades.positions_to_actions(positions[:, :1])


def test_bad_inputs_raise_clear_errors():
    keys, images, saliency = _inputs(batch=2)
    with pytest.raises(ValueError, match="needs a saliency map"):
        saccades.saccade_batch(keys, images, None, **_SEQ)
    with pytest.raises(ValueError, match="like the image"):
        saccades.saccade_batch(keys, images, saliency[:, :6], **_SEQ)
    with pytest.raises(ValueError, match="one PRNG key per image"):
        saccades.saccade_batch(keys[:1], images, saliency, **_SEQ)
    with pytest.raises(ValueError, match="glimpse_from"):
        saccades.saccade_batch(keys, images, saliency, glimpse_from="raw", **_SEQ)
    with pytest.raises(ValueError, match="quantize_uint8=False"):
        saccades.saccade_batch(
            keys, images, saliency, glimpse_from="normalised", quantize_uint8=True,
            mean=saccades.STL10_MEAN, std=saccades.STL10_STD, **_SEQ,
        )  # fmt: skip
    with pytest.raises(ValueError, match="one per channel"):
        saccades.saccade_batch(keys, images, saliency, mean=(0.5,), std=(0.5,), **_SEQ)
    with pytest.raises(ValueError, match="num_saccades"):
        saccades.saccade_sequence(keys[0], images[0], saliency[0], num_saccades=1, fovea_size=4)
    with pytest.raises(ValueError, match="fovea_size"):
        saccades.saccade_sequence(keys[0], images[0], saliency[0], num_saccades=3, fovea_size=1)
    with pytest.raises(ValueError, match="inhibition_radius"):
        saccades.sample_fixations(keys[0], saliency[0], 3, -1)
    with pytest.raises(ValueError, match="one \\(h, w\\) saliency map"):
        saccades.sample_fixations(keys[0], saliency, 3, 1)
    with pytest.raises(ValueError, match="float image"):
        extract_glimpses(jnp.zeros((8, 8, 3), jnp.uint8), np.zeros((1, 2)), 4)


def test_default_inhibition_radius_is_half_the_fovea():
    keys, images, saliency = _inputs(batch=1)
    default = saccades.saccade_sequence(
        keys[0], images[0], saliency[0], num_saccades=4, fovea_size=6
    )
    radius3 = saccades.saccade_sequence(
        keys[0], images[0], saliency[0], num_saccades=4, fovea_size=6, inhibition_radius=3
    )
    np.testing.assert_array_equal(default[1], radius3[1])
    positions = np.asarray(default[1]) * np.array([12, 16])
    for i, j in itertools.combinations(range(4), 2):
        assert np.any(np.abs(positions[j] - positions[i]) > 3)
