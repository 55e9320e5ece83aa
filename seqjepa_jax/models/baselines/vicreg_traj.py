"""VICReg-Traj (spec §8.4): VICReg on a 3-view trajectory with a straightness term.

Views 0, 1, 2 of the sequence (left, centre, right) are encoded in one BN batch of 3B images and
projected in one call (the official `(B·3, C, H, W)` reshape), with the VICReg projector. Loss
λ_inv·MSE(y_l, y_c) + λ_var·var(y_l, y_c) + λ_cov·cov(y_l, y_c) + α·traj(y_l, y_c, y_r); y_r
enters only through the trajectory term (`losses.trajectory_term`).

Two official mistakes are reproduced only behind switches (off by default):
- `official_unit_norm`: the trajectory term removes (v·y_c) y_c as if y_c had unit norm;
- `official_probe_pair` (Q15): the official engine unpacks the 4 outputs as (loss, agg_out, z1,
  z2), so the online action probe pairs (z_c, z_r) with the view 0 → 1 action; the default pairs
  (z_l, z_c), the two views that action relates. The class probe reads z_l either way.
"""

from __future__ import annotations

from typing import Any

import jax

from seqjepa_jax.models.baselines import losses
from seqjepa_jax.models.baselines.base import step_outputs_of
from seqjepa_jax.models.baselines.vicreg import VICReg, vicreg_terms, weighted_sum

TRAJECTORY_VIEWS = 3


class VICRegTraj(VICReg):
    """VICReg-Traj on views 0-2 (see the module docstring).

    Attributes:
      projector_dims: widths of the projector's Linears (official (2048, 2048, 2048)).
      inv_coeff, var_coeff, cov_coeff: VICReg's λ (official 25, 25, 1).
      alpha: weight of the trajectory term (official `--alpha` 1.0).
      official_unit_norm: the official projection that assumes a unit-norm y_c.
      official_probe_pair: the official (z_c, z_r) online probe pair (Q15).
    """

    alpha: float = 1.0
    official_unit_norm: bool = False
    official_probe_pair: bool = False

    def step_outputs(
        self,
        views: jax.Array,
        actions: jax.Array,
        targets: Any = None,
        train: bool = True,
        labels: jax.Array | None = None,
    ) -> dict[str, Any]:
        """The VICReg-Traj loss of views 0, 1, 2 (no target network)."""
        if views.shape[1] < TRAJECTORY_VIEWS:
            raise ValueError(f"VICReg-Traj needs 3 views per sequence, got {views.shape}.")
        z = self.encode(views[:, :TRAJECTORY_VIEWS], train=train)  # (B, 3, D)
        batch = z.shape[0]
        y = self.projector(z.reshape(batch * TRAJECTORY_VIEWS, -1), train=train)
        y = y.reshape(batch, TRAJECTORY_VIEWS, -1)
        y_left, y_centre, y_right = y[:, 0], y[:, 1], y[:, 2]
        terms = vicreg_terms(y_left, y_centre, (self.gather(y_left), self.gather(y_centre)))
        terms["trajectory"] = losses.trajectory_term(
            y_left, y_centre, y_right, official_unit_norm=self.official_unit_norm
        )
        loss = weighted_sum(terms, {**self.weights(), "trajectory": self.alpha})
        first, second = (1, 2) if self.official_probe_pair else (0, 1)
        return step_outputs_of(loss, z[:, first], z[:, second], (z,), terms, class_features=z[:, 0])
