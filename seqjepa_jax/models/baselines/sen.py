"""SEN, contrastive (spec §8.7): an equivariant-only two-view baseline.

Equivariant projector Linear(D→2048, no bias), BN, ReLU, Linear(2048→2048, no bias), BN, ReLU,
Linear(2048→2048, no bias), BN(2048, affine=False); the action view 0 → 1 embedded by the
seq-JEPA action projection (Linear(d_a→P, no bias) + BN(affine=False), `learn_act_emb`) or used
raw; predictor Linear(2048 + P → 2048, no bias) + BN(affine=False) on concat(**action, x_equi**)
(action first). Loss NTXent(ŷ_equi, y_equi) at temperature `--temp` over the global batch: there
is no invariant term. SimCLR-EquiMod (`equimod.py`) adds an invariant branch to this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from seqjepa_jax.models.baselines.base import (
    BaselineModule,
    action_conditioned,
    in_turn,
    step_outputs_of,
)
from seqjepa_jax.models.baselines.losses import nt_xent
from seqjepa_jax.models.heads import ActionProjection


class SEN(BaselineModule):
    """SEN on views 0 and 1 and their action (see the module docstring).

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 2048, 2048)); the
        predictor maps to the last width.
      learn_act_emb: embed the action (official `--learn-act-emb` 1) or use it raw.
      act_proj_dim: P (official `--act-projdim` 128).
      temperature: τ of NT-Xent (official `--temp` 0.5).
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

    def equivariant_term(
        self, z1: jax.Array, z2: jax.Array, action: jax.Array, train: bool
    ) -> jax.Array:
        """NTXent(predicted equivariant projection of view 1, its actual projection)."""
        equi1, equi2 = in_turn(self.projector_equi, z1, z2, train=train)
        action_proj = self.action_proj if self.learn_act_emb else None
        predicted = action_conditioned(self.predictor, action_proj, action, equi1, train)
        return nt_xent(self.gather(predicted), self.gather(equi2), self.temperature)

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """The equivariant NT-Xent term alone (no target network)."""
        z1, z2, action = self.encode_pair(views, actions, train)
        loss = self.equivariant_term(z1, z2, action, train)
        return step_outputs_of(loss, z1, z2, (z1, z2))
