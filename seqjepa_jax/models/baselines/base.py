"""What every baseline shares: the encoder, the MLP heads of spec §8, and the method interface.

The trainer (`train_step.py`) runs any method through one small interface, which seq-JEPA
(`models/seqjepa.py`) and every baseline module implement:

- `step_outputs(views, actions, targets, train, labels)`: the training forward on a batch of the
  contract (views (B, V, H, W, C), actions (B, V-1, d_a), labels (B,) with -1 where unknown,
  read only by the supervised reference); returns a dict with `loss` (the
  self-supervised loss, float32 scalar), `class_features` (what the online class probe reads:
  seq-JEPA's aggregate, a baseline's view-0 embedding, spec §4.1), `probe_pair` (z1 ⊕ z2, what
  the online action probe reads against `actions[:, 0]`), `embeddings` (encoder outputs, for the
  collapse indicators), `loss_terms` (named parts of the loss, logged) and optionally
  `aggregate` / `target_embedding` (logged spreads);
- `encode(images, train)`: the encoder embedding, which every probe of the evaluation reads;
- the EMA target (spec §1.2, params only): `target_network()` is its Flax structure (or None),
  `target_params_of(tree)` the part of the online params (or batch statistics) that it copies and
  averages, and `target_views(views)` the images it encodes, one train-mode BN batch each (the
  official code calls the target once per view). Its outputs reach `step_outputs` as `targets`,
  stop-gradient; `targets=None` means "no EMA": the online network encodes the target views
  itself, stop-gradient (SimSiam-style, as seq-JEPA without `--ema`, spec §1.2).

Two-view baselines take views 0 and 1 of the sequence and their relative action
`actions[:, 0]` (the official `model(x1=view0, x2=view1, rel)` call, spec §8); like the official
code they encode each view in its own call, so every BatchNorm sees one view's batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqjepa_jax.models.baselines.losses import maybe_gather
from seqjepa_jax.models.layers import BatchNorm, Linear
from seqjepa_jax.models.resnet import ResNet


class MLPHead(nn.Module):
    """Linear → BN → ReLU blocks, then a last Linear and optionally BN(affine=False): the
    projectors and predictors of spec §8 (their layer widths and bias choices are arguments).

    Attributes:
      features: width of every Linear, the last one being the output width.
      hidden_bias: bias on the hidden Linears (VICReg and SIE: yes; SimCLR/BYOL family: no).
      output_bias: bias on the last Linear.
      output_norm: end with BatchNorm(affine=False) (SimCLR, BYOL and EquiMod projectors).
      unbiased_running_var: PyTorch's running-variance update (spec §10.1).
      dtype: compute dtype; parameters and BN statistics stay float32.
    """

    features: Sequence[int]
    hidden_bias: bool = False
    output_bias: bool = False
    output_norm: bool = False
    unbiased_running_var: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        """Maps (N, in) to float32 (N, features[-1])."""

        def norm(name: str, affine: bool = True) -> BatchNorm:
            return BatchNorm(
                use_running_average=not train,
                affine=affine,
                unbiased_running_var=self.unbiased_running_var,
                dtype=self.dtype,
                name=name,
            )

        *hidden, out = self.features
        for i, width in enumerate(hidden):
            x = Linear(width, use_bias=self.hidden_bias, dtype=self.dtype, name=f"linear{i}")(x)
            x = nn.relu(norm(f"bn{i}")(x))
        x = Linear(out, use_bias=self.output_bias, dtype=self.dtype, name=f"linear{len(hidden)}")(x)
        if self.output_norm:
            x = norm(f"bn{len(hidden)}", affine=False)(x)
        return x.astype(jnp.float32)


class EncoderProjector(nn.Module):
    """An encoder followed by a projector: the EMA target of BYOL, BYOL-conditional and
    Conv-IJEPA (spec §8.2, §8.6, §8.9). Returns (encoder embedding, projection)."""

    encoder: nn.Module
    projector: nn.Module

    def __call__(self, images: jax.Array, train: bool = True) -> tuple[jax.Array, jax.Array]:
        z = self.encoder(images, train=train)
        return z, self.projector(z, train=train)


class BaselineModule(nn.Module):
    """Fields and defaults shared by every baseline (see the module docstring).

    Attributes:
      action_dim: d_a, the width of one action (relative latent) vector.
      stem, width, stage_sizes: the ResNet encoder (spec §1.1).
      unbiased_running_var: PyTorch's running-variance update in every BN.
      official_nondifferentiable_gather: the official multi-GPU gather of the global-batch terms
        (no gradient, Q6); `losses.maybe_gather`.
      dtype: compute dtype.
    """

    action_dim: int = 4
    stem: str = "imagenet"
    width: int = 64
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    unbiased_running_var: bool = True
    official_nondifferentiable_gather: bool = False
    dtype: Any = jnp.float32

    has_aggregate: ClassVar[bool] = False

    @property
    def embedding_dim(self) -> int:
        """D, the encoder's pooled width (512 for ResNet-18)."""
        return self.width * 2 ** (len(self.stage_sizes) - 1)

    @property
    def class_feature_width(self) -> int:
        """Width of `class_features`: one view's embedding (the official `online_linprobe`
        reads z1 for every baseline, spec §4.1)."""
        return self.embedding_dim

    @nn.nowrap
    def make_encoder(self) -> ResNet:
        """The ResNet of these settings (online encoder, and the EMA target's encoder)."""
        return ResNet(
            self.stem, self.width, self.stage_sizes, self.unbiased_running_var, self.dtype
        )

    @nn.nowrap
    def head(self, features: Sequence[int], **kwargs: Any) -> MLPHead:
        """An `MLPHead` with this module's BN and dtype settings."""
        return MLPHead(
            tuple(features),
            unbiased_running_var=self.unbiased_running_var,
            dtype=self.dtype,
            **kwargs,
        )

    def encode(self, images: jax.Array, train: bool = True) -> jax.Array:
        """Encodes images (..., H, W, C) into (..., D) in one BN batch."""
        lead = images.shape[:-3]
        z = self.encoder(images.reshape((-1,) + images.shape[-3:]), train=train)
        return z.reshape(lead + (z.shape[-1],))

    def encode_pair(
        self, views: jax.Array, actions: jax.Array, train: bool
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(z1, z2, action 0 → 1): views 0 and 1 encoded in two calls (two BN batches), as the
        official two-view forwards do (spec §8)."""
        x1, x2, action = two_view_inputs(views, actions)
        return self.encoder(x1, train=train), self.encoder(x2, train=train), action

    @nn.nowrap
    def target_network(self) -> nn.Module | None:
        """The EMA target's structure; None for methods without a target network."""
        return None

    @nn.nowrap
    def target_params_of(self, tree: dict) -> Any:
        """The part of the online params (or batch statistics) that the target mirrors."""
        return None

    @nn.nowrap
    def target_views(self, views: jax.Array) -> tuple[jax.Array, ...]:
        """The images the target encodes, one BN batch each."""
        return ()

    def gather(self, x: jax.Array) -> jax.Array:
        """The features of a global-batch term (`losses.maybe_gather`, Q6)."""
        return maybe_gather(x, self.official_nondifferentiable_gather)


class EncoderProjectorTarget(BaselineModule):
    """A baseline whose EMA target is a copy of its encoder and projector (BYOL,
    BYOL-conditional, Conv-IJEPA; spec §8.2, §8.6, §8.9); subclasses say which views it encodes.

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 128)); the projector
        ends with BN(affine=False).
    """

    projector_dims: Sequence[int] = (2048, 128)

    @nn.nowrap
    def make_projector(self) -> nn.Module:
        """The projector's structure (online, and the target's copy)."""
        return self.head(self.projector_dims, output_norm=True)

    @nn.nowrap
    def target_network(self) -> nn.Module:
        return EncoderProjector(self.make_encoder(), self.make_projector())

    @nn.nowrap
    def target_params_of(self, tree: dict) -> dict:
        return {"encoder": tree["encoder"], "projector": tree["projector"]}


def in_turn(module: nn.Module, *inputs: jax.Array, train: bool) -> tuple[jax.Array, ...]:
    """`module` applied to each input in its own call (its own BN batch), in order."""
    return tuple(module(x, train=train) for x in inputs)


def step_outputs_of(
    loss: jax.Array,
    z1: jax.Array,
    z2: jax.Array,
    embeddings: Sequence[jax.Array],
    loss_terms: dict[str, jax.Array] | None = None,
    class_features: jax.Array | None = None,
) -> dict[str, Any]:
    """The `step_outputs` dict of a baseline (module docstring): the class probe reads z1 unless
    told otherwise, the action probe reads z1 ⊕ z2."""
    return {
        "loss": loss.astype(jnp.float32),
        "class_features": z1 if class_features is None else class_features,
        "probe_pair": jnp.concatenate([z1, z2], axis=-1),
        "embeddings": jnp.concatenate([e.reshape(-1, e.shape[-1]) for e in embeddings], axis=0),
        "loss_terms": dict(loss_terms or {}),
    }


def action_conditioned(
    predictor: nn.Module,
    action_proj: nn.Module | None,
    action: jax.Array,
    features: jax.Array,
    train: bool,
) -> jax.Array:
    """predictor(concat(action embedding, features)), action first (EquiMod `models.py:614`,
    SEN, BYOL-conditional `:726`, Conv-IJEPA); the raw action when `action_proj` is None."""
    if action_proj is not None:
        action = action_proj(action, train=train)
    return predictor(
        jnp.concatenate([action.astype(features.dtype), features], axis=-1), train=train
    )


def two_view_inputs(views: jax.Array, actions: jax.Array) -> tuple[jax.Array, ...]:
    """(view 0, view 1, action 0 → 1): the official two-view call (spec §8, `engine.py`)."""
    if views.shape[1] < 2:
        raise ValueError(
            f"A two-view method needs at least 2 views per sequence, got {views.shape}."
        )
    return views[:, 0], views[:, 1], actions[:, 0]
