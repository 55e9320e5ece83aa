"""Built-in saliency maps that need no pretrained weights: spectral residual plus a centre bias.

The official PLS recipes sample fixations from DeepGaze IIE maps computed offline (spec §6.4.1;
read them with :mod:`seqjepa_jax.data.saliency_files`). DeepGaze needs pretrained weights and, as
run officially, saw [0, 1] images while expecting [0, 255] (quirk Q21), so its maps are probably
dominated by its centre-bias prior. This module gives a weight-free substitute that runs on the
accelerator inside the input pipeline:

- :func:`spectral_residual_saliency`: Hou & Zhang, "Saliency Detection: A Spectral Residual
  Approach", CVPR 2007. With F the 2-D Fourier transform of the grayscale image,
  L = log|F| (log-amplitude), P = arg F (phase), R = L - h_3 * L (h_3 the 3x3 mean filter),
  the map is S = g_sigma * |F^-1[exp(R + iP)]|^2 with g_sigma a Gaussian. The paper computes it on
  an image down-sampled to 64 px wide with sigma = 8 px, which are the defaults here. S is then
  shifted so that its minimum is 0, as the min-max rescaling (``mat2gray``) of the authors'
  published MATLAB snippet does: the whitened spectrum keeps a large DC term, which adds a nearly
  uniform floor to S; left in, that floor would spread most of the sampling mass evenly over the
  image (on a flat 96 px image with one 5 px patch, the 21 px window around the patch held 8% of
  the mass with the floor and 36% without).
- :func:`centre_bias`: an isotropic-in-relative-units Gaussian at the image centre, the usual
  free-viewing prior (DeepGaze adds a learned one); mixed in with ``centre_bias_weight``.

Every map is float32, non-negative and sums to 1, the form :func:`seqjepa_jax.data.saccades.
sample_fixations` draws from.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Luma weights of ITU-R BT.601, as PIL's convert("L") uses them.
_LUMA = (0.299, 0.587, 0.114)
# Keeps log|F| finite where an amplitude is exactly zero (e.g. a constant image).
_LOG_EPS = 1e-8
# Gaussian kernels are cut at this many sigmas (scipy.ndimage.gaussian_filter's default).
_TRUNCATE = 4.0


def _check_map_size(name: str, hw: tuple[int, int] | None) -> tuple[int, int] | None:
    if hw is None:
        return None
    hw = tuple(int(v) for v in hw)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"{name} must be (height, width) with both >= 1, got {hw}.")
    return hw


def centre_bias(h: int, w: int, sigma: float = 0.25) -> jax.Array:
    """A Gaussian centre prior of shape (h, w), float32, summing to 1.

    The Gaussian sits at the map centre ((h - 1) / 2, (w - 1) / 2) with standard deviation
    ``sigma * h`` along rows and ``sigma * w`` along columns (``sigma`` is relative to the map size
    so the prior looks the same at every resolution).
    """
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"centre_bias needs h, w >= 1, got h={h}, w={w}.")
    if not sigma > 0:
        raise ValueError(f"centre_bias needs sigma > 0 (a fraction of the map size), got {sigma}.")
    rows = (np.arange(h) - (h - 1) / 2.0) / (sigma * h)
    cols = (np.arange(w) - (w - 1) / 2.0) / (sigma * w)
    prior = np.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2))
    return jnp.asarray(prior / prior.sum(), dtype=jnp.float32)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(_TRUNCATE * sigma + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / kernel.sum()


def _symmetric_filter_matrix(n: int, kernel: np.ndarray) -> np.ndarray:
    """(n, n) matrix M with M @ x = the 1-D correlation of x with ``kernel``, the signal extended by
    half-sample symmetric reflection (``d c b a | a b c d | d c b a``, scipy's mode "reflect") as
    often as the kernel needs. Built on the host once per shape, so the blur is two matmuls."""
    radius = (len(kernel) - 1) // 2
    matrix = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for tap, weight in zip(range(-radius, radius + 1), kernel):
            j = (i + tap) % (2 * n)
            if j >= n:
                j = 2 * n - 1 - j
            matrix[i, j] += weight
    return matrix


def _gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
    if sigma == 0:
        return x
    kernel = _gaussian_kernel(sigma)
    rows = jnp.asarray(_symmetric_filter_matrix(x.shape[0], kernel), jnp.float32)
    cols = jnp.asarray(_symmetric_filter_matrix(x.shape[1], kernel), jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    return jnp.matmul(jnp.matmul(rows, x, precision=hi), cols.T, precision=hi)


def _box3_wrap(x: jax.Array) -> jax.Array:
    """3x3 mean with periodic boundaries: the spectrum of a finite image is periodic."""
    total = jnp.zeros_like(x)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            total = total + jnp.roll(x, (dr, dc), axis=(0, 1))
    return total / 9.0


def _normalise(x: jax.Array) -> jax.Array:
    """Divides by the sum; an all-zero map becomes uniform instead of NaN."""
    total = jnp.sum(x)
    uniform = jnp.full_like(x, 1.0 / x.size)
    return jnp.where(total > 0, x / jnp.where(total > 0, total, 1.0), uniform)


@functools.partial(
    jax.jit,
    static_argnames=("out_hw", "analysis_hw", "blur_sigma", "centre_bias_weight", "bias_sigma"),
)
def _spectral_residual(
    image: jax.Array,
    out_hw: tuple[int, int],
    analysis_hw: tuple[int, int] | None,
    blur_sigma: float,
    centre_bias_weight: float,
    bias_sigma: float,
) -> jax.Array:
    if image.dtype == jnp.uint8:
        image = image.astype(jnp.float32) / 255.0
    image = image.astype(jnp.float32)
    if image.shape[-1] == 3:
        gray = sum(weight * image[..., k] for k, weight in enumerate(_LUMA))
    else:
        gray = image[..., 0]
    if analysis_hw is not None and analysis_hw != gray.shape:
        gray = jax.image.resize(gray, analysis_hw, method="linear", antialias=True)
    spectrum = jnp.fft.fft2(gray)
    log_amplitude = jnp.log(jnp.abs(spectrum) + _LOG_EPS)
    residual = log_amplitude - _box3_wrap(log_amplitude)
    phase = jnp.angle(spectrum)
    saliency = jnp.abs(jnp.fft.ifft2(jnp.exp(residual + 1j * phase))) ** 2
    saliency = _gaussian_blur(saliency.astype(jnp.float32), blur_sigma)
    saliency = saliency - jnp.min(saliency)  # drop the uniform floor (see the docstring)
    if saliency.shape != out_hw:
        saliency = jax.image.resize(saliency, out_hw, method="linear", antialias=True)
    saliency = _normalise(jnp.maximum(saliency, 0.0))
    if centre_bias_weight > 0:
        prior = centre_bias(out_hw[0], out_hw[1], bias_sigma)
        saliency = (1.0 - centre_bias_weight) * saliency + centre_bias_weight * prior
    return saliency


def spectral_residual_saliency(
    image: jax.Array | np.ndarray,
    *,
    out_hw: tuple[int, int] | None = None,
    analysis_width: int | None = 64,
    blur_sigma: float = 8.0,
    centre_bias_weight: float = 0.0,
    centre_bias_sigma: float = 0.25,
) -> jax.Array:
    """Spectral-residual saliency (Hou & Zhang 2007) of one image: (h, w) float32 summing to 1.

    Args:
      image: (H, W, 3) RGB or (H, W, 1) gray; uint8 (0..255) or float (any range: the map is
        invariant to a global gain of the image, up to the tiny log epsilon).
      out_hw: size of the returned map; default (H, W), the size saccade sampling needs.
      analysis_width: the image is resized (bilinear, antialiased) to this width, its aspect ratio
        kept, before the Fourier analysis; 64 as in the paper. ``None`` analyses at (H, W). The
        width sets which scale of structure counts as salient.
      blur_sigma: standard deviation, in pixels of the analysis grid, of the final Gaussian
        smoothing (half-sample symmetric borders, cut at 4 sigma); 8 as in the paper. 0 disables it.
      centre_bias_weight: w in [0, 1]; the result is (1 - w) * S + w * :func:`centre_bias`.
      centre_bias_sigma: the prior's ``sigma`` (a fraction of the map size).

    vmap it for a batch: ``jax.vmap(lambda x: spectral_residual_saliency(x))(images)``.
    """
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"spectral_residual_saliency takes one image (H, W, 3) or (H, W, 1), got shape "
            f"{tuple(image.shape)}; vmap it for a batch."
        )
    height, width = int(image.shape[0]), int(image.shape[1])
    out_hw = _check_map_size("out_hw", out_hw) or (height, width)
    analysis_hw = None
    if analysis_width is not None:
        if int(analysis_width) < 3:
            raise ValueError(f"analysis_width must be >= 3 or None, got {analysis_width}.")
        analysis_hw = (max(3, round(height * int(analysis_width) / width)), int(analysis_width))
    if not blur_sigma >= 0:
        raise ValueError(f"blur_sigma must be >= 0 (analysis-grid pixels), got {blur_sigma}.")
    if not 0.0 <= centre_bias_weight <= 1.0:
        raise ValueError(f"centre_bias_weight must be in [0, 1], got {centre_bias_weight}.")
    if not centre_bias_sigma > 0:
        raise ValueError(f"centre_bias_sigma must be > 0, got {centre_bias_sigma}.")
    return _spectral_residual(
        jnp.asarray(image),
        out_hw=out_hw,
        analysis_hw=analysis_hw,
        blur_sigma=float(blur_sigma),
        centre_bias_weight=float(centre_bias_weight),
        bias_sigma=float(centre_bias_sigma),
    )
