"""Built-in spectral-residual saliency and the saliency-file readers (spec §6.4.1, §6.4.3; Q22)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from seqjepa_jax.data import saliency_files
from seqjepa_jax.data.saliency import centre_bias, spectral_residual_saliency

# ------------------------------------------------------------------------------------------------
# Spectral residual (Hou & Zhang 2007)


def _numpy_spectral_residual(image, blur_sigma):
    """The paper's formula in float64 numpy/scipy, on the image's own grid."""
    gray = image @ np.array([0.299, 0.587, 0.114])
    spectrum = np.fft.fft2(gray)
    log_amplitude = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amplitude - scipy.ndimage.uniform_filter(log_amplitude, size=3, mode="wrap")
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    if blur_sigma:
        saliency = scipy.ndimage.gaussian_filter(saliency, blur_sigma, mode="reflect", truncate=4.0)
    saliency = saliency - saliency.min()  # the paper's min-max rescaling, before normalising
    return saliency / saliency.sum()


@pytest.mark.parametrize("blur_sigma", [0.0, 2.0, 3.5])
def test_matches_a_numpy_reference_of_the_formula(blur_sigma):
    image = np.random.default_rng(0).uniform(size=(32, 40, 3))
    ours = np.asarray(
        spectral_residual_saliency(
            jnp.asarray(image, jnp.float32), analysis_width=None, blur_sigma=blur_sigma
        )
    )
    reference = _numpy_spectral_residual(image, blur_sigma)
    assert ours.dtype == np.float32 and ours.shape == (32, 40)
    np.testing.assert_allclose(ours, reference, rtol=2e-3, atol=2e-3 * reference.max())


def _patch_image(size, top, left, patch=5):
    image = np.full((size, size, 3), 0.5, np.float32)
    image[top : top + patch, left : left + patch] = 1.0
    return image


@pytest.mark.parametrize("size", [64, 96])
def test_the_peak_is_on_a_lone_bright_patch(size):
    top, left = int(0.6 * size), int(0.2 * size)
    saliency = np.asarray(spectral_residual_saliency(jnp.asarray(_patch_image(size, top, left))))
    assert saliency.shape == (size, size)
    assert saliency.min() >= 0 and abs(saliency.sum() - 1) < 1e-5
    row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
    assert top - 2 <= row <= top + 6 and left - 2 <= col <= left + 6, (row, col)
    # A map concentrated on the patch: its neighbourhood holds far more than its area share.
    window = saliency[top - 8 : top + 13, left - 8 : left + 13].sum()
    assert window > 0.3, window  # 21 * 21 / size**2 = 0.05-0.11 would be its area share


def test_uint8_input_and_output_size():
    image = (np.random.default_rng(1).uniform(size=(48, 48, 3)) * 255).astype(np.uint8)
    from_uint8 = spectral_residual_saliency(jnp.asarray(image), out_hw=(24, 30))
    from_float = spectral_residual_saliency(
        jnp.asarray(image / 255.0, jnp.float32), out_hw=(24, 30)
    )
    assert from_uint8.shape == (24, 30) and from_uint8.dtype == jnp.float32
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-7)
    assert float(jnp.min(from_uint8)) >= 0 and abs(float(jnp.sum(from_uint8)) - 1) < 1e-5


def test_constant_image_gives_a_valid_map():
    saliency = np.asarray(spectral_residual_saliency(jnp.full((16, 16, 3), 0.3), blur_sigma=1.0))
    assert np.all(np.isfinite(saliency)) and saliency.min() >= 0
    assert abs(saliency.sum() - 1) < 1e-5


def test_vmapped_over_a_batch_equals_one_by_one():
    images = jnp.asarray(np.random.default_rng(2).uniform(size=(3, 32, 32, 3)), jnp.float32)
    batched = jax.vmap(lambda x: spectral_residual_saliency(x, blur_sigma=2.0))(images)
    for b in range(3):
        single = spectral_residual_saliency(images[b], blur_sigma=2.0)
        np.testing.assert_allclose(batched[b], single, rtol=1e-5, atol=1e-9)


def test_centre_bias_formula_and_mixing():
    bias = np.asarray(centre_bias(9, 12, 0.2))
    rows, cols = np.meshgrid(np.arange(9) - 4.0, np.arange(12) - 5.5, indexing="ij")
    expected = np.exp(-0.5 * ((rows / 1.8) ** 2 + (cols / 2.4) ** 2))
    np.testing.assert_allclose(bias, expected / expected.sum(), rtol=1e-5)
    image = jnp.asarray(_patch_image(32, 3, 3))
    plain = spectral_residual_saliency(image, blur_sigma=1.0)
    mixed = spectral_residual_saliency(
        image, blur_sigma=1.0, centre_bias_weight=0.3, centre_bias_sigma=0.2
    )
    np.testing.assert_allclose(mixed, 0.7 * plain + 0.3 * centre_bias(32, 32, 0.2), atol=1e-7)
    only_bias = spectral_residual_saliency(image, centre_bias_weight=1.0)
    np.testing.assert_allclose(only_bias, centre_bias(32, 32), atol=1e-8)


def test_bad_saliency_arguments_raise():
    with pytest.raises(ValueError, match="vmap it"):
        spectral_residual_saliency(jnp.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="centre_bias_weight"):
        spectral_residual_saliency(jnp.zeros((8, 8, 3)), centre_bias_weight=1.5)
    with pytest.raises(ValueError, match="out_hw"):
        spectral_residual_saliency(jnp.zeros((8, 8, 3)), out_hw=(0, 4))
    with pytest.raises(ValueError, match="sigma"):
        centre_bias(4, 4, 0.0)


# ------------------------------------------------------------------------------------------------
# Saliency files


def _save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, array)


def test_stl10_reader_returns_maps_of_the_official_file(tmp_path):
    maps = np.random.default_rng(0).uniform(size=(4, 1, 96, 96)).astype(np.float32)
    _save(os.path.join(tmp_path, "train", "saliency_train.npy"), maps)
    loaded = saliency_files.load_stl10_saliency(str(tmp_path), "train", expected_count=4)
    assert loaded.shape == (4, 96, 96) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, maps[:, 0])
    assert isinstance(loaded.base, np.memmap) or isinstance(loaded, np.memmap)
    _save(os.path.join(tmp_path, "test", "saliency_test.npy"), maps[:, 0].astype(np.float64))
    loaded = saliency_files.load_stl10_saliency(str(tmp_path), "test")
    assert loaded.dtype == np.float32
    np.testing.assert_allclose(loaded, maps[:, 0])


def test_stl10_reader_errors_name_the_path_and_shape(tmp_path):
    expected_path = os.path.join(tmp_path, "unlabeled", "saliency_unlabeled.npy")
    with pytest.raises(FileNotFoundError, match="saliency_unlabeled.npy"):
        saliency_files.load_stl10_saliency(str(tmp_path), "unlabeled")
    _save(expected_path, np.zeros((2, 1, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 1, 64, 64\).*\(N, 1, 96, 96\)"):
        saliency_files.load_stl10_saliency(str(tmp_path), "unlabeled")
    np.testing.assert_array_equal(
        saliency_files.load_stl10_saliency(str(tmp_path), "unlabeled", image_size=64), 0.0
    )
    with pytest.raises(ValueError, match="2 maps but the unlabeled split has 3"):
        saliency_files.load_stl10_saliency(
            str(tmp_path), "unlabeled", image_size=64, expected_count=3
        )
    with pytest.raises(ValueError, match="split must be one of"):
        saliency_files.load_stl10_saliency(str(tmp_path), "val")
    _save(os.path.join(tmp_path, "train", "saliency_train.npy"), np.zeros((2, 96, 96), np.int64))
    with pytest.raises(ValueError, match="floating point"):
        saliency_files.load_stl10_saliency(str(tmp_path), "train")


def test_imagenet_path_accepts_both_file_names(tmp_path):
    folder = os.path.join(tmp_path, "train", "n01440764")
    underscore = os.path.join(folder, "n01440764_1_sal.npy")
    hyphen = os.path.join(folder, "n01440764_2-sal.npy")
    _save(underscore, np.ones((1, 5, 7), np.float32))
    _save(hyphen, np.ones((6, 4), np.float64))
    root = str(tmp_path)
    assert saliency_files.imagenet_saliency_path(root, "train", "n01440764", "n01440764_1") == (
        underscore
    )
    assert saliency_files.imagenet_saliency_path(root, "train", "n01440764", "n01440764_2") == (
        hyphen
    )
    _save(os.path.join(folder, "n01440764_2_sal.npy"), np.ones((6, 4), np.float32))
    assert saliency_files.imagenet_saliency_path(
        root, "train", "n01440764", "n01440764_2"
    ).endswith("n01440764_2_sal.npy")
    with pytest.raises(FileNotFoundError, match="n01440764_3_sal.npy.*n01440764_3-sal.npy"):
        saliency_files.imagenet_saliency_path(root, "train", "n01440764", "n01440764_3")
    loaded = saliency_files.load_imagenet_saliency(underscore)
    assert loaded.shape == (5, 7) and loaded.dtype == np.float32
    assert saliency_files.load_imagenet_saliency(hyphen).dtype == np.float32


def test_imagenet_loader_refuses_pickles_and_wrong_shapes(tmp_path):
    pickled = os.path.join(tmp_path, "object_sal.npy")
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        saliency_files.load_imagenet_saliency(pickled)
    wrong = os.path.join(tmp_path, "wrong_sal.npy")
    np.save(wrong, np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected a float saliency map of shape \(H, W\)"):
        saliency_files.load_imagenet_saliency(wrong)
