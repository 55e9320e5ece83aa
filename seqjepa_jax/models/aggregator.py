"""The seq-JEPA aggregator: PyTorch's post-norm `nn.TransformerEncoder` plus a final LayerNorm.

Spec §1.4 (official `TransformerEncoder_`, `models.py:11-51`), reproduced layer for layer:

- post-norm layers: x = LN1(x + Drop(MHA(x))); x = LN2(x + Drop(FFN(x))), FFN = Linear(E→rE), ReLU,
  Drop, Linear(rE→E); LayerNorm eps 1e-5; dropout p=0.1 in four places (attention probabilities,
  after attention, inside the FFN, after the FFN), dropped per element (PyTorch semantics; Flax's
  `broadcast_dropout` would drop whole rows);
- an extra LayerNorm after the last layer, so the output passes two LayerNorms in a row;
- init: xavier-uniform over the fused (3E, E) QKV matrix with zero QKV bias, zero out-projection
  bias, PyTorch's default Linear init elsewhere;
- no positional embedding and no mask: the aggregator is permutation-equivariant over tokens; order
  enters only through the relative-action embeddings (spec §1.4, Q37).

`nn.TransformerEncoder` deep-copies one layer, so officially every layer *starts with identical
weights* (Q37). That is a property of the initial values, not of the module: see
`seqjepa_jax.models.seqjepa.tie_initial_aggregator_layers`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqjepa_jax.models.layers import Linear, xavier_uniform


class MultiHeadSelfAttention(nn.Module):
    """`torch.nn.MultiheadAttention(E, heads, dropout, batch_first=True)` as self-attention."""

    num_heads: int
    dropout_rate: float = 0.1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        batch, length, width = x.shape
        if width % self.num_heads:
            raise ValueError(
                f"Aggregator width {width} is not divisible by num_heads={self.num_heads}."
            )
        head_dim = width // self.num_heads
        # Fused in-projection: Flax kernel (E, 3E) is torch's in_proj_weight (3E, E) transposed, so
        # xavier-uniform over it has the same fan-in + fan-out = 4E as PyTorch's.
        qkv = Linear(
            3 * width, kernel_init=xavier_uniform, zero_bias=True, dtype=self.dtype, name="in_proj"
        )(x)
        qkv = qkv.reshape(batch, length, 3, self.num_heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(head_dim)
        weights = jax.nn.softmax(logits, axis=-1)
        weights = nn.Dropout(self.dropout_rate, broadcast_dims=())(weights, deterministic)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), v)
        out = out.reshape(batch, length, width)
        return Linear(width, zero_bias=True, dtype=self.dtype, name="out_proj")(out)


class PostNormEncoderLayer(nn.Module):
    """`torch.nn.TransformerEncoderLayer(E, heads, r*E, dropout, relu, norm_first=False)`."""

    num_heads: int
    mlp_ratio: int = 4
    dropout_rate: float = 0.1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        width = x.shape[-1]

        def dropout(y: jax.Array) -> jax.Array:
            return nn.Dropout(self.dropout_rate)(y, deterministic)

        def layer_norm(name: str) -> nn.LayerNorm:
            return nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.float32, name=name)

        attended = MultiHeadSelfAttention(
            self.num_heads, self.dropout_rate, dtype=self.dtype, name="self_attn"
        )(x, deterministic)
        x = layer_norm("norm1")(x + dropout(attended))
        hidden = Linear(width * self.mlp_ratio, dtype=self.dtype, name="linear1")(x)
        hidden = dropout(nn.relu(hidden))
        hidden = Linear(width, dtype=self.dtype, name="linear2")(hidden)
        return layer_norm("norm2")(x + dropout(hidden))


class Aggregator(nn.Module):
    """A stack of post-norm layers followed by the extra final LayerNorm (`post_norm=True`).

    Attributes:
      num_layers: number of encoder layers (official 3).
      num_heads: attention heads (official 4).
      mlp_ratio: FFN width as a multiple of the token width (official 4).
      dropout_rate: dropout probability in the four places (official 0.1).
      dtype: compute dtype; LayerNorms and softmax run in float32.
    """

    num_layers: int = 3
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout_rate: float = 0.1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, train: bool = True) -> jax.Array:
        """Maps tokens (B, T, E) to contextualised tokens (B, T, E) in float32."""
        x = tokens
        for i in range(self.num_layers):
            x = PostNormEncoderLayer(
                self.num_heads, self.mlp_ratio, self.dropout_rate, self.dtype, name=f"layer_{i}"
            )(x, not train)
        return nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name="final_norm")(x)
