"""Parameterised augmentations that return their exact parameters (spec §6.3, §2.2, §5.3).

The CIFAR-100 / TinyImageNet recipes turn one source image into V = M_tr + 1 views: M_tr
observation views, then the target view, each from its own random augmentation (spec §6.3 table:
observations are always blurred and never solarised, the target is blurred with p 0.1 and
solarised with p 0.2). Every view records its parameter vector
``[crop_i, crop_j, crop_h, crop_w, brightness, contrast, saturation, hue, (blur_sigma)]``
(9-d, 8-d without blur); the model is conditioned on differences of consecutive vectors
(:func:`actions_from_params`, spec §2.2 step 3).

Everything is pure JAX and runs per example under ``vmap`` inside the jitted input step:
:func:`augment_batch` maps one key per example to its views, so the output of an example depends
only on its key and image, never on the batch it is computed in. The caller derives the key from
(seed, step, global example index); every random decision is therefore redrawn each epoch (the
official loader's worker re-seeding repeats the flip/jitter/gray/blur/solarize decisions every
epoch, quirk Q5; that is not reproduced).

Per view, in the official order (``ParamCompose``): random resized crop of the SOURCE image
(torchvision ``get_params``, bicubic) and horizontal flip, colour jitter (4 ops in a random
order) with probability ``jitter_prob``, grayscale with ``gray_prob``, Gaussian blur with
``blur_prob``, solarize with ``solarize_prob``. Pixel semantics are in
:mod:`seqjepa_jax.data.image_ops`.

Deliberate numerical difference: the official code runs these ops on uint8 PIL images and rounds
to integer levels after every op; here the whole chain stays in float32 on ``[0, 1]`` (clipped
after the crop, as the uint8 result is). The recorded parameters are exact for OUR pixels.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seqjepa_jax.data import image_ops

CROP_NAMES = ("crop_i", "crop_j", "crop_h", "crop_w")
JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")
BLUR_NAME = "blur_sigma"
_NUM_CROP_ATTEMPTS = 10  # torchvision RandomResizedCrop.get_params
_FLAGS = ("flip", "jitter", "gray", "blur", "solarize")  # drawn as ``random.random() < p``
_Q4_EPS = 1e-12  # torch F.normalize default eps (quirk Q4)

Params = dict[str, jax.Array]


def official_blur_kernel_size(image_size: int) -> int:
    """Official blur kernel ``2 * round((size - 10) / 20) + 1`` (Python rounding; spec §6.3).

    3 for 32 px (CIFAR-100), 7 for 64 px (TinyImageNet).
    """
    return 2 * round((image_size - 10) / 20) + 1


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    """Distribution of one view's augmentation; defaults: the official observation view, 32 px.

    Field values follow spec §6.3 (``ParamRandomResizedCrop``, ``ParamColorJitter``,
    ``ParamGaussianBlur``, ``ParamSolarize``). Jitter strengths give factors
    ``U(max(0, 1 - x), 1 + x)`` for brightness/contrast/saturation and a shift ``U(-hue, hue)``.
    ``use_blur=False`` is the official ``--no-blur`` variant: no blur and no sigma slot (8-d
    parameters). Hashable, so it is a static argument of the jitted functions.
    """

    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_prob: float = 0.2
    blur_prob: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_size: int = 3
    solarize_prob: float = 0.0
    use_blur: bool = True
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        for name in ("flip_prob", "jitter_prob", "gray_prob", "blur_prob", "solarize_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentSpec.{name}={value} is a probability: use [0, 1].")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentSpec.{name} must be >= 0, got {getattr(self, name)}.")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"AugmentSpec.hue={self.hue}: torchvision needs 0 <= hue <= 0.5.")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError(f"AugmentSpec.scale={self.scale}: need 0 < scale[0] <= scale[1].")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"AugmentSpec.ratio={self.ratio}: need 0 < ratio[0] <= ratio[1].")
        lo, hi = self.blur_sigma
        if not 0 < lo <= hi:
            raise ValueError(
                f"AugmentSpec.blur_sigma={self.blur_sigma}: need 0 < sigma_min <= sigma_max "
                "(sigma 0 is reserved for 'not blurred')."
            )
        if self.blur_kernel_size < 1 or self.blur_kernel_size % 2 == 0:
            raise ValueError(
                f"AugmentSpec.blur_kernel_size={self.blur_kernel_size} must be a positive odd "
                "integer; official_blur_kernel_size(image_size) gives the official one."
            )
        if self.interpolation not in image_ops.INTERPOLATIONS:
            raise ValueError(
                f"AugmentSpec.interpolation={self.interpolation!r}; choose one of "
                f"{image_ops.INTERPOLATIONS}."
            )


def official_view_specs(image_size: int, use_blur: bool = True) -> tuple[AugmentSpec, AugmentSpec]:
    """(observation spec, target spec) of the CIFAR-100 / TinyImageNet recipes (spec §6.3 table).

    Both: crop scale (0.2, 1), ratio (3/4, 4/3), bicubic, flip 0.5, jitter 0.8 with
    (0.4, 0.4, 0.2, 0.1), gray 0.2, blur sigma (0.1, 2). Observations: blur p 1.0, solarize 0.0;
    target: blur p 0.1, solarize 0.2. ``use_blur=False`` is ``--no-blur`` (solarize unchanged).
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}.")
    kernel = official_blur_kernel_size(image_size)
    observation = AugmentSpec(blur_kernel_size=kernel, use_blur=use_blur)
    target = dataclasses.replace(observation, blur_prob=0.1, solarize_prob=0.2)
    return observation, target


def param_names(spec: AugmentSpec) -> tuple[str, ...]:
    """Names of the parameter-vector slots, in order (spec §6.3 ``ParamCompose``)."""
    return CROP_NAMES + JITTER_NAMES + ((BLUR_NAME,) if spec.use_blur else ())


def num_params(spec: AugmentSpec) -> int:
    """d_a of the augmentation actions: 9, or 8 without blur (spec §2.1)."""
    return len(param_names(spec))


def _hw(source_hw: Sequence[int | jax.Array]) -> tuple[jax.Array, jax.Array]:
    height, width = source_hw
    return jnp.asarray(height, jnp.int32), jnp.asarray(width, jnp.int32)


def sample_crop(
    key: jax.Array,
    source_hw: Sequence[int | jax.Array],
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """torchvision ``RandomResizedCrop.get_params``: (top i, left j, height h, width w), int32.

    Up to 10 attempts of area ``U(scale) * H * W`` and log-uniform aspect ratio; the first whose
    rounded box fits is used, with i, j uniform over the valid positions. Otherwise the central
    fallback: the whole image, cut to the nearest allowed ratio. Integer pixels of the source;
    ``source_hw`` may be traced (e.g. padded ImageNet images of varying size).
    """
    height, width = _hw(source_hw)
    height_f, width_f = height.astype(jnp.float32), width.astype(jnp.float32)
    # One draw for everything (cheaper than a key per variable): 10 areas, 10 log-ratios, i, j.
    u = jax.random.uniform(key, (2 * _NUM_CROP_ATTEMPTS + 2,))
    area = height_f * width_f * _uniform(u[:_NUM_CROP_ATTEMPTS], *scale)
    log_ratio = _uniform(u[_NUM_CROP_ATTEMPTS:-2], np.log(ratio[0]), np.log(ratio[1]))
    aspect = jnp.exp(log_ratio)
    w_try = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    h_try = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (w_try > 0) & (w_try <= width) & (h_try > 0) & (h_try <= height)
    first = jnp.argmax(fits)

    source_ratio = width_f / height_f
    too_tall = source_ratio < min(ratio)
    too_wide = source_ratio > max(ratio)
    w_fallback = jnp.where(too_wide, jnp.round(height_f * max(ratio)).astype(jnp.int32), width)
    h_fallback = jnp.where(too_tall, jnp.round(width_f / min(ratio)).astype(jnp.int32), height)

    found = jnp.any(fits)
    h = jnp.where(found, h_try[first], h_fallback)
    w = jnp.where(found, w_try[first], w_fallback)
    i = jnp.where(found, _randint(u[-2], height - h + 1), (height - h) // 2)
    j = jnp.where(found, _randint(u[-1], width - w + 1), (width - w) // 2)
    return i, j, h, w


def _uniform(u: jax.Array, low: float | jax.Array, high: float | jax.Array) -> jax.Array:
    """Maps U[0, 1) draws to U[low, high)."""
    return low + u * (high - low)


def _randint(u: jax.Array, count: jax.Array) -> jax.Array:
    """A U[0, 1) draw to a uniform integer in [0, count) (``torch.randint(0, count)``)."""
    return jnp.minimum(jnp.floor(u * count).astype(jnp.int32), count - 1)


def sample_view_params(
    key: jax.Array, spec: AugmentSpec, source_hw: Sequence[int | jax.Array]
) -> Params:
    """All random draws of one view (spec §6.3), as a dict of scalars (``order``: (4,) int32).

    Keys: crop_i/j/h/w, flip, jitter, order (the op permutation: 0 brightness, 1 contrast,
    2 saturation, 3 hue), brightness, contrast, saturation, hue, gray, blur, blur_sigma, solarize.
    Without jitter the factors are the identity (1, 1, 1, 0) and the order [0, 1, 2, 3]; without
    blur sigma is exactly 0 (official ``ParamColorJitter`` / ``ParamGaussianBlur``).
    """
    key_crop, key_view = jax.random.split(key)
    i, j, h, w = sample_crop(key_crop, source_hw, spec.scale, spec.ratio)
    # One draw: 4 permutation keys, 4 factors, sigma, then the 5 flags (``random() < p``).
    u = jax.random.uniform(key_view, (9 + len(_FLAGS),))
    flags = {name: u[9 + k] < getattr(spec, f"{name}_prob") for k, name in enumerate(_FLAGS)}
    jitter = flags["jitter"]
    lows = [max(0.0, 1.0 - s) for s in (spec.brightness, spec.contrast, spec.saturation)]
    highs = [1.0 + s for s in (spec.brightness, spec.contrast, spec.saturation)]
    factors = _uniform(u[4:8], jnp.array(lows + [-spec.hue]), jnp.array(highs + [spec.hue]))
    factors = jnp.where(jitter, factors, jnp.array([1.0, 1.0, 1.0, 0.0]))
    # argsort of i.i.d. uniforms is a uniform random permutation (torch.randperm(4)).
    order = jnp.where(jitter, jnp.argsort(u[:4]), jnp.arange(4)).astype(jnp.int32)
    blur = flags["blur"] & spec.use_blur
    sigma = _uniform(u[8], *spec.blur_sigma)
    params = {"crop_i": i, "crop_j": j, "crop_h": h, "crop_w": w, **flags}
    params.update(zip(JITTER_NAMES, factors, strict=True))
    params.update({"order": order, "blur": blur, BLUR_NAME: jnp.where(blur, sigma, 0.0)})
    return params


def _blend_steps(
    image: jax.Array, order: jax.Array, factors: jax.Array, active: jax.Array
) -> jax.Array:
    """Brightness/contrast/saturation at the 3 positions ``order[k]`` where ``active[k]``.

    All three are ``blend(x, a * luma + b, factor)``: (a, b) = (0, 0) brightness, (0, mean luma)
    contrast, (1, 0) saturation. An inactive position, or the hue op, uses factor 1, which is
    the identity. A ``scan`` keeps each step's image materialised: when XLA fused the chain, it
    recomputed every op once per channel read by the next (several times slower on CPU).
    """

    def step(x: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        op, is_active = inputs
        factor = jnp.where(is_active & (op != 3), factors[jnp.minimum(op, 2)], 1.0)
        a = (op == 2).astype(x.dtype)
        b = jnp.where(op == 1, image_ops.mean_luma(x), 0.0)
        return image_ops.blend(x, a * image_ops.grayscale(x)[..., None] + b, factor), None

    return jax.lax.scan(step, image, (order, active))[0]


def color_jitter(image: jax.Array, order: jax.Array, factors: jax.Array) -> jax.Array:
    """torchvision ``ColorJitter`` with fixed factors (b, c, s, hue) applied in ``order``.

    Hue runs exactly once: the blend ops before its position (positions 0-2), hue, then the
    blend ops after it (positions 1-3).
    """
    positions = jnp.arange(4)
    hue_position = jnp.argmax(order == 3)
    image = _blend_steps(image, order[:3], factors, positions[:3] < hue_position)
    image = image_ops.adjust_hue(image, factors[3])
    return _blend_steps(image, order[1:], factors, positions[1:] > hue_position)


_RENDER_FIELDS = ("interpolation", "use_blur", "blur_kernel_size")


def _rendering(spec: AugmentSpec) -> tuple:
    """The only fields of a spec that :func:`apply_view` reads; the rest shape the sampling."""
    return tuple(getattr(spec, name) for name in _RENDER_FIELDS)


def apply_view(image01: jax.Array, params: Params, spec: AugmentSpec, out_size: int) -> jax.Array:
    """Renders one view (out_size, out_size, 3) of a float (H, W, 3) ``[0, 1]`` image from params.

    Crop + resize (``spec.interpolation``) with the flip folded into the column matrix, clip to
    ``[0, 1]``, colour jitter if ``params["jitter"]``, grayscale, blur, solarize (spec §6.3 order).
    Deterministic: the same params give the same pixels.
    """
    height, width = image01.shape[0], image01.shape[1]
    rows = image_ops.resize_matrix(
        params["crop_i"], params["crop_h"], height, out_size, spec.interpolation
    )
    cols = image_ops.resize_matrix(
        params["crop_j"], params["crop_w"], width, out_size, spec.interpolation
    )
    cols = jnp.where(params["flip"], cols[::-1], cols)
    view = jnp.clip(image_ops.resample(image01, rows, cols), 0.0, 1.0)
    factors = jnp.stack([params[name] for name in JITTER_NAMES])
    view = jnp.where(params["jitter"], color_jitter(view, params["order"], factors), view)
    luma = image_ops.grayscale(view)[..., None]
    view = jnp.where(params["gray"], jnp.broadcast_to(luma, view.shape), view)
    if spec.use_blur:
        sigma = jnp.where(params["blur"], params[BLUR_NAME], 1.0)  # no 0/0 on skipped views
        blurred = image_ops.gaussian_blur(view, sigma, spec.blur_kernel_size)
        view = jnp.where(params["blur"], blurred, view)
    return jnp.where(params["solarize"], image_ops.solarize(view), view)


def action_vector(params: Params, spec: AugmentSpec) -> jax.Array:
    """The (d,) float32 vector ``[i, j, h, w, b, c, s, hue, (sigma)]`` of one view (spec §6.3)."""
    return jnp.stack([jnp.asarray(params[name], jnp.float32) for name in param_names(spec)], -1)


def _tree_concat_last(first: Params, last: Params) -> Params:
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]], axis=0), first, last)


def _check_specs(obs_spec: AugmentSpec, target_spec: AugmentSpec, num_views: int) -> None:
    if num_views < 2:
        raise ValueError(
            f"num_views={num_views}: a sequence is M_tr >= 1 observations plus the target view."
        )
    if obs_spec.use_blur != target_spec.use_blur:
        raise ValueError(
            "obs_spec and target_spec disagree on use_blur, so their parameter vectors would "
            "have different lengths; build both with official_view_specs(size, use_blur)."
        )


def sample_sequence_params(
    key: jax.Array,
    num_views: int,
    obs_spec: AugmentSpec,
    target_spec: AugmentSpec,
    source_hw: Sequence[int | jax.Array],
) -> Params:
    """Params of V views (leading axis V): V - 1 from ``obs_spec``, the last from target_spec."""
    _check_specs(obs_spec, target_spec, num_views)
    keys = jax.random.split(key, num_views)
    observations = jax.vmap(lambda k: sample_view_params(k, obs_spec, source_hw))(keys[:-1])
    return _tree_concat_last(observations, sample_view_params(keys[-1], target_spec, source_hw))


def apply_sequence(
    image01: jax.Array,
    params: Params,
    obs_spec: AugmentSpec,
    target_spec: AugmentSpec,
    out_size: int,
) -> tuple[jax.Array, jax.Array]:
    """Renders V views from sequence params; returns (views (V, S, S, 3), params (V, d)).

    When both specs render alike (the official pair differs only in probabilities), all V views
    go through one vmap: a smaller program that compiles and runs faster.
    """
    _check_specs(obs_spec, target_spec, params["crop_i"].shape[0])
    render = functools.partial(apply_view, image01, out_size=out_size)
    if _rendering(obs_spec) == _rendering(target_spec):
        views = jax.vmap(lambda p: render(p, obs_spec))(params)
    else:
        observations = jax.tree.map(lambda a: a[:-1], params)
        target = jax.tree.map(lambda a: a[-1], params)
        views = jnp.concatenate(
            [
                jax.vmap(lambda p: render(p, obs_spec))(observations),
                render(target, target_spec)[None],
            ]
        )
    # Both specs have the same slots (_check_specs), so one vector layout serves all views.
    return views, jax.vmap(lambda p: action_vector(p, obs_spec))(params)


def augment_sequence(
    key: jax.Array,
    image_uint8: jax.Array,
    num_views: int,
    obs_spec: AugmentSpec,
    target_spec: AugmentSpec,
    out_size: int,
) -> tuple[jax.Array, jax.Array]:
    """One uint8 (H, W, 3) source -> (views in [0, 1] (V, S, S, 3), params (V, d)).

    Views 0..V-2 are observations (``obs_spec``), view V-1 is the target (``target_spec``).
    """
    image_uint8 = jnp.asarray(image_uint8)
    if image_uint8.ndim != 3 or image_uint8.shape[-1] != 3 or image_uint8.dtype != jnp.uint8:
        raise ValueError(
            f"augment_sequence expects one uint8 (H, W, 3) image, got {image_uint8.dtype} "
            f"{image_uint8.shape}; decode to uint8 RGB first."
        )
    source_hw = image_uint8.shape[:2]
    params = sample_sequence_params(key, num_views, obs_spec, target_spec, source_hw)
    image01 = image_uint8.astype(jnp.float32) / 255.0
    return apply_sequence(image01, params, obs_spec, target_spec, out_size)


@functools.partial(jax.jit, static_argnames=("num_views", "obs_spec", "target_spec", "out_size"))
def augment_batch(
    keys: jax.Array,
    images_uint8: jax.Array,
    num_views: int,
    obs_spec: AugmentSpec,
    target_spec: AugmentSpec,
    out_size: int,
    mean: jax.Array | Sequence[float],
    std: jax.Array | Sequence[float],
) -> tuple[jax.Array, jax.Array]:
    """Per-example :func:`augment_sequence` over a batch, normalised ``(x - mean) / std``.

    ``keys``: (B,) typed keys or (B, 2) raw uint32 keys, one per example (derive them with
    :func:`seqjepa_jax.data.view_makers.example_keys` so that sharding does not change the
    data: the parameters of an example are bit-identical in any batch; its pixels agree to
    float32 rounding, ~1e-6, because XLA may vectorise a different batch size differently).
    ``images_uint8``: (B, H, W, 3).
    Returns (views float32 (B, V, S, S, 3), params (B, V, d)).
    """
    if images_uint8.ndim != 4 or images_uint8.shape[-1] != 3 or images_uint8.dtype != jnp.uint8:
        raise ValueError(
            f"augment_batch expects uint8 images (B, H, W, 3), got {images_uint8.dtype} "
            f"{images_uint8.shape}."
        )
    if keys.shape[0] != images_uint8.shape[0]:
        raise ValueError(
            f"Got {keys.shape[0]} keys for {images_uint8.shape[0]} images; pass one key per "
            "example."
        )
    views, params = jax.vmap(
        lambda k, x: augment_sequence(k, x, num_views, obs_spec, target_spec, out_size)
    )(keys, images_uint8)
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (views - mean) / std, params


def action_scale(spec: AugmentSpec, source_hw: Sequence[int]) -> np.ndarray:
    """The library's default fixed divisor of each parameter slot, shape (d,).

    Why: the raw slots live on unrelated scales (crop in source pixels, up to 32 or 64; jitter
    factors around 1 with widths 0.8/0.4; hue in +-0.1; sigma up to 2). Dividing each slot by the
    width of its sampling range puts every coordinate on a unit-width range, using only the spec
    and the source size. Unlike the official per-sample L2 normalisation along the view axis
    (quirk Q4), the action between two observations then never depends on the target view or on
    V. Offsets (e.g. centring jitter factors at 1) cancel in the differences, so only the scale
    matters. Divisors: crop i, h by the source height and j, w by its width; brightness /
    contrast / saturation by ``hi - lo`` of their factor range; hue by ``2 * hue``; sigma by
    ``sigma_max`` (its values are 0 or in ``[sigma_min, sigma_max]``). A zero-width range (the
    slot is constant) keeps divisor 1.
    """
    height, width = (float(s) for s in source_hw)
    widths = [height, width, height, width]
    for strength in (spec.brightness, spec.contrast, spec.saturation):
        widths.append((1.0 + strength) - max(0.0, 1.0 - strength))
    widths.append(2.0 * spec.hue)
    if spec.use_blur:
        widths.append(spec.blur_sigma[1])
    return np.array([w if w > 0 else 1.0 for w in widths], np.float32)


def l2_normalize_views(params: jax.Array) -> jax.Array:
    """Official ``F.normalize(p, p=2, dim=1)`` of (B, V, d) params along the VIEW axis (Q4)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(params), axis=1, keepdims=True))
    return params / jnp.maximum(norm, _Q4_EPS)


def actions_from_params(
    params: jax.Array,
    normalize_across_views: bool = False,
    scale: jax.Array | np.ndarray | None = None,
) -> jax.Array:
    """Relative actions (B, V-1, d): ``actions[:, j] = p[:, j+1] - p[:, j]`` (spec §2.2 step 3).

    The last row, target minus last observation, conditions the predictor. Parameters are first
    divided by ``scale`` (the library default: pass ``action_scale(spec, source_hw)``), or, with
    ``normalize_across_views=True``, L2-normalised per sample and coordinate along the view axis
    exactly as the official engine does (quirk Q4; ``scale`` is then not used).
    """
    params = jnp.asarray(params, jnp.float32)
    if params.ndim != 3 or params.shape[1] < 2:
        raise ValueError(f"params must be (B, V >= 2, d), got shape {params.shape}.")
    if normalize_across_views:
        params = l2_normalize_views(params)
    elif scale is None:
        raise ValueError(
            "Pass scale=action_scale(spec, source_hw) (the library default) or set "
            "normalize_across_views=True for the official per-sample normalisation (Q4)."
        )
    else:
        scale = jnp.asarray(scale, jnp.float32)
        if scale.shape != (params.shape[-1],):
            raise ValueError(f"scale has shape {scale.shape}; params need ({params.shape[-1]},).")
        params = params / scale
    return params[:, 1:] - params[:, :-1]
