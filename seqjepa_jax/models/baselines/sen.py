"""SEN, contrastive (spec §8.7): an equivariant-only two-view baseline.

Equivariant projector Linear(D→2048, no bias), BN, ReLU, Linear(2048→2048, no bias), BN, ReLU,
Linear(2048→2048, no bias), BN(2048, affine=False); the action view 0 → 1 embedded as in EquiMod
(or raw); predictor Linear(2048 + P → 2048, no bias) + BN(affine=False) on concat(action,
x_equi). Loss NTXent(ŷ_equi, y_equi) at temperature `--temp`: there is no invariant term.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from seqjepa_jax.models.baselines.base import (
    BaselineModule,
    action_conditioned,
    step_outputs_of,
    two_view_inputs,
)
from seqjepa_jax.models.baselines.losses import nt_xent
from seqjepa_jax.models.heads import ActionProjection


class SEN(BaselineModule):
    """SEN on views 0 and 1 and their action (see the module docstring).

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 2048, 2048)).
      learn_act_emb: embed the action (official 1) or use it raw.
      act_proj_dim: P (official 128).
      temperature: τ of NT-Xent (official 0.5).
    """

    projector_dims: Sequence[int] = (2048, 2048, 2048)
    learn_act_emb: bool = True
    act_proj_dim: int = 128
    temperature: float = 0.5

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.projector_equi = self.head(self.projector_dims, output_norm=True)
        if self.learn_act_emb:
            self.action_proj = ActionProjection(
                self.act_proj_dim, self.unbiased_running_var, self.dtype
            )
        self.predictor = self.head((self.projector_dims[-1],), output_norm=True)

    def step_outputs(
        self, views: jax.Array, actions: jax.Array, targets: Any = None, train: bool = True
    ) -> dict[str, Any]:
        """NT-Xent between the predicted and the actual equivariant projection of view 1."""
        x1, x2, action = two_view_inputs(views, actions)
        z1, z2 = self.encoder(x1, train=train), self.encoder(x2, train=train)
        equi1, equi2 = self.projector_equi(z1, train=train), self.projector_equi(z2, train=train)
        action_proj = self.action_proj if self.learn_act_emb else None
        predicted = action_conditioned(self.predictor, action_proj, action, equi1, train)
        loss = nt_xent(self.gather(predicted), self.gather(equi2), self.temperature)
        return step_outputs_of(loss, z1, z2, (z1, z2))
