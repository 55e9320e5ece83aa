"""Foveal glimpses: bilinear F x F windows of an image around fixation centres (spec §6.4.2).

The official loaders cut glimpses with ``grid_sample(bilinear, zeros padding,
align_corners=False)`` on a grid built from the fixation (spec §6.4.2 step 3, §10 item 8), then
rotate and flip them; :func:`extract_glimpses` reproduces the net sampling positions directly,
with the official transposed centre (Q20) behind a flag. :func:`quantize_like_pil` is the STL-10
uint8 round trip of step 4.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def check_fovea_size(fovea_size: object) -> int:
    if isinstance(fovea_size, bool) or not isinstance(fovea_size, (int, np.integer)):
        raise ValueError(f"fovea_size must be an integer >= 2, got {fovea_size!r}.")
    if fovea_size < 2:
        raise ValueError(f"fovea_size must be >= 2 (grid linspace(-1, 1, F)), got {fovea_size}.")
    return int(fovea_size)


def glimpse_sample_coordinates(
    centres: jax.Array, fovea_size: int, *, transposed_centre: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Pixel-index coordinates (pixel k's centre at k) that a glimpse samples: ((n, F), (n, F)).

    The official grid (spec §6.4.2 step 3) is linspace(-1, 1, F) * F / S + (2 c / S - 1) in
    grid_sample's normalised units, for an S-pixel side and a centre c in pixels. With
    align_corners=False, normalised g maps to pixel index ((g + 1) S - 1) / 2, so a sample lands on
    c - 0.5 + linspace(-F/2, F/2, F): F samples spaced F / (F - 1) around c - 0.5. Hence
    glimpse[i, j] samples the image at y_i = row - 0.5 + o_i, x_j = col - 0.5 + o_j. The official
    grid puts row on the x (width) axis and col on y, and its rotate(-90) + hflip amounts to a
    transpose of the window, which fixes the orientation but not the centre (Q20):
    ``transposed_centre=True`` gives y_i = col - 0.5 + o_i, x_j = row - 0.5 + o_j.
    """
    centres = jnp.asarray(centres, jnp.float32)
    offsets = jnp.linspace(-fovea_size / 2.0, fovea_size / 2.0, fovea_size, dtype=jnp.float32)
    centre_y, centre_x = centres[:, 0], centres[:, 1]
    if transposed_centre:
        centre_y, centre_x = centre_x, centre_y
    ys = centre_y[:, None] - 0.5 + offsets[None, :]
    xs = centre_x[:, None] - 0.5 + offsets[None, :]
    return ys, xs


def _bilinear_weights(coordinates: jax.Array, size: int) -> jax.Array:
    """(n, F, size) weights max(0, 1 - |coordinate - k|): bilinear interpolation where every
    out-of-image neighbour contributes zero (grid_sample's zeros padding)."""
    pixels = jnp.arange(size, dtype=jnp.float32)
    return jnp.maximum(0.0, 1.0 - jnp.abs(coordinates[..., None] - pixels))


@functools.partial(jax.jit, static_argnames=("fovea_size", "transposed_centre"))
def _extract_glimpses(
    image: jax.Array, centres: jax.Array, fovea_size: int, transposed_centre: bool
) -> jax.Array:
    ys, xs = glimpse_sample_coordinates(centres, fovea_size, transposed_centre=transposed_centre)
    row_weights = _bilinear_weights(ys, image.shape[0])  # (n, F, H)
    col_weights = _bilinear_weights(xs, image.shape[1])  # (n, F, W)
    # Separable bilinear sampling as two matmuls (accelerator friendly, no gathers). HIGHEST keeps
    # float32 on TPU/GPU, whose default matmul precision would round pixels to bfloat16/TF32.
    hi = jax.lax.Precision.HIGHEST
    rows = jnp.einsum("nih,hwc->niwc", row_weights, image, precision=hi)
    return jnp.einsum("niwc,njw->nijc", rows, col_weights, precision=hi)


def extract_glimpses(
    image: jax.Array,
    centres: jax.Array,
    fovea_size: int,
    *,
    transposed_centre: bool = False,
) -> jax.Array:
    """Foveal glimpses (n, F, F, C) of one (H, W, C) float image at (n, 2) (row, col) centres.

    Bilinear samples at the coordinates of :func:`glimpse_sample_coordinates` (spacing
    F / (F - 1) pixels: the first and last samples are F pixels apart, as officially); samples
    outside the image blend with zeros, as grid_sample's zeros padding. ``transposed_centre=True``
    reproduces the official transposed centre (Q20).
    """
    if image.ndim != 3:
        raise ValueError(f"extract_glimpses takes one (H, W, C) image, got {tuple(image.shape)}.")
    if centres.ndim != 2 or centres.shape[-1] != 2:
        raise ValueError(f"centres must be (n, 2) (row, col) pixels, got {tuple(centres.shape)}.")
    fovea_size = check_fovea_size(fovea_size)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(
            f"extract_glimpses needs a float image (got {image.dtype}); convert uint8 with / 255."
        )
    return _extract_glimpses(image, centres, fovea_size, bool(transposed_centre))


def quantize_like_pil(x01: jax.Array) -> jax.Array:
    """floor(x * 255) / 255: ``ToPILImage`` (``pic.mul(255).byte()``, truncation) then
    ``ToTensor`` (/ 255), the STL-10 glimpse round trip (spec §6.4.2 step 4). Values are clipped to
    [0, 255] first (``byte()`` would wrap out-of-range values; [0, 1] glimpses never have any)."""
    return jnp.floor(jnp.clip(x01 * 255.0, 0.0, 255.0)) / 255.0
