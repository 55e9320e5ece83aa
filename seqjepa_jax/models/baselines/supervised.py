"""The supervised reference (issue 19): the same encoder trained on what the probes read.

Not a method of the paper: the ceiling a comparison needs. On views 0 and 1 of each sequence (each
encoded in its own BN batch, as the two-view baselines), a linear class head on view 0's
embedding is trained with cross-entropy on the labels (rows with label -1 are ignored) and an MLP
on (z1 ⊕ z2) (D·2 → hidden → hidden → d_a, ReLU: the shape of the relative-rotation probe, spec
§7.1) with the MSE against the relative action view 0 → 1. Loss = class_weight·CE +
action_weight·MSE. With the same encoder, data and budget as the self-supervised rows, its probe
scores say how much of a readout the architecture and the budget allow.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from seqjepa_jax.models.baselines.base import BaselineModule, step_outputs_of
from seqjepa_jax.models.baselines.losses import mse
from seqjepa_jax.models.layers import Linear


class Supervised(BaselineModule):
    """The supervised reference on views 0 and 1 (see the module docstring).

    Attributes:
      num_classes: classes of the class head (`config.data.num_classes`).
      hidden: hidden width of the action MLP.
      class_weight, action_weight: weights of the two supervised terms.
    """

    num_classes: int = 55
    hidden: int = 256
    class_weight: float = 1.0
    action_weight: float = 1.0

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.class_head = Linear(self.num_classes, name="class_head")
        self.action_head = [Linear(self.hidden), Linear(self.hidden), Linear(self.action_dim)]

    def heads(self, z1: jax.Array, z2: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(class logits from z1, predicted action view 0 → 1 from z1 ⊕ z2), float32."""
        x = jnp.concatenate([z1, z2], axis=-1)
        for layer in self.action_head[:-1]:
            x = nn.relu(layer(x))
        return self.class_head(z1).astype(jnp.float32), self.action_head[-1](x).astype(jnp.float32)

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """Class cross-entropy (labelled rows) plus the relative-action MSE."""
        z1, z2, action = self.encode_pair(views, actions, train)
        logits, predicted = self.heads(z1, z2)
        if labels is None:
            labels = jnp.full((z1.shape[0],), -1, jnp.int32)
        valid = (labels >= 0).astype(jnp.float32)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
        terms = {
            "class": jnp.sum(ce * valid) / jnp.maximum(valid.sum(), 1.0),
            "action": mse(predicted, action),
        }
        loss = self.class_weight * terms["class"] + self.action_weight * terms["action"]
        return step_outputs_of(loss, z1, z2, (z1, z2), terms)
