"""BYOL-conditional (spec §8.6): BYOL whose predictor is told the action from view 0 to view 1.

Projector Linear(D→2048, no bias), BN, ReLU, Linear(2048→128, no bias), BN(128, affine=False);
action projection Linear(d_a→P, no bias) + BN(affine=False); predictor Linear(P + 128 → 2048, no
bias), BN, ReLU, Linear(2048 → 128) with bias on concat(**action, y1**) (`models.py:726`). The EMA
target (encoder + projector) encodes view 1 only. Loss, one direction: 2 - 2 cos(ŷ2, sg y2_t).

As the official forward returns (loss, z1, target z2), the online action probe reads the online
view-0 embedding next to the *target* encoder's view-1 embedding. Without EMA the online network
encodes view 1 (stop-gradient), as seq-JEPA without EMA.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from seqjepa_jax.models.baselines.base import (
    EncoderProjectorTarget,
    action_conditioned,
    step_outputs_of,
    two_view_inputs,
)
from seqjepa_jax.models.baselines.losses import negative_cosine
from seqjepa_jax.models.heads import ActionProjection


class BYOLConditional(EncoderProjectorTarget):
    """BYOL-conditional on views 0 and 1 and their action (see the module docstring).

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 128)).
      predictor_hidden: hidden width of the predictor (official 2048).
      act_proj_dim: P (official `--act-projdim` 128).
    """

    predictor_hidden: int = 2048
    act_proj_dim: int = 128

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.projector = self.make_projector()
        self.action_proj = ActionProjection(
            self.act_proj_dim, self.unbiased_running_var, self.dtype
        )
        self.predictor = self.head(
            (self.predictor_hidden, self.projector_dims[-1]), output_bias=True
        )

    @nn.nowrap
    def target_views(self, views: jax.Array) -> tuple[jax.Array, ...]:
        return (views[:, 1],)

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """2 - 2 cos between the action-conditioned prediction and view 1's target projection."""
        x1, x2, action = two_view_inputs(views, actions)
        z1 = self.encoder(x1, train=train)
        y1 = self.projector(z1, train=train)
        predicted = action_conditioned(self.predictor, self.action_proj, action, y1, train)
        if targets is None:
            z2 = self.encoder(x2, train=train)
            y2_target = self.projector(z2, train=train)
            embeddings = (z1, z2)
        else:
            ((z2, y2_target),) = targets
            embeddings = (z1,)
        loss = negative_cosine(predicted, y2_target)
        return step_outputs_of(loss, z1, z2, embeddings)
