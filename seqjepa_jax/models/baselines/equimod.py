"""SimCLR-EquiMod (spec §8.5): SimCLR plus an action-conditioned equivariant branch.

Two projectors, invariant and equivariant, each Linear(D→1024, no bias), BN, ReLU,
Linear(1024→1024, no bias), BN, ReLU, Linear(1024→128, no bias), BN(128, affine=False). The
relative action view 0 → 1 is embedded by the seq-JEPA action projection (Linear(d_a→P, no bias)
+ BN(affine=False), `learn_act_emb`) or used raw; the predictor Linear(128 + P → 128, no bias) +
BN(affine=False) maps concat(**action, x_equi**) (action first, `models.py:614`) to the predicted
equivariant projection of view 1. Loss equi_factor·NTXent(ŷ_equi, y_equi) + NTXent(x_inv,
y_inv), both at temperature `--temp` over the global batch.
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


class EquiMod(BaselineModule):
    """SimCLR-EquiMod on views 0 and 1 and their action (see the module docstring).

    Attributes:
      projector_dims: widths of each projector's Linears (official (1024, 1024, 128)).
      learn_act_emb: embed the action (official `--learn-act-emb` 1) or use it raw.
      act_proj_dim: P (official `--act-projdim` 128).
      temperature: τ of both NT-Xent terms (official 0.5).
      equi_factor: weight of the equivariant term (official `--equi-factor` 1.0).
    """

    projector_dims: Sequence[int] = (1024, 1024, 128)
    learn_act_emb: bool = True
    act_proj_dim: int = 128
    temperature: float = 0.5
    equi_factor: float = 1.0

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.projector_inv = self.head(self.projector_dims, output_norm=True)
        self.projector_equi = self.head(self.projector_dims, output_norm=True)
        if self.learn_act_emb:
            self.action_proj = ActionProjection(
                self.act_proj_dim, self.unbiased_running_var, self.dtype
            )
        self.predictor = self.head((self.projector_dims[-1],), output_norm=True)

    def step_outputs(
        self, views: jax.Array, actions: jax.Array, targets: Any = None, train: bool = True
    ) -> dict[str, Any]:
        """The invariant and equivariant NT-Xent terms (no target network)."""
        x1, x2, action = two_view_inputs(views, actions)
        z1, z2 = self.encoder(x1, train=train), self.encoder(x2, train=train)
        inv1, inv2 = self.projector_inv(z1, train=train), self.projector_inv(z2, train=train)
        equi1, equi2 = self.projector_equi(z1, train=train), self.projector_equi(z2, train=train)
        action_proj = self.action_proj if self.learn_act_emb else None
        predicted = action_conditioned(self.predictor, action_proj, action, equi1, train)
        terms = {
            "invariant": nt_xent(self.gather(inv1), self.gather(inv2), self.temperature),
            "equivariant": nt_xent(self.gather(predicted), self.gather(equi2), self.temperature),
        }
        loss = self.equi_factor * terms["equivariant"] + terms["invariant"]
        return step_outputs_of(loss, z1, z2, (z1, z2), terms)
