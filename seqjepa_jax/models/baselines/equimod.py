"""SimCLR-EquiMod (spec §8.5): SimCLR plus an action-conditioned equivariant branch.

Two projectors, invariant and equivariant, each Linear(D→1024, no bias), BN, ReLU,
Linear(1024→1024, no bias), BN, ReLU, Linear(1024→128, no bias), BN(128, affine=False). The
equivariant branch is SEN's (`sen.py`) at these widths: the action view 0 → 1 embedded (or raw),
the predictor Linear(128 + P → 128, no bias) + BN(affine=False) on concat(**action, x_equi**)
(action first, `models.py:614`). Loss equi_factor·NTXent(ŷ_equi, y_equi) + NTXent(x_inv, y_inv),
both at temperature `--temp` over the global batch. As in the official forward, the invariant
projector runs before the equivariant one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from seqjepa_jax.models.baselines.base import in_turn, step_outputs_of
from seqjepa_jax.models.baselines.losses import nt_xent
from seqjepa_jax.models.baselines.sen import SEN


class EquiMod(SEN):
    """SimCLR-EquiMod on views 0 and 1 and their action (see the module docstring).

    Attributes (besides SEN's):
      projector_dims: widths of each projector's Linears (official (1024, 1024, 128)).
      equi_factor: weight of the equivariant term (official `--equi-factor` 1.0).
    """

    projector_dims: Sequence[int] = (1024, 1024, 128)
    equi_factor: float = 1.0

    def setup(self) -> None:
        super().setup()
        self.projector_inv = self.head(self.projector_dims, output_norm=True)

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """The invariant and equivariant NT-Xent terms (no target network)."""
        z1, z2, action = self.encode_pair(views, actions, train)
        inv1, inv2 = in_turn(self.projector_inv, z1, z2, train=train)
        terms = {
            "invariant": nt_xent(self.gather(inv1), self.gather(inv2), self.temperature),
            "equivariant": self.equivariant_term(z1, z2, action, train),
        }
        loss = self.equi_factor * terms["equivariant"] + terms["invariant"]
        return step_outputs_of(loss, z1, z2, (z1, z2), terms)
