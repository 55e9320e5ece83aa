"""BYOL (spec §8.2): an invariant two-view baseline with an EMA target network.

Projector Linear(D→2048, no bias), BN, ReLU, Linear(2048→128, no bias), BN(128, affine=False);
predictor Linear(128→2048, no bias), BN, ReLU, Linear(2048→128) with bias. The target is an EMA
copy of encoder + projector (same cosine τ schedule as seq-JEPA), run in train mode on each view.
Loss (2 - 2 cos(p1, sg y2_t)) + (2 - 2 cos(p2, sg y1_t)).

The official construction crashes from its entry point (`cifar_resnet` passed twice, Q12), so
`--method byol` never ran there; this is the model the code describes. Without EMA
(`train.use_ema=False`) the online projections are the stop-gradient targets (SimSiam-style, as
seq-JEPA without EMA); the official code would keep a frozen random target (Q39).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from seqjepa_jax.models.baselines.base import EncoderProjectorTarget, in_turn, step_outputs_of
from seqjepa_jax.models.baselines.losses import negative_cosine


class BYOL(EncoderProjectorTarget):
    """BYOL on views 0 and 1 (see the module docstring).

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 128)).
      predictor_hidden: hidden width of the predictor (official 2048).
    """

    predictor_hidden: int = 2048

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.projector = self.make_projector()
        self.predictor = self.head(
            (self.predictor_hidden, self.projector_dims[-1]), output_bias=True
        )

    @nn.nowrap
    def target_views(self, views: jax.Array) -> tuple[jax.Array, ...]:
        return views[:, 0], views[:, 1]

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """The symmetric BYOL loss against the target projections of the other view."""
        z1, z2, _ = self.encode_pair(views, actions, train)
        y1, y2 = in_turn(self.projector, z1, z2, train=train)
        p1, p2 = in_turn(self.predictor, y1, y2, train=train)
        if targets is None:
            y1_target, y2_target = y1, y2
        else:
            (_, y1_target), (_, y2_target) = targets
        loss = negative_cosine(p1, y2_target) + negative_cosine(p2, y1_target)
        return step_outputs_of(loss, z1, z2, (z1, z2))
