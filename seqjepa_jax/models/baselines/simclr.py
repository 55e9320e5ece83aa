"""SimCLR (spec §8.1): an invariant two-view baseline with the NT-Xent loss.

Encoder, then a projector Linear(D→2048, no bias), BN, ReLU, Linear(2048→2048, no bias), BN,
ReLU, Linear(2048→2048, no bias), BN(affine=False) (`models.py:1073-1082`); each view is encoded
and projected in its own call (per-view BN batches, as the official forward). The loss is NT-Xent
over the global batch with temperature `--temp` (0.5), differentiable on every device (the
official multi-GPU gather has no gradient, Q6: `official_nondifferentiable_gather`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from seqjepa_jax.models.baselines.base import BaselineModule, in_turn, step_outputs_of
from seqjepa_jax.models.baselines.losses import nt_xent


class SimCLR(BaselineModule):
    """SimCLR on views 0 and 1 (see the module docstring).

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 2048, 2048)).
      temperature: τ of NT-Xent (official `--temp` 0.5).
    """

    projector_dims: Sequence[int] = (2048, 2048, 2048)
    temperature: float = 0.5

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.projector = self.head(self.projector_dims, output_norm=True)

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """NT-Xent of the two views' projections (no target network)."""
        z1, z2, _ = self.encode_pair(views, actions, train)
        y1, y2 = in_turn(self.projector, z1, z2, train=train)
        loss = nt_xent(self.gather(y1), self.gather(y2), self.temperature)
        return step_outputs_of(loss, z1, z2, (z1, z2))
