"""View makers: host batches of source images -> the DESIGN.md batch contract, on the accelerator.

A view maker is a pure JAX function of a global host batch (`image_pipeline.py`) that returns::

    views        float32 (B, V, S, S, 3)  normalised views; the last one is the target
    actions      float32 (B, V-1, d_a)    actions[:, j]: view j -> view j+1
    label        int32   (B,)
    latents      float32 (B, V, d)        absolute per-view parameters (crop/jitter/blur vector,
                                          or the normalised fixation position), for evaluation
    object_index int32   (B,)             the image's index in its split (-1 on padding)
    view_ids     int32   (B, V)           position of the view in the sequence
    mask         float32 (B,)

It runs under `jax.jit` on the batch-sharded global arrays, so augmentation and glimpse extraction
are data-parallel on the devices and cost the host nothing. Every example's random draws are keyed
on (seed, stream, epoch, sample_id) (`example_keys`), never on its position in the batch, so the
views are identical on any number of devices or hosts and after a resume.

- :class:`AugmentedViews`: M_tr observation views and one target view of a source image with the
  parameterised augmentations of spec §6.3 (`augment.py`); actions are differences of the
  parameter vectors (spec §2.2), scaled as `augment.actions_from_params` documents (Q4 flag).
- :class:`SaccadeViews`: foveal glimpses at fixations sampled from a saliency map with inhibition
  of return (spec §6.4, `saccades.py`); actions are fixation-position differences (spec §3.2).
  Without released maps the built-in spectral-residual saliency is computed on the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from seqjepa_jax import sharding
from seqjepa_jax.data import augment, pipeline, saccades
from seqjepa_jax.data import saliency as saliency_lib

ViewFn = Callable[[dict[str, jax.Array]], dict[str, jax.Array]]


def example_keys(seed: int, stream: int, epoch: int | jax.Array, sample_id: jax.Array) -> jax.Array:
    """One raw PRNG key per example, ``fold_in(fold_in(fold_in(key(seed), stream), epoch), id)``.

    `epoch` is a scalar or one value per example; `sample_id` (B,) is the example's index in its
    split, so an example's key does not depend on its position in the batch or on how the batch is
    sharded over devices and hosts.
    """
    base = jax.random.fold_in(jax.random.PRNGKey(seed), stream)
    sample_id = jnp.asarray(sample_id).astype(jnp.uint32)
    epoch = jnp.broadcast_to(jnp.asarray(epoch).astype(jnp.uint32), sample_id.shape)

    def one(e: jax.Array, i: jax.Array) -> jax.Array:
        return jax.random.fold_in(jax.random.fold_in(base, e), i)

    return jax.vmap(one)(epoch, sample_id)


def _contract(
    raw: dict[str, jax.Array], views: jax.Array, actions: jax.Array, latents: jax.Array
) -> dict[str, jax.Array]:
    b, v = views.shape[:2]
    return {
        "views": views.astype(jnp.float32),
        "actions": actions.astype(jnp.float32),
        "label": raw["label"],
        "latents": latents.astype(jnp.float32),
        "object_index": raw["sample_id"],
        "view_ids": jnp.broadcast_to(jnp.arange(v, dtype=jnp.int32), (b, v)),
        "mask": raw["mask"],
    }


@dataclasses.dataclass(frozen=True)
class AugmentedViews:
    """Augmented view sequences of CIFAR-100 / TinyImageNet images (spec §6.3).

    Attributes:
      num_views: V = M_tr + 1 (observations, then the target).
      image_size: side of the views fed to the encoder (32 for CIFAR-100, 64 for TinyImageNet).
      use_blur: False drops the blur slot (the official `--no-blur` variant, d_a 8).
      normalize_across_views: reproduce the official per-sample L2 normalisation of the
        parameters along the view axis (quirk Q4) instead of the library's fixed scaling.
      mean, std: per-channel normalisation of the views.
      seed: data seed.
    """

    num_views: int
    image_size: int
    use_blur: bool
    normalize_across_views: bool
    mean: Sequence[float]
    std: Sequence[float]
    seed: int

    @property
    def action_dim(self) -> int:
        """Length of an action (9, or 8 without blur)."""
        obs_spec, _ = augment.official_view_specs(self.image_size, self.use_blur)
        return augment.num_params(obs_spec)

    def __call__(self, raw: dict[str, jax.Array], stream: int) -> dict[str, jax.Array]:
        """Views, actions and parameter vectors of every image of `raw` (module docstring)."""
        obs_spec, target_spec = augment.official_view_specs(self.image_size, self.use_blur)
        keys = example_keys(self.seed, stream, raw["epoch"], raw["sample_id"])
        views, params = augment.augment_batch(
            keys,
            raw["image"],
            self.num_views,
            obs_spec,
            target_spec,
            self.image_size,
            tuple(self.mean),
            tuple(self.std),
        )
        actions = augment.actions_from_params(
            params,
            normalize_across_views=self.normalize_across_views,
            scale=augment.action_scale(obs_spec, raw["image"].shape[1:3]),
        )
        return _contract(raw, views, actions, params)


@dataclasses.dataclass(frozen=True)
class SaccadeViews:
    """Foveal glimpse sequences of STL-10 / ImageNet images (spec §6.4).

    Attributes:
      num_views: V = M_tr + 1 fixations (the official `--num-saccades`); the last is the target.
      fovea_size: glimpse side in pixels (honoured, unlike the official STL-10 code, Q19).
      inhibition_radius: half-side of the inhibited window (official: fovea_size // 2).
      use_saliency, inhibition_of_return: the official `--use-sal` and `--ior`.
      transposed_centre: reproduce the official transposed glimpse centre (quirk Q20).
      glimpse_from: "unit" (STL-10: glimpses of the [0, 1] image, zero padding black, then the
        PIL uint8 round trip and normalisation) or "normalised" (ImageNet: glimpses of the
        normalised image, zero padding the mean colour), spec §6.4.2-§6.4.3.
      centre_bias_weight: weight of the centre bias mixed into the built-in saliency.
      mean, std, seed: as in :class:`AugmentedViews`.
    """

    num_views: int
    fovea_size: int
    inhibition_radius: int
    use_saliency: bool
    inhibition_of_return: bool
    transposed_centre: bool
    glimpse_from: str
    centre_bias_weight: float
    mean: Sequence[float]
    std: Sequence[float]
    seed: int

    action_dim: int = 2  # (row, col) differences

    def __call__(self, raw: dict[str, jax.Array], stream: int) -> dict[str, jax.Array]:
        """Glimpses, position differences and positions of every image of `raw`."""
        images = raw["image"]
        if "saliency" in raw:
            saliency = raw["saliency"]
        elif self.use_saliency:
            saliency = jax.vmap(
                lambda im: saliency_lib.spectral_residual_saliency(
                    im, centre_bias_weight=self.centre_bias_weight
                )
            )(images)
        else:
            saliency = None
        keys = example_keys(self.seed, stream, raw["epoch"], raw["sample_id"])
        glimpses, positions = saccades.saccade_batch(
            keys,
            images,
            saliency,
            num_saccades=self.num_views,
            fovea_size=self.fovea_size,
            inhibition_radius=self.inhibition_radius,
            use_saliency=self.use_saliency,
            inhibition_of_return=self.inhibition_of_return,
            transposed_centre=self.transposed_centre,
            glimpse_from=self.glimpse_from,
            # STL-10's glimpses go through PIL (uint8 truncation) before Normalize (§6.4.2).
            quantize_uint8=self.glimpse_from == "unit",
            mean=tuple(self.mean),
            std=tuple(self.std),
        )
        return _contract(raw, glimpses, saccades.positions_to_actions(positions), positions)


def jit_view_fn(maker: AugmentedViews | SaccadeViews, mesh: Mesh, stream: int) -> ViewFn:
    """The view maker for one random stream, jitted with batch-sharded outputs."""
    return jax.jit(lambda raw: maker(raw, stream), out_shardings=sharding.batch_sharded(mesh))


def train_and_probe_view_fns(
    maker: AugmentedViews | SaccadeViews, mesh: Mesh, probe_num_views: int
) -> tuple[ViewFn, ViewFn]:
    """(training view fn, probe view fn): the probes see `probe_num_views` views per image made
    with the evaluation stream, so an image's evaluation views are fixed by the seed."""
    probe_maker = dataclasses.replace(maker, num_views=probe_num_views)
    return (
        jit_view_fn(maker, mesh, pipeline.TRAIN_VIEW_STREAM),
        jit_view_fn(probe_maker, mesh, pipeline.EVAL_VIEW_STREAM),
    )
