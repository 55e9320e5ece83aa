"""Small heads of seq-JEPA: the action projection, the predictor and the online probes.

- `ActionProjection` (spec §1.3): bias-free Linear(d_a→P) + BatchNorm(P, affine=False). It is called
  twice per forward (observation actions and the predictor's action), so its running statistics
  move twice per step (Q30).
- `Predictor` (spec §1.6): Linear(in→h, no bias), BN(h), ReLU, Linear(h→D); with `hidden <= 0` a
  bias-free Linear(in→D) + BN(D).
- `OnlineProbes` (spec §2.3, §4.1-§4.2): Linear(emb→classes) on the detached aggregate and the MLP
  2D→1024→1024→d_a on the detached pair (z1, z2). Their inputs are stop-gradient, so their losses
  never reach the self-supervised parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqjepa_jax.models.layers import BatchNorm, Linear


class ActionProjection(nn.Module):
    """Learned action embedding: Linear(d_a→P, no bias) then BatchNorm(P) without scale or shift."""

    features: int = 128
    unbiased_running_var: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, actions: jax.Array, train: bool = True) -> jax.Array:
        """Embeds actions (N, d_a) into (N, P)."""
        x = Linear(self.features, use_bias=False, dtype=self.dtype, name="linear")(actions)
        return BatchNorm(
            use_running_average=not train,
            affine=False,
            unbiased_running_var=self.unbiased_running_var,
            dtype=self.dtype,
            name="bn",
        )(x)


class Predictor(nn.Module):
    """The seq-JEPA predictor MLP mapping (aggregate ⊕ action embedding) to an encoder embedding."""

    out_features: int = 512
    hidden: int = 1024
    unbiased_running_var: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        """Maps (B, pred_in) to float32 predictions (B, out_features)."""

        def norm(name: str) -> BatchNorm:
            return BatchNorm(
                use_running_average=not train,
                unbiased_running_var=self.unbiased_running_var,
                dtype=self.dtype,
                name=name,
            )

        if self.hidden > 0:
            x = Linear(self.hidden, use_bias=False, dtype=self.dtype, name="linear1")(x)
            x = nn.relu(norm("bn1")(x))
            x = Linear(self.out_features, dtype=self.dtype, name="linear2")(x)
        else:
            x = Linear(self.out_features, use_bias=False, dtype=self.dtype, name="linear1")(x)
            x = norm("bn1")(x)
        return x.astype(jnp.float32)


class OnlineProbes(nn.Module):
    """The two probes trained inside the SSL step on stop-gradient features (spec §4.1 step 3).

    Attributes:
      num_classes: classes of the linear probe on the aggregate.
      action_dim: width of the action regressed from the encoder pair (z1, z2).
      hidden: hidden width of the action MLP (official 1024); <= 0 makes the action probe
        linear, as the official saccade recipes' `online_equiprobe` (spec §4.3).
    """

    num_classes: int
    action_dim: int
    hidden: int = 1024

    @nn.compact
    def __call__(self, agg_out: jax.Array, pair: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns (class logits from agg_out, action prediction from the (z1, z2) pair)."""
        agg_out = jax.lax.stop_gradient(agg_out.astype(jnp.float32))
        pair = jax.lax.stop_gradient(pair.astype(jnp.float32))
        logits = Linear(self.num_classes, name="class_probe")(agg_out)
        x = pair
        for i in range(2 if self.hidden > 0 else 0):
            x = nn.relu(Linear(self.hidden, name=f"action_probe_{i}")(x))
        action = Linear(self.action_dim, name="action_probe_out")(x)
        return logits, action
