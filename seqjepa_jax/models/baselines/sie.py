"""SIE (spec §8.8): split invariant-equivariant VICReg with a hypernetwork predictor.

The encoder output is split: the first D/2 dimensions are invariant, the other D/2 equivariant
(256 / 256 for ResNet-18, `models.py:913-914`). Each half has its own projector Linear(D/2→1024)
with bias, BN, ReLU, Linear(1024→1024) with bias, BN, ReLU, Linear(1024→1024, no bias). The
predictor (`ParametrizedNet`, `:861-898`) is linear in the equivariant projection with a
per-sample matrix made by a bias-free hypernetwork from the raw action: W(a) = reshape(H a) of
shape (E, E), ŷ = W(a) x (no activation, no bias, no learned action embedding).

Loss (`:1009-1054`): λ_inv·MSE(x_inv, y_inv) + equi_factor·λ_inv·MSE(ŷ_equi, y_equi)
+ λ_var·[v(x_cat)/2 + v(y_cat)/2] + λ_var·v(ŷ_equi)/2 + λ_cov·[c(x_cat) + c(y_cat)], with x_cat the
concatenated projections (2E wide) and c divided by 2E; the variance and covariance terms see the
global batch (Q6 for the official gather).

ŷ is computed as Σ_k a_k (H_k x): the same sum as building each sample's E×E matrix and applying
it, in another order, without materialising B·E² numbers (2 GB at the official B = 512, E = 1024).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqjepa_jax.models.baselines import losses
from seqjepa_jax.models.baselines.base import BaselineModule, in_turn, step_outputs_of
from seqjepa_jax.models.baselines.vicreg import weighted_sum
from seqjepa_jax.models.layers import torch_default_kernel_init


class HypernetPredictor(nn.Module):
    """ŷ = W(a) x with W(a) = reshape(H a, (E, E)), H a bias-free Linear(d_a → E·E) initialised
    as `torch.nn.Linear` (U(±1/√d_a)). Its kernel is stored (d_a, E·E), row-major (out, in)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, action: jax.Array) -> jax.Array:
        """x (B, E), action (B, d_a) → (B, E), float32."""
        e = self.features
        kernel = self.param("kernel", torch_default_kernel_init, (action.shape[-1], e * e))
        per_action = jnp.einsum(
            "bi,koi->bko", x.astype(jnp.float32), kernel.reshape(-1, e, e)
        )  # H_k x for every action component k
        return jnp.einsum("bk,bko->bo", action.astype(jnp.float32), per_action)


class SIE(BaselineModule):
    """SIE on views 0 and 1 and their raw action (see the module docstring).

    Attributes:
      projector_dims: widths of each half's projector Linears (official (1024, 1024, 1024)).
      inv_coeff, var_coeff, cov_coeff: λ_inv, λ_var, λ_cov (official 25, 25, 1).
      equi_factor: weight of the equivariant term relative to λ_inv (official 1.0).
    """

    projector_dims: Sequence[int] = (1024, 1024, 1024)
    inv_coeff: float = 25.0
    var_coeff: float = 25.0
    cov_coeff: float = 1.0
    equi_factor: float = 1.0

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.projector_inv = self.head(self.projector_dims, hidden_bias=True)
        self.projector_equi = self.head(self.projector_dims, hidden_bias=True)
        self.predictor = HypernetPredictor(self.projector_dims[-1])

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """The SIE loss (no target network)."""
        z1, z2, action = self.encode_pair(views, actions, train)
        split = self.embedding_dim // 2
        inv1, inv2 = in_turn(self.projector_inv, z1[:, :split], z2[:, :split], train=train)
        equi1, equi2 = in_turn(self.projector_equi, z1[:, split:], z2[:, split:], train=train)
        predicted = self.predictor(equi1, action)
        cat1 = self.gather(jnp.concatenate([inv1, equi1], axis=-1))
        cat2 = self.gather(jnp.concatenate([inv2, equi2], axis=-1))
        width = cat1.shape[-1]
        terms = {
            "invariance": losses.mse(inv1, inv2),
            "equivariance": losses.mse(predicted, equi2),
            "variance": losses.variance_term(cat1) / 2 + losses.variance_term(cat2) / 2,
            "prediction_variance": losses.variance_term(self.gather(predicted)) / 2,
            "covariance": losses.covariance_term(cat1, width) + losses.covariance_term(cat2, width),
        }
        loss = weighted_sum(
            terms,
            {
                "invariance": self.inv_coeff,
                "equivariance": self.equi_factor * self.inv_coeff,
                "variance": self.var_coeff,
                "prediction_variance": self.var_coeff,
                "covariance": self.cov_coeff,
            },
        )
        return step_outputs_of(loss, z1, z2, (z1, z2), terms)
