"""Pixel ops of the augmentations against independent references: PIL, numpy, colorsys, scipy."""

from __future__ import annotations

import augment_reference as reference_ops
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageOps
from scipy import ndimage

from seqjepa_jax.data import image_ops

# (top, left, height, width, out_h, out_w): up- and down-sampling, full image, thin strips.
_BOXES = [
    (3, 5, 20, 17, 32, 32),
    (0, 0, 32, 40, 16, 12),
    (1, 2, 30, 37, 11, 9),
    (5, 7, 6, 9, 32, 32),
    (31, 0, 1, 40, 4, 8),
]


def _smooth_uint8_image(rng: np.random.Generator, shape) -> np.ndarray:
    """A natural-looking image: smoothed noise plus an edge, full 0..255 range."""
    noise = ndimage.gaussian_filter(rng.random(shape), sigma=(2, 2, 0))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    noise[:, : shape[1] // 3] *= 0.3  # a sharp edge
    return np.round(noise * 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_resized_crop_matches_pil_on_float_images(method, channels):
    rng = np.random.default_rng(channels)
    image = rng.random((32, 40, channels)).astype(np.float32)
    crop = jax.jit(image_ops.resized_crop, static_argnames=("out_hw", "method"))
    for box in _BOXES:
        ours = np.asarray(crop(image, *box[:4], out_hw=box[4:], method=method))
        reference = reference_ops.pil_resized_crop_float(image, box[:4], box[4:], method)
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=1e-5, err_msg=str(box))


def test_resized_crop_of_uint8_images_is_within_one_level_of_pil():
    rng = np.random.default_rng(0)
    image = _smooth_uint8_image(rng, (32, 40, 3))
    crop = jax.jit(image_ops.resized_crop, static_argnames=("out_hw", "method"))
    for i, j, h, w, oh, ow in _BOXES:
        ours = np.asarray(crop(image.astype(np.float32), i, j, h, w, out_hw=(oh, ow)))
        ours = np.clip(np.round(ours), 0, 255)
        pil = Image.fromarray(image).crop((j, i, j + w, i + h)).resize((ow, oh), Image.BICUBIC)
        assert np.abs(ours - np.asarray(pil, np.float64)).max() <= 1


def test_resize_matrix_rows_sum_to_one_and_ignore_pixels_outside_the_crop():
    matrix = np.asarray(image_ops.resize_matrix(4, 10, 32, 7, "bicubic"))
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(matrix[:, :4] == 0) and np.all(matrix[:, 14:] == 0)
    identity = np.asarray(image_ops.resize_matrix(0, 12, 12, 12, "bicubic"))
    np.testing.assert_allclose(identity, np.eye(12), atol=1e-7)


def _test_image(seed: int) -> np.ndarray:
    """Random colours plus grey, black, white and pure primaries (hue edge cases)."""
    image = np.random.default_rng(seed).random((8, 9, 3)).astype(np.float32)
    image[0, :6] = [[0.5, 0.5, 0.5], [0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    return image


def test_grayscale_matches_pil_convert_l():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(image).convert("L"), np.float64)
    ours = np.asarray(image_ops.grayscale(image.astype(np.float32) / 255.0)) * 255.0
    assert np.abs(ours - pil).max() <= 0.5 + 1e-3  # PIL rounds to an integer level


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4, 2.5])
def test_brightness_contrast_saturation_match_numpy_blends(factor):
    image = _test_image(2)
    x = image.astype(np.float64)
    references = {
        image_ops.adjust_brightness: reference_ops.brightness(x, factor),
        image_ops.adjust_contrast: reference_ops.contrast(x, factor),
        image_ops.adjust_saturation: reference_ops.saturation(x, factor),
    }
    for op, reference in references.items():
        np.testing.assert_allclose(np.asarray(op(image, factor)), reference, atol=1e-6)


@pytest.mark.parametrize("shift", [-0.5, -0.1, -0.03, 0.0, 0.07, 0.1, 0.5])
def test_adjust_hue_matches_colorsys(shift):
    image = _test_image(3)
    reference = reference_ops.hue(image, shift)
    ours = np.asarray(jax.jit(image_ops.adjust_hue)(image, shift))
    np.testing.assert_allclose(ours, reference, atol=2e-6)


def test_gaussian_kernel_and_blur_match_numpy_and_scipy_reflect():
    rng = np.random.default_rng(4)
    image = rng.random((12, 10, 3)).astype(np.float32)
    for sigma, size in [(0.1, 3), (0.8, 3), (2.0, 7), (1.3, 5)]:
        taps = np.arange(size) - (size - 1) / 2
        kernel = np.exp(-0.5 * (taps / sigma) ** 2)
        kernel /= kernel.sum()
        np.testing.assert_allclose(image_ops.gaussian_kernel(sigma, size), kernel, atol=1e-7)
        reference = reference_ops.gaussian_blur(image, sigma, size)
        ours = np.asarray(image_ops.gaussian_blur(image, sigma, size))
        np.testing.assert_allclose(ours, reference, atol=1e-6, err_msg=f"{sigma} {size}")


def test_gaussian_blur_rejects_bad_kernels():
    image = jnp.zeros((4, 4, 3))
    with pytest.raises(ValueError, match="odd"):
        image_ops.gaussian_blur(image, 1.0, 4)
    with pytest.raises(ValueError, match="too large"):
        image_ops.gaussian_blur(image, 1.0, 9)


def test_solarize_matches_pil_on_every_level():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=-1)
    pil = np.asarray(ImageOps.solarize(Image.fromarray(levels), threshold=128), np.float64)
    ours = np.asarray(image_ops.solarize(levels.astype(np.float32) / 255.0)) * 255.0
    np.testing.assert_allclose(ours, pil, atol=1e-4)


def test_unknown_interpolation_is_rejected():
    with pytest.raises(ValueError, match="interpolation"):
        image_ops.resize_matrix(0, 4, 4, 4, "nearest")
