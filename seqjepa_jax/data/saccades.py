"""Saccade sequences for the PLS recipes: fixations, foveal glimpses and position actions.

An image (plus a saliency map) becomes V = ``num_saccades`` foveal glimpses and their fixation
positions, the last fixation being the prediction target (spec §3, §6.4.2). All ops are pure JAX,
jitted and vmappable, so the sampler runs on the accelerator:

1. :func:`sample_fixations`: V categorical draws from the map with cumulative inhibition of return
   (spec §6.4.2 step 1; ImageNet, §6.4.3, uses the same sampler with saliency and IoR forced on,
   Q25).
2. :func:`seqjepa_jax.data.glimpses.extract_glimpses` (re-exported here): bilinear F x F windows
   with zero padding, as ``grid_sample(bilinear, zeros, align_corners=False)`` on the official
   grid (step 3), optionally with the official transposed centre (Q20).
3. :func:`saccade_sequence` / :func:`saccade_batch`: both, positions (row, col) / (H, W) (step 5),
   and the per-recipe pixel pipeline: STL-10 glimpses come from the [0, 1] image, round-trip
   through uint8 by truncation and are then normalised (step 4); ImageNet glimpses come from the
   normalised image, so padding is the mean colour (§6.4.3).
4. :func:`positions_to_actions`: a_j = pos_{j+1} - pos_j (spec §3.2), the ``actions`` of the
   batch contract of DESIGN.md; the model zeroes the last observation's action itself.

Official sizes are hard-coded there (96 px image, 32 px fovea, IoR radius 16, Q19); here all are
parameters, the radius defaulting to ``fovea_size // 2`` as in both official loaders.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seqjepa_jax.data.glimpses import check_fovea_size, extract_glimpses, quantize_like_pil

__all__ = [
    "GLIMPSE_SOURCES",
    "IOR_FLOOR",
    "STL10_MEAN",
    "STL10_STD",
    "extract_glimpses",
    "positions_to_actions",
    "quantize_like_pil",
    "saccade_batch",
    "saccade_sequence",
    "sample_fixations",
]

# STL-10 normalisation of the official loader (spec §6.3 table, datasets.py:391).
STL10_MEAN = (0.4467, 0.4398, 0.4066)
STL10_STD = (0.2241, 0.2215, 0.2239)
# Added to every pixel after each inhibition (spec §6.4.2 step 1), so the map never sums to zero.
IOR_FLOOR = 1e-16
GLIMPSE_SOURCES = ("unit", "normalised")


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _resolve_radius(inhibition_radius: int | None, fovea_size: int) -> int:
    if inhibition_radius is None:
        return fovea_size // 2
    if isinstance(inhibition_radius, bool) or int(inhibition_radius) != inhibition_radius:
        raise ValueError(f"inhibition_radius must be an integer, got {inhibition_radius!r}.")
    if inhibition_radius < 0:
        raise ValueError(f"inhibition_radius must be >= 0 pixels, got {inhibition_radius}.")
    return int(inhibition_radius)


def _check_given(inhibition_radius: int | None) -> int:
    if inhibition_radius is None:
        raise ValueError("sample_fixations needs inhibition_radius (officially fovea_size // 2).")
    return inhibition_radius


def _draw_fixations(
    key: jax.Array,
    probabilities: jax.Array,
    num_fixations: int,
    inhibition_radius: int,
    draw_from_map: bool,
    inhibition_of_return: bool,
) -> jax.Array:
    """The sampling loop of spec §6.4.2 step 1 (a lax.scan over the fixations)."""
    height, width = probabilities.shape
    rows = jnp.arange(height)
    cols = jnp.arange(width)

    def step(p: jax.Array, step_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        if draw_from_map:
            # P(row, col) = P(row) P(col | row): the categorical over the h * w flat pixels as two
            # draws over h and w entries, exact in distribution and h * w / (h + w) times fewer
            # random numbers (48x at 96 px, where the flat draw dominated the sampler's time).
            row_key, col_key = jax.random.split(step_key)
            row = jax.random.categorical(row_key, jnp.log(jnp.sum(p, axis=1)))
            col = jax.random.categorical(col_key, jnp.log(p[row]))
        else:
            index = jax.random.randint(step_key, (), 0, height * width)
            row, col = index // width, index % width
        if inhibition_of_return:
            window = (jnp.abs(rows - row) <= inhibition_radius)[:, None] & (
                jnp.abs(cols - col) <= inhibition_radius
            )[None, :]
            p = jnp.where(window, 0.0, p) + IOR_FLOOR
            p = p / jnp.sum(p)
        return p, jnp.stack([row, col]).astype(jnp.int32)

    _, fixations = jax.lax.scan(step, probabilities, jax.random.split(key, num_fixations))
    return fixations


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_fixations",
        "inhibition_radius",
        "use_saliency",
        "inhibition_of_return",
        "uniform_respects_ior",
    ),
)
def _sample_fixations(
    key: jax.Array,
    saliency: jax.Array,
    num_fixations: int,
    inhibition_radius: int,
    use_saliency: bool,
    inhibition_of_return: bool,
    uniform_respects_ior: bool,
) -> jax.Array:
    if use_saliency:
        probabilities = saliency.astype(jnp.float32)
    else:
        probabilities = jnp.full(saliency.shape, 1.0 / saliency.size, jnp.float32)
    return _draw_fixations(
        key,
        probabilities,
        num_fixations,
        inhibition_radius,
        draw_from_map=use_saliency or uniform_respects_ior,
        inhibition_of_return=inhibition_of_return,
    )


def sample_fixations(
    key: jax.Array,
    saliency: jax.Array,
    num_fixations: int,
    inhibition_radius: int,
    *,
    use_saliency: bool = True,
    inhibition_of_return: bool = True,
    uniform_respects_ior: bool = False,
) -> jax.Array:
    """Fixations (num_fixations, 2) int32 (row, col), in sampling order (spec §6.4.2 step 1).

    Each step draws one pixel from the current map p: officially one ``torch.multinomial`` draw
    of a flat index, row = index // w, col = index % w; here a row from the row sums of p, then a
    column from that row (the same distribution, far fewer random numbers).
    With inhibition of return the inclusive square [row - R, row + R] x [col - R, col + R], clipped
    at the borders, is zeroed, ``IOR_FLOOR`` (1e-16) is added to every pixel and p is renormalised.
    The inhibition is cumulative within the sequence. Once every pixel with mass has been inhibited
    the map is uniform (all 1e-16), so later fixations may land anywhere, as officially.

    Args:
      key: a PRNG key.
      saliency: (h, w) non-negative map with positive total (it need not sum to 1). Only its shape
        is used when ``use_saliency`` is False. Zero-mass maps cannot be checked under jit; they
        give fixation (0, 0).
      num_fixations: V, observations plus the target.
      inhibition_radius: R in pixels (officially ``fovea_size // 2``).
      use_saliency: draw from the map; if False, draws are uniform over the h * w pixels.
      inhibition_of_return: apply the IoR update after every draw.
      uniform_respects_ior: only matters with ``use_saliency=False``. Officially (False) uniform
        draws ignore the inhibited map, so IoR has no effect (spec §6.4.2 step 1); True draws from
        the inhibited uniform map instead, so glimpses never revisit a window.
    """
    if saliency.ndim != 2:
        raise ValueError(
            f"sample_fixations takes one (h, w) saliency map, got shape {tuple(saliency.shape)}; "
            "vmap it for a batch."
        )
    return _sample_fixations(
        key,
        jnp.asarray(saliency),
        num_fixations=_check_positive_int("num_fixations", num_fixations),
        inhibition_radius=_resolve_radius(_check_given(inhibition_radius), 0),
        use_saliency=bool(use_saliency),
        inhibition_of_return=bool(inhibition_of_return),
        uniform_respects_ior=bool(uniform_respects_ior),
    )


def _saccade_sequence(
    key: jax.Array,
    image: jax.Array,
    saliency: jax.Array | None,
    num_saccades: int,
    fovea_size: int,
    inhibition_radius: int,
    use_saliency: bool,
    inhibition_of_return: bool,
    transposed_centre: bool,
    uniform_respects_ior: bool,
) -> tuple[jax.Array, jax.Array]:
    height, width = image.shape[:2]
    if saliency is None:
        saliency = jnp.zeros((height, width), jnp.float32)  # shape only: use_saliency is False
    fixations = _sample_fixations(
        key,
        saliency,
        num_fixations=num_saccades,
        inhibition_radius=inhibition_radius,
        use_saliency=use_saliency,
        inhibition_of_return=inhibition_of_return,
        uniform_respects_ior=uniform_respects_ior,
    )
    glimpses = extract_glimpses(image, fixations, fovea_size, transposed_centre=transposed_centre)
    positions = fixations.astype(jnp.float32) / jnp.array([height, width], jnp.float32)
    return glimpses, positions


_SEQUENCE_STATICS = (
    "num_saccades",
    "fovea_size",
    "inhibition_radius",
    "use_saliency",
    "inhibition_of_return",
    "transposed_centre",
    "uniform_respects_ior",
)
_saccade_sequence_jit = jax.jit(_saccade_sequence, static_argnames=_SEQUENCE_STATICS)


def _check_sequence_inputs(
    image_shape: tuple[int, ...],
    saliency_shape: tuple[int, ...] | None,
    num_saccades: int,
    fovea_size: int,
    inhibition_radius: int | None,
    use_saliency: bool,
    inhibition_of_return: bool,
    transposed_centre: bool,
    uniform_respects_ior: bool,
) -> dict[str, int | bool]:
    """Validates one example's shapes and the sizes (shared by :func:`saccade_sequence` and
    :func:`saccade_batch`); returns every `_SEQUENCE_STATICS` argument, resolved."""
    if len(image_shape) != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image_shape}.")
    if saliency_shape is None and use_saliency:
        raise ValueError(
            "use_saliency=True needs a saliency map; pass one (e.g. from a file reader of "
            "seqjepa_jax.data.saliency_files or seqjepa_jax.data.saliency."
            "spectral_residual_saliency), or set use_saliency=False for uniform fixations."
        )
    if saliency_shape is not None and saliency_shape != image_shape[:2]:
        raise ValueError(
            f"saliency must be (H, W) = {image_shape[:2]} like the image, got {saliency_shape}; "
            "resize/crop the map together with the image (Q23)."
        )
    num_saccades = _check_positive_int("num_saccades", num_saccades)
    if num_saccades < 2:
        raise ValueError(f"num_saccades (observations + target) must be >= 2, got {num_saccades}.")
    fovea_size = check_fovea_size(fovea_size)
    return {
        "num_saccades": num_saccades,
        "fovea_size": fovea_size,
        "inhibition_radius": _resolve_radius(inhibition_radius, fovea_size),
        "use_saliency": bool(use_saliency),
        "inhibition_of_return": bool(inhibition_of_return),
        "transposed_centre": bool(transposed_centre),
        "uniform_respects_ior": bool(uniform_respects_ior),
    }


def saccade_sequence(
    key: jax.Array,
    image: jax.Array,
    saliency: jax.Array | None,
    *,
    num_saccades: int,
    fovea_size: int,
    inhibition_radius: int | None = None,
    use_saliency: bool = True,
    inhibition_of_return: bool = True,
    transposed_centre: bool = False,
    uniform_respects_ior: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """One saccade sequence: (glimpses (V, F, F, C), positions (V, 2) float32).

    ``positions`` are (row, col) / (H, W) in [0, 1) (spec §6.4.2 step 5); the last of the V =
    ``num_saccades`` fixations is the target, with no shuffling (step 2). Glimpses are taken from
    ``image`` as given (float, (H, W, C)); ``saliency`` is (H, W), or None with
    ``use_saliency=False``. ``inhibition_radius`` defaults to ``fovea_size // 2`` (Q19: honoured
    here, unlike the official STL-10 loader). Other flags: :func:`sample_fixations`,
    :func:`extract_glimpses`.
    """
    statics = _check_sequence_inputs(
        tuple(image.shape),
        None if saliency is None else tuple(saliency.shape),
        num_saccades,
        fovea_size,
        inhibition_radius,
        use_saliency,
        inhibition_of_return,
        transposed_centre,
        uniform_respects_ior,
    )
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(f"image must be float (got {image.dtype}); convert uint8 with / 255.")
    return _saccade_sequence_jit(key, image, saliency, **statics)


@functools.partial(
    jax.jit, static_argnames=(*_SEQUENCE_STATICS, "glimpse_from", "quantize_uint8", "mean", "std")
)
def _saccade_batch(
    keys: jax.Array,
    images: jax.Array,
    saliency: jax.Array | None,
    num_saccades: int,
    fovea_size: int,
    inhibition_radius: int,
    use_saliency: bool,
    inhibition_of_return: bool,
    transposed_centre: bool,
    uniform_respects_ior: bool,
    glimpse_from: str,
    quantize_uint8: bool,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
) -> tuple[jax.Array, jax.Array]:
    if images.dtype == jnp.uint8:
        images = images.astype(jnp.float32) / 255.0
    images = images.astype(jnp.float32)

    def normalise(x: jax.Array) -> jax.Array:
        if mean is None:
            return x
        return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)

    if glimpse_from == "normalised":
        images = normalise(images)

    def one(key: jax.Array, image: jax.Array, sal: jax.Array | None) -> tuple[jax.Array, ...]:
        return _saccade_sequence(
            key,
            image,
            sal,
            num_saccades=num_saccades,
            fovea_size=fovea_size,
            inhibition_radius=inhibition_radius,
            use_saliency=use_saliency,
            inhibition_of_return=inhibition_of_return,
            transposed_centre=transposed_centre,
            uniform_respects_ior=uniform_respects_ior,
        )

    views, positions = jax.vmap(one)(keys, images, saliency)
    if glimpse_from == "unit":
        if quantize_uint8:
            views = quantize_like_pil(views)
        views = normalise(views)
    return views, positions


def saccade_batch(
    keys: jax.Array,
    images: jax.Array,
    saliency: jax.Array | None,
    *,
    num_saccades: int,
    fovea_size: int,
    inhibition_radius: int | None = None,
    use_saliency: bool = True,
    inhibition_of_return: bool = True,
    transposed_centre: bool = False,
    uniform_respects_ior: bool = False,
    glimpse_from: str = "unit",
    quantize_uint8: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """:func:`saccade_sequence` vmapped over a batch, with the recipes' pixel pipeline.

    Args:
      keys: (B,) PRNG keys (typed, or raw uint32 (B, 2)), one per image: example b's sequence
        depends only on keys[b], images[b] and saliency[b], not on the batch it is in.
      images: (B, H, W, C) in [0, 1] (float) or uint8 (divided by 255).
      saliency: (B, H, W) maps, or None with ``use_saliency=False``.
      glimpse_from: ``"unit"``: glimpses from the [0, 1] image, then (optionally) the uint8 round
        trip, then ``(x - mean) / std`` (STL-10, spec §6.4.2 steps 3-4: zero padding is black).
        ``"normalised"``: the image is normalised first and glimpses are taken from it (ImageNet,
        spec §6.4.3: zero padding is the mean colour); ``quantize_uint8`` must then be False.
      quantize_uint8: the STL-10 ``ToPILImage`` truncation (:func:`quantize_like_pil`).
      mean, std: per-channel normalisation (e.g. ``STL10_MEAN``, ``STL10_STD``); None leaves pixels
        as they are (only with ``glimpse_from="unit"``).
      Other arguments: :func:`saccade_sequence`.

    Returns:
      views (B, V, F, F, C) float32 and positions (B, V, 2) float32; the batch contract's
      ``actions`` are :func:`positions_to_actions` of the positions, its ``latents`` the positions.
      STL-10 as officially: ``glimpse_from="unit", quantize_uint8=True, mean=STL10_MEAN,
      std=STL10_STD, transposed_centre=True`` (the last only to reproduce Q20).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, H, W, C), got shape {tuple(images.shape)}.")
    batch = images.shape[0]
    if keys.ndim == 0 or keys.shape[0] != batch:
        raise ValueError(
            f"keys must hold one PRNG key per image (B={batch}), got shape {tuple(keys.shape)}; "
            "use jax.random.split(key, B)."
        )
    if saliency is not None and (saliency.ndim != 3 or saliency.shape[0] != batch):
        raise ValueError(f"saliency must be (B, H, W) with B={batch}, got {tuple(saliency.shape)}.")
    statics = _check_sequence_inputs(
        tuple(images.shape[1:]),
        None if saliency is None else tuple(saliency.shape[1:]),
        num_saccades,
        fovea_size,
        inhibition_radius,
        use_saliency,
        inhibition_of_return,
        transposed_centre,
        uniform_respects_ior,
    )
    if not (images.dtype == jnp.uint8 or jnp.issubdtype(images.dtype, jnp.floating)):
        raise ValueError(f"images must be uint8 or float in [0, 1], got {images.dtype}.")
    if glimpse_from not in GLIMPSE_SOURCES:
        raise ValueError(f"glimpse_from must be one of {GLIMPSE_SOURCES}, got {glimpse_from!r}.")
    if (mean is None) != (std is None):
        raise ValueError("Give both mean and std (per-channel normalisation) or neither.")
    channels = images.shape[-1]
    if mean is not None:
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(
                f"mean and std need {channels} values (one per channel), std > 0; got "
                f"mean={mean}, std={std}."
            )
    if glimpse_from == "normalised" and (quantize_uint8 or mean is None):
        raise ValueError(
            'glimpse_from="normalised" takes glimpses from the (x - mean) / std image: give mean '
            "and std, and leave quantize_uint8=False (the uint8 round trip is STL-10's, on [0, 1])."
        )
    return _saccade_batch(
        keys,
        images,
        saliency,
        glimpse_from=glimpse_from,
        quantize_uint8=bool(quantize_uint8),
        mean=mean,
        std=std,
        **statics,
    )


def positions_to_actions(positions: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """(B, V, 2) absolute positions -> (B, V-1, 2) actions, a_j = pos_{j+1} - pos_j (spec §3.2).

    Works on numpy and JAX arrays alike (returns the same kind). actions[:, V-2] is the predictor's
    action (target minus last observation); the model zeroes the last observation token's action.
    """
    if positions.ndim != 3 or positions.shape[1] < 2:
        raise ValueError(
            f"positions must be (B, V, d) with V >= 2 fixations, got {tuple(positions.shape)}."
        )
    return positions[:, 1:] - positions[:, :-1]
