"""seq-JEPA assembled from its parts, for every setting (spec §2 transformed views, §3 saccades).

The model consumes the batch contract of DESIGN.md and never branches on the dataset: M observation
views and M actions, `actions[:, j]` the relative transform from view j to view j+1, so
`actions[:, M-1]` leads from the last observation to the target. Forward (spec §2.2):

1. z_obs = encoder(obs views) (B, M, D), with BN statistics over all B·M images.
2. Action tokens (act_cond and learn_act_emb): e_pred = ActionProj(actions[:, M-1]) and
   E = ActionProj(actions) (B, M, P), in the official order for the setting (`pred_action_first`:
   predictor action first for transformed views, observations first for saccades, Q30). The last
   observation's embedding is zeroed *after* projection, so the BN statistics include those rows
   (Q29); with `zero_last_action_before_projection` the rows are zero before projection as well, as
   in the official augmentation and saccade paths.
   Without learned embeddings the raw actions are zero-padded so that D + d_a + pad is a multiple of
   the heads (spec §2.1), and the predictor gets the real last action (fixing Q7).
3. tokens = concat(z_obs, E) (B, M, D+P); X = concat([AGG], tokens); agg_out = Aggregator(X)[:, 0].
4. pred = Predictor(concat(agg_out, e_pred)) (aggregate first), or Predictor(agg_out) without
   action conditioning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqjepa_jax.models.aggregator import Aggregator
from seqjepa_jax.models.heads import ActionProjection, Predictor
from seqjepa_jax.models.resnet import ResNet


class SeqJEPA(nn.Module):
    """The online side of seq-JEPA: encoder, action projection, aggregator with [AGG], predictor.

    The EMA target encoder is a second `ResNet` with the same attributes (see `encoder_of`),
    held in the train state; it is not a submodule, so its parameters are never differentiated.

    Attributes:
      action_dim: d_a, the width of one action vector (4 for rotation quaternions).
      stem, width, stage_sizes: the ResNet encoder (spec §1.1).
      act_cond: condition the tokens and the predictor on actions (paper's "w/o act cond" = False).
      learn_act_emb: embed actions with `ActionProjection` (else use raw, zero-padded actions).
      act_proj_dim: P, the action-embedding width (official 128).
      num_heads, num_layers, mlp_ratio, dropout_rate: the aggregator (spec §1.4).
      pred_hidden: hidden width of the predictor (official 1024; <= 0 for the linear variant).
      pred_action_first: project the predictor's action before the observation actions (Q30).
      zero_last_action_before_projection: zero the last observation's action before projecting it
        too (the official augmentation/saccade paths; Q29).
      unbiased_running_var: PyTorch's running-variance update in every BN (spec §10.1).
      dtype: compute dtype (parameters, BN statistics, LayerNorms and the loss stay float32).
    """

    action_dim: int = 4
    stem: str = "imagenet"
    width: int = 64
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    act_cond: bool = True
    learn_act_emb: bool = True
    act_proj_dim: int = 128
    num_heads: int = 4
    num_layers: int = 3
    mlp_ratio: int = 4
    dropout_rate: float = 0.1
    pred_hidden: int = 1024
    pred_action_first: bool = True
    zero_last_action_before_projection: bool = False
    unbiased_running_var: bool = True
    dtype: Any = jnp.float32

    has_aggregate: ClassVar[bool] = True

    def setup(self) -> None:
        self.encoder = encoder_of(self)
        if self.act_cond and self.learn_act_emb:
            self.action_proj = ActionProjection(
                self.act_proj_dim, self.unbiased_running_var, self.dtype
            )
        self.agg_token = self.param(
            "agg_token",
            nn.initializers.zeros,
            (1, 1, self.token_width(self.action_dim)),
            jnp.float32,
        )
        self.aggregator = Aggregator(
            self.num_layers, self.num_heads, self.mlp_ratio, self.dropout_rate, self.dtype
        )
        self.predictor = Predictor(
            self.embedding_dim, self.pred_hidden, self.unbiased_running_var, self.dtype
        )

    @property
    def embedding_dim(self) -> int:
        """D, the encoder's pooled width (512 for ResNet-18)."""
        return self.width * 2 ** (len(self.stage_sizes) - 1)

    @property
    def class_feature_width(self) -> int:
        """Width of the aggregate that the online class probe reads (spec §2.3: 640)."""
        return self.token_width(self.action_dim)

    def token_width(self, action_dim: int) -> int:
        """Width of the aggregator tokens for actions of width d_a (spec §2.1 table)."""
        if not self.act_cond:
            return self.embedding_dim
        if self.learn_act_emb:
            return self.embedding_dim + self.act_proj_dim
        return self.embedding_dim + action_dim + self.raw_action_padding(action_dim)

    def raw_action_padding(self, action_dim: int) -> int:
        """Zeros appended to raw actions so that D + d_a + pad is a multiple of the heads."""
        return -(self.embedding_dim + action_dim) % self.num_heads

    def encode(self, images: jax.Array, train: bool = True) -> jax.Array:
        """Encodes images (..., H, W, C) into (..., D) with the online encoder."""
        lead = images.shape[:-3]
        z = self.encoder(images.reshape((-1,) + images.shape[-3:]), train=train)
        return z.reshape(lead + (z.shape[-1],))

    def aggregate(
        self, obs_views: jax.Array, actions: jax.Array, train: bool = True
    ) -> dict[str, jax.Array]:
        """Encodes M observation views (B, M, H, W, C), then `aggregate_embeddings`."""
        return self.aggregate_embeddings(self.encode(obs_views, train=train), actions, train=train)

    def aggregate_embeddings(
        self, z_obs: jax.Array, actions: jax.Array, train: bool = True
    ) -> dict[str, jax.Array]:
        """Aggregates M encoded observations with their outgoing actions.

        Args:
          z_obs: (B, M, D) encoder embeddings of the observation views.
          actions: (B, M, d_a); row j leads from view j to view j+1, row M-1 to the target (its
            embedding is zeroed in the token and used only to condition the predictor).
          train: BN batch statistics and dropout when True.

        Returns:
          A dict with "agg_out" (B, token width), "z_obs" (B, M, D) and "action_embedding" (B, P or
          d_a + pad) of the predictor's action (zeros without action conditioning).
        """
        batch, num_obs = z_obs.shape[:2]
        if actions.shape != (batch, num_obs, self.action_dim):
            raise ValueError(
                f"Expected actions of shape {(batch, num_obs, self.action_dim)} for {num_obs} "
                f"observation views, got {actions.shape}."
            )
        action_dim = self.action_dim
        last_obs = jnp.arange(num_obs) == num_obs - 1  # (M,)
        pred_action = actions[:, num_obs - 1]
        if not self.act_cond:
            tokens = z_obs
            pred_embedding = jnp.zeros((batch, 0), jnp.float32)
        elif self.learn_act_emb:
            obs_actions = actions
            if self.zero_last_action_before_projection:
                obs_actions = jnp.where(last_obs[None, :, None], 0.0, actions)
            flat_obs_actions = obs_actions.reshape(batch * num_obs, action_dim)
            if self.pred_action_first:
                pred_embedding = self.action_proj(pred_action, train=train)
                obs_embedding = self.action_proj(flat_obs_actions, train=train)
            else:
                obs_embedding = self.action_proj(flat_obs_actions, train=train)
                pred_embedding = self.action_proj(pred_action, train=train)
            obs_embedding = obs_embedding.reshape(batch, num_obs, -1)
            obs_embedding = jnp.where(last_obs[None, :, None], 0.0, obs_embedding)
            tokens = jnp.concatenate([z_obs.astype(self.dtype), obs_embedding], axis=-1)
        else:
            pad = self.raw_action_padding(action_dim)
            padded = jnp.pad(actions, ((0, 0), (0, 0), (0, pad)))
            pred_embedding = padded[:, num_obs - 1]
            obs_raw = jnp.where(last_obs[None, :, None], 0.0, padded)
            tokens = jnp.concatenate([z_obs, obs_raw.astype(z_obs.dtype)], axis=-1)
        width = tokens.shape[-1]
        sequence = jnp.concatenate(
            [jnp.broadcast_to(self.agg_token, (batch, 1, width)).astype(tokens.dtype), tokens],
            axis=1,
        )
        agg_out = self.aggregator(sequence, train=train)[:, 0]
        return {"agg_out": agg_out, "z_obs": z_obs, "action_embedding": pred_embedding}

    def predict(
        self, agg_out: jax.Array, action_embedding: jax.Array, train: bool = True
    ) -> jax.Array:
        """The predictor on (agg_out ⊕ action embedding), aggregate first (spec §2.2 step 7)."""
        inputs = agg_out
        if self.act_cond:
            inputs = jnp.concatenate([agg_out, action_embedding.astype(agg_out.dtype)], axis=-1)
        return self.predictor(inputs, train=train)

    def __call__(
        self,
        obs_views: jax.Array,
        actions: jax.Array,
        target_views: jax.Array | None = None,
        train: bool = True,
    ) -> dict[str, jax.Array]:
        """Full forward: aggregate, predict, and (without EMA) encode the target online.

        Args:
          obs_views: (B, M, H, W, C).
          actions: (B, M, d_a), the first M rows of the batch contract's actions.
          target_views: (B, H, W, C). If given, the *online* encoder encodes them after the
            observations and the result is stop-gradient (the official no-EMA SimSiam-style path,
            spec §1.2); with an EMA target, pass None and encode the target outside.
          train: training mode (BN batch statistics, dropout).

        Returns:
          The `aggregate` dict plus "prediction" (B, D) and, with target_views, "z_target" (B, D).
        """
        out = self.aggregate(obs_views, actions, train=train)
        if target_views is not None:
            out["z_target"] = jax.lax.stop_gradient(self.encode(target_views, train=train))
        out["prediction"] = self.predict(out["agg_out"], out["action_embedding"], train=train)
        return out

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: tuple[jax.Array, ...] | None = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """The trainer's interface (`models/baselines/base.py`) on a batch of the contract
        (`labels` are unused: seq-JEPA is self-supervised).

        Views 0..M-1 are the observations, view M the target; `targets` holds the EMA target
        encoder's embedding of view M (stop-gradient), or None to encode it online (no EMA).
        The online action probe reads z1 ⊕ z2 with z2 the second observation, or the target's
        embedding when there is one observation (spec §2.2 step 9, Q35).
        """
        num_obs = views.shape[1] - 1
        out = self(
            views[:, :num_obs],
            actions[:, :num_obs],
            target_views=views[:, num_obs] if targets is None else None,
            train=train,
        )
        z_target = out["z_target"] if targets is None else targets[0]
        z_obs = out["z_obs"]
        z2 = z_obs[:, 1] if num_obs >= 2 else z_target
        return {
            "loss": prediction_loss(out["prediction"], z_target),
            "class_features": out["agg_out"],
            "probe_pair": jnp.concatenate([z_obs[:, 0], z2], axis=-1),
            "embeddings": z_obs.reshape(-1, z_obs.shape[-1]),
            "loss_terms": {},
            "aggregate": out["agg_out"],
            "target_embedding": z_target,
        }

    @nn.nowrap
    def target_network(self) -> ResNet:
        """The EMA target: a copy of the encoder (spec §1.2)."""
        return encoder_of(self)

    @nn.nowrap
    def target_params_of(self, tree: dict) -> Any:
        """The encoder's subtree of the online params or batch statistics."""
        return tree["encoder"]

    @nn.nowrap
    def target_views(self, views: jax.Array) -> tuple[jax.Array, ...]:
        """The target view (the last of the sequence), one BN batch."""
        return (views[:, -1],)


def encoder_of(model: SeqJEPA) -> ResNet:
    """The ResNet of a SeqJEPA's settings: the online encoder, and the EMA target's structure."""
    return ResNet(
        model.stem, model.width, model.stage_sizes, model.unbiased_running_var, model.dtype
    )


def prediction_loss(
    prediction: jax.Array, target: jax.Array, eps: float = 1e-8, *, stop_gradient: bool = True
) -> jax.Array:
    """L = 1 - mean_b cos(pred_b, sg(target_b)) (spec §1.7), in float32.

    Each norm is clamped at eps as in `torch.nn.CosineSimilarity(eps=1e-8)`. `stop_gradient=False`
    lets gradients reach the target too (Conv-IJEPA's official undetached target, Q17).
    """
    prediction = prediction.astype(jnp.float32)
    target = target.astype(jnp.float32)
    if stop_gradient:
        target = jax.lax.stop_gradient(target)
    dot = jnp.sum(prediction * target, axis=-1)
    norms = jnp.maximum(jnp.linalg.norm(prediction, axis=-1), eps) * jnp.maximum(
        jnp.linalg.norm(target, axis=-1), eps
    )
    return 1.0 - jnp.mean(dot / norms)


def tie_initial_aggregator_layers(params: dict) -> dict:
    """Gives every aggregator layer the initial weights of layer 0 (official deepcopy, Q37).

    `torch.nn.TransformerEncoder` deep-copies one layer, so the official layers start identical;
    they diverge with training. Applied once, to freshly initialised parameters.
    """
    aggregator = dict(params["aggregator"])
    layer_names = sorted(k for k in aggregator if k.startswith("layer_"))
    for name in layer_names[1:]:
        aggregator[name] = jax.tree.map(jnp.copy, aggregator[layer_names[0]])
    return {**params, "aggregator": aggregator}
