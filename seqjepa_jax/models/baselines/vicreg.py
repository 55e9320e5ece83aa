"""VICReg (spec §8.3): an invariant two-view baseline with variance-covariance regularisation.

Projector Linear(D→2048) with bias, BN, ReLU, Linear(2048→2048) with bias, BN, ReLU,
Linear(2048→2048, no bias); each view encoded and projected in its own call. Loss
λ_inv·MSE(y1, y2) + λ_var·[v(y1)/2 + v(y2)/2] + λ_cov·[c(y1) + c(y2)] with the official unbiased
estimators (`losses.variance_term`, `covariance_term`) and λ = 25 / 25 / 1. The variance and
covariance terms see the global batch (the official gather carries no gradient, Q6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from seqjepa_jax.models.baselines import losses
from seqjepa_jax.models.baselines.base import BaselineModule, in_turn, step_outputs_of


def vicreg_terms(y1: jax.Array, y2: jax.Array, gathered: tuple[jax.Array, jax.Array]) -> dict:
    """Unweighted VICReg terms: invariance of (y1, y2), variance and covariance of `gathered`."""
    g1, g2 = gathered
    return {
        "invariance": losses.mse(y1, y2),
        "variance": losses.variance_term(g1) / 2 + losses.variance_term(g2) / 2,
        "covariance": losses.covariance_term(g1) + losses.covariance_term(g2),
    }


def weighted_sum(terms: dict[str, jax.Array], weights: dict[str, float]) -> jax.Array:
    """Σ weights[name] · terms[name] over the weights' names."""
    return sum(weight * terms[name] for name, weight in weights.items())


class VICReg(BaselineModule):
    """VICReg on views 0 and 1 (see the module docstring).

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 2048, 2048)).
      inv_coeff, var_coeff, cov_coeff: λ_inv, λ_var, λ_cov (official 25, 25, 1).
    """

    projector_dims: Sequence[int] = (2048, 2048, 2048)
    inv_coeff: float = 25.0
    var_coeff: float = 25.0
    cov_coeff: float = 1.0

    def setup(self) -> None:
        self.encoder = self.make_encoder()
        self.projector = self.head(self.projector_dims, hidden_bias=True)

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """The VICReg loss of the two views' projections (no target network)."""
        z1, z2, _ = self.encode_pair(views, actions, train)
        y1, y2 = in_turn(self.projector, z1, z2, train=train)
        terms = vicreg_terms(y1, y2, (self.gather(y1), self.gather(y2)))
        return step_outputs_of(weighted_sum(terms, self.weights()), z1, z2, (z1, z2), terms)

    def weights(self) -> dict[str, float]:
        """The λ of each term of `vicreg_terms`."""
        return {
            "invariance": self.inv_coeff,
            "variance": self.var_coeff,
            "covariance": self.cov_coeff,
        }
