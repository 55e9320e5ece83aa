"""Pixel operations of the parameterised augmentations (spec §6.3), in float32 JAX.

Each function transforms ONE image ``(H, W, C)`` (channels last) from explicit parameters; they
draw no random numbers, so the augmentation parameters recorded by
:mod:`seqjepa_jax.data.augment` describe the pixels exactly. All are pure, jit- and vmap-friendly,
and accept traced parameters (crop box, factors, sigma).

Semantics follow what the official pipeline applies to its PIL images (spec §6.3), computed in
float32 on ``[0, 1]`` values instead of uint8 levels:

- :func:`resized_crop`: torchvision ``resized_crop`` on a PIL image, i.e. ``img.crop(box)`` then
  ``resize(size)`` with PIL's antialiased filters (bicubic a = -0.5 or bilinear, the support
  widened by the scale factor when downsampling, weights renormalised at the crop border). It is
  two small matmuls with ``(out, in)`` interpolation matrices, for any channel count (saliency
  maps too, Q23).
- colour jitter ops (torchvision ``adjust_*`` blend formulas, clamped to ``[0, 1]`` after each op;
  grayscale uses the ITU-R 601-2 luma of PIL's ``convert("L")``: 0.299 R + 0.587 G + 0.114 B);
- :func:`gaussian_blur`: torchvision ``gaussian_blur`` (kernel ``exp(-x^2 / 2 sigma^2)`` on
  ``linspace(-(k-1)/2, (k-1)/2, k)``, normalised; reflect padding);
- :func:`solarize`: PIL ``ImageOps.solarize(threshold=128)``, i.e. ``x >= 128/255 -> 1 - x``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

INTERPOLATIONS = ("bicubic", "bilinear")
"""Resampling filters of :func:`resized_crop` (the official crop uses bicubic, spec §6.3)."""

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma (PIL ``convert("L")``), used by grayscale, contrast and saturation."""

SOLARIZE_THRESHOLD = 128.0 / 255.0
"""PIL ``ImageOps.solarize`` default threshold 128 on uint8 levels, as a ``[0, 1]`` value."""

_FILTER_SUPPORT = {"bicubic": 2.0, "bilinear": 1.0}
_BICUBIC_A = -0.5  # PIL's bicubic filter (Resample.c), not the a = -0.75 of OpenCV/torch.
_HIGHEST = jax.lax.Precision.HIGHEST  # No TF32/bf16 passes on accelerators: pixels stay float32.


def _check_interpolation(method: str) -> None:
    if method not in INTERPOLATIONS:
        raise ValueError(f"Unknown interpolation {method!r}; choose one of {INTERPOLATIONS}.")


def _filter(t: jax.Array, method: str) -> jax.Array:
    """PIL's resampling kernels (Resample.c ``bicubic_filter`` / ``bilinear_filter``)."""
    t = jnp.abs(t)
    if method == "bilinear":
        return jnp.where(t < 1.0, 1.0 - t, 0.0)
    a = _BICUBIC_A
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = (((t - 5.0) * t + 8.0) * t - 4.0) * a
    return jnp.where(t < 1.0, near, jnp.where(t < 2.0, far, 0.0))


def resize_matrix(
    start: jax.Array | int,
    length: jax.Array | int,
    in_size: int,
    out_size: int,
    method: str = "bicubic",
) -> jax.Array:
    """The ``(out_size, in_size)`` matrix that resamples pixels ``[start, start + length)``.

    Row ``o`` holds PIL's weights for output pixel ``o`` (``precompute_coeffs`` of Resample.c):
    centre ``(o + 0.5) * scale`` with ``scale = length / out_size`` in crop coordinates, filter
    support widened by ``max(scale, 1)`` (antialiasing), taps outside the crop dropped and the
    row renormalised, exactly as resizing the cropped image does.
    """
    _check_interpolation(method)
    length_f = jnp.asarray(length, jnp.float32)
    scale = length_f / out_size
    inv_filter_scale = 1.0 / jnp.maximum(scale, 1.0)
    centres = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * scale
    offsets = jnp.arange(in_size, dtype=jnp.float32) - jnp.asarray(start, jnp.float32)
    taps = (offsets[None, :] + 0.5 - centres[:, None]) * inv_filter_scale
    inside = (offsets >= 0) & (offsets < length_f)
    weights = jnp.where(inside[None, :], _filter(taps, method), 0.0)
    total = jnp.sum(weights, axis=1, keepdims=True)
    return weights / jnp.where(total == 0.0, 1.0, total)


def resized_crop(
    image: jax.Array,
    i: jax.Array | int,
    j: jax.Array | int,
    h: jax.Array | int,
    w: jax.Array | int,
    out_hw: tuple[int, int],
    method: str = "bicubic",
) -> jax.Array:
    """Crops rows ``[i, i+h)``, columns ``[j, j+w)`` of ``image`` (H, W, C) and resizes to out_hw.

    Matches ``PIL.Image.crop((j, i, j + w, i + h)).resize((ow, oh), method)`` (torchvision
    ``resized_crop`` on PIL images, spec §6.3) on float images; no clipping, so bicubic overshoot
    is kept (the caller clips where values must stay in a range).
    """
    if image.ndim != 3:
        raise ValueError(f"resized_crop expects one (H, W, C) image, got shape {image.shape}.")
    out_h, out_w = (int(s) for s in out_hw)
    rows = resize_matrix(i, h, image.shape[0], out_h, method)
    cols = resize_matrix(j, w, image.shape[1], out_w, method)
    return resample(image.astype(jnp.float32), rows, cols)


def resample(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """``rows @ image @ cols.T`` per channel: (oh, H) x (H, W, C) x (ow, W) -> (oh, ow, C)."""
    out = jnp.einsum("oh,hwc->owc", rows, image, precision=_HIGHEST)
    return jnp.einsum("pw,owc->opc", cols, out, precision=_HIGHEST)


def grayscale(image: jax.Array) -> jax.Array:
    """ITU-R 601-2 luma of an (..., 3) RGB image, shape (...) (PIL ``convert("L")``)."""
    r, g, b = LUMA_WEIGHTS
    return r * image[..., 0] + g * image[..., 1] + b * image[..., 2]


def blend(image: jax.Array, reference: jax.Array | float, factor: jax.Array | float) -> jax.Array:
    """torchvision ``_blend``: ``clip(factor * image + (1 - factor) * reference, 0, 1)``.

    ``factor == 1`` returns ``image`` bit-exactly for images in ``[0, 1]``.
    """
    return jnp.clip(factor * image + (1.0 - factor) * reference, 0.0, 1.0)


def adjust_brightness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Brightness: blend with black (multiply by ``factor``, then clip)."""
    return blend(image, 0.0, factor)


def mean_luma(image: jax.Array) -> jax.Array:
    """Mean ITU-R 601-2 luma of an (H, W, 3) image, a scalar (the contrast reference).

    Written as a contraction: XLA:CPU runs it several times faster than a reduce of the luma.
    """
    weights = jnp.asarray(LUMA_WEIGHTS, image.dtype)
    total = jnp.einsum("hwc,c->", image, weights, precision=_HIGHEST)
    return total / (image.shape[-3] * image.shape[-2])


def adjust_contrast(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Contrast: blend with the mean luma of the whole (H, W, 3) image."""
    return blend(image, mean_luma(image), factor)


def adjust_saturation(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Saturation: blend with the image's own per-pixel luma."""
    return blend(image, grayscale(image)[..., None], factor)


def adjust_hue(image: jax.Array, shift: jax.Array | float) -> jax.Array:
    """Hue: RGB -> HSV, ``h = (h + shift) mod 1``, HSV -> RGB (torchvision ``adjust_hue``).

    The inverse uses the closed form ``c_n = v - v s clip(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6 h) mod 6`` and n = 5, 3, 1 for R, G, B, which equals the six-sector table.
    Channel-wise max/min and ``floor`` instead of axis reductions and ``mod``: several times
    faster on XLA:CPU, same values.
    """
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    value = jnp.maximum(jnp.maximum(r, g), b)
    chroma = value - jnp.minimum(jnp.minimum(r, g), b)
    grey = chroma == 0.0
    saturation = jnp.where(grey, 0.0, chroma / jnp.where(value == 0.0, 1.0, value))
    inverse_chroma = 1.0 / jnp.where(grey, 1.0, chroma)
    rc, gc, bc = ((value - c) * inverse_chroma for c in (r, g, b))
    sector = jnp.where(value == r, bc - gc, jnp.where(value == g, 2.0 + rc - bc, 4.0 + gc - rc))
    # 6 * hue in [0, 6): torchvision's fmod(h / 6 + 1, 1), then the shift, wrapped.
    hue6 = jnp.where(grey, 0.0, sector) + 6.0 * shift
    hue6 = hue6 - 6.0 * jnp.floor(hue6 / 6.0)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = n + hue6
        k = jnp.where(k >= 6.0, k - 6.0, k)
        channels.append(value - value * saturation * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0))
    return jnp.stack(channels, axis=-1)


def gaussian_kernel(sigma: jax.Array | float, kernel_size: int) -> jax.Array:
    """torchvision's 1-D Gaussian kernel of odd ``kernel_size`` taps, normalised to sum 1."""
    half = (kernel_size - 1) * 0.5
    x = jnp.linspace(-half, half, kernel_size, dtype=jnp.float32)
    pdf = jnp.exp(-0.5 * jnp.square(x / sigma))
    return pdf / jnp.sum(pdf)


def gaussian_blur(image: jax.Array, sigma: jax.Array | float, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur of an (H, W, C) image with reflect padding (torchvision).

    ``sigma`` must be > 0; ``kernel_size`` is odd and smaller than twice each image side.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}.")
    half = kernel_size // 2
    if half >= min(image.shape[0], image.shape[1]):
        raise ValueError(
            f"kernel_size {kernel_size} is too large for a {image.shape[:2]} image (reflect "
            "padding needs kernel_size // 2 < each side); use a smaller blur kernel."
        )
    kernel = gaussian_kernel(sigma, kernel_size)
    out = image
    for axis in (0, 1):
        padding = [(0, 0)] * image.ndim
        padding[axis] = (half, half)
        padded = jnp.pad(out, padding, mode="reflect")
        size = out.shape[axis]
        out = sum(
            kernel[t] * jax.lax.slice_in_dim(padded, t, t + size, axis=axis)
            for t in range(kernel_size)
        )
    return out


def solarize(image: jax.Array) -> jax.Array:
    """PIL ``ImageOps.solarize`` with threshold 128: values ``>= 128/255`` become ``1 - x``."""
    return jnp.where(image >= SOLARIZE_THRESHOLD, 1.0 - image, image)
