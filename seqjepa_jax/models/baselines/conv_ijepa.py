"""Conv-IJEPA (spec §8.9): the saccade baseline that predicts the target glimpse's projection
from each observed glimpse separately, without aggregation.

Encoder and projector Linear(D→2048, no bias), BN, ReLU, Linear(2048→128, no bias), BN(128,
affine=False), both with EMA copies as the target; action projection Linear(d_a→P, no bias) +
BN(affine=False); predictor Linear(128 + P → pred_hidden, no bias), BN, ReLU, Linear(pred_hidden →
128). For each observation i: ŷ_i = Pred(concat(ActionProj(pos_target - pos_i), proj(z_i)));
L = mean_i (1 - mean_b cos(ŷ_i, sg(target_proj(target_enc(target glimpse))))) (`:485-494`). In
the batch contract pos_target - pos_i is the sum of the actions i..M-1. Observations are encoded
and projected in one BN batch; the action projection and the predictor run once per observation.

Official mistakes behind switches (off by default):
- `official_undetached_target` (Q17): without EMA the official target branch is not detached,
  so gradients flow into the online encoder through the target too;
- `official_probe_pair` (Q16): the official online action probe pairs the first glimpse's
  embedding with the *target* glimpse's (target-encoder) embedding against the glimpse 0 → 1
  action; the default pairs glimpses 0 and 1 (the target's embedding when M = 1, as seq-JEPA).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqjepa_jax.models.baselines.base import (
    EncoderProjectorTarget,
    action_conditioned,
    step_outputs_of,
)
from seqjepa_jax.models.heads import ActionProjection
from seqjepa_jax.models.seqjepa import prediction_loss


def actions_to_target(actions: jax.Array) -> jax.Array:
    """(B, M, d_a) → (B, M, d_a): row i is Σ_{j >= i} actions[:, j], the displacement from
    observation i to the target (actions[:, j] leads from view j to view j + 1)."""
    return jnp.flip(jnp.cumsum(jnp.flip(actions, axis=1), axis=1), axis=1)


class ConvIJEPA(EncoderProjectorTarget):
    """Conv-IJEPA on M glimpses and the target glimpse (see the module docstring).

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 128)).
      pred_hidden: hidden width of the predictor (official `--pred-hidden` 1024).
      act_proj_dim: P (official 128).
      official_undetached_target: Q17 (module docstring).
      official_probe_pair: Q16 (module docstring).
    """

    pred_hidden: int = 1024
    act_proj_dim: int = 128
    official_undetached_target: bool = False
    official_probe_pair: bool = False

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.projector = self.make_projector()
        self.action_proj = ActionProjection(
            self.act_proj_dim, self.unbiased_running_var, self.dtype
        )
        self.predictor = self.head((self.pred_hidden, self.projector_dims[-1]), output_bias=True)

    @nn.nowrap
    def target_views(self, views: jax.Array) -> tuple[jax.Array, ...]:
        return (views[:, -1],)

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """The per-observation prediction loss (module docstring)."""
        num_obs = views.shape[1] - 1
        z_obs = self.encode(views[:, :num_obs], train=train)  # (B, M, D)
        batch = z_obs.shape[0]
        y_obs = self.projector(z_obs.reshape(batch * num_obs, -1), train=train)
        y_obs = y_obs.reshape(batch, num_obs, -1)
        if targets is None:
            z_target = self.encoder(views[:, num_obs], train=train)
            y_target = self.projector(z_target, train=train)
            if not self.official_undetached_target:
                z_target, y_target = jax.lax.stop_gradient((z_target, y_target))
        else:
            ((z_target, y_target),) = targets
        to_target = actions_to_target(actions[:, :num_obs])
        per_observation = [
            prediction_loss(
                action_conditioned(
                    self.predictor, self.action_proj, to_target[:, i], y_obs[:, i], train
                ),
                y_target,
                stop_gradient=not self.official_undetached_target,
            )
            for i in range(num_obs)
        ]
        loss = sum(per_observation) / num_obs
        z2 = z_target if (self.official_probe_pair or num_obs < 2) else z_obs[:, 1]
        return step_outputs_of(loss, z_obs[:, 0], z2, (z_obs,))
