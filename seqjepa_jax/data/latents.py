"""Latent types of 3DIEBench-style data: absolute poses and relative actions (spec §6.1).

Every 3DIEBench view carries a 7-vector of generating latents (spec §6.1 table):
``[rot_x, rot_y, rot_z, floor_hue, spot_theta, spot_phi, spot_hue]``, the angles being extrinsic
"xyz" Euler angles. seq-JEPA conditions on *relative* actions between consecutive views of a
sequence (DESIGN.md batch contract: ``actions[:, j]`` is the transform from view j to view j+1).

Latent types and their action dimension ``d_a`` (spec §6.1 "Latent types"):

=========  ===============================  =====================================  ===
type       absolute (per view)              relative (per pair j -> j+1)           d_a
=========  ===============================  =====================================  ===
rot        q (4)                            q_rel = R_j^-1 R_j+1 (4)               4
color      [floor_hue, spot_hue]            differences (2)                        2
rotcolor   [q, floor_hue, spot_hue]         [q_rel, d floor_hue, d spot_hue]       6
all        [q, latent[3:7]]                 [q_rel, d latent[3:7]]                 8
=========  ===============================  =====================================  ===

Deliberate differences from the official code:

- ``color`` works (official: KeyError, quirk Q14).
- ``all`` is 8-dimensional both ways (official: the relative part slices ``[3:]`` of the quaternion
  concatenation and yields 9 values, quirk Q13).

Kept exactly as in the official code (quirk Q36): quaternions are SciPy scalar-last, the sign of the
relative quaternion is the raw product sign (never canonicalised), and hue differences are plain
subtractions with no wrap-around. Quaternion maths is delegated to
:mod:`seqjepa_jax.data.quaternion` and runs in float64 (as SciPy does on the official float32
latents); the result is cast to float32.
"""

from __future__ import annotations

import numpy as np

from seqjepa_jax.data import quaternion

NUM_LATENTS = 7
"""Length of a 3DIEBench latent vector."""

LATENT_NAMES = (
    "rot_x",
    "rot_y",
    "rot_z",
    "floor_hue",
    "spot_theta",
    "spot_phi",
    "spot_hue",
)

_ACTION_DIMS = {"rot": 4, "color": 2, "rotcolor": 6, "all": 8}
LATENT_TYPES = tuple(_ACTION_DIMS)
"""The supported latent types."""

# Indices into the 7-vector of the non-rotation latents each type uses.
_OTHER_LATENTS = {"rot": [], "color": [3, 6], "rotcolor": [3, 6], "all": [3, 4, 5, 6]}
_USES_ROTATION = {"rot": True, "color": False, "rotcolor": True, "all": True}


def uses_rotation(latent_type: str) -> bool:
    """Whether actions of `latent_type` start with a (relative) quaternion; False for non-3D
    types ("aug", "saccade")."""
    return _USES_ROTATION.get(latent_type, False)


def _check_type(latent_type: str) -> str:
    if latent_type not in _ACTION_DIMS:
        raise ValueError(
            f"Unknown latent type {latent_type!r}; valid latent types are {list(LATENT_TYPES)} "
            "(spec §6.1: 'rot' = quaternion, 'color' = [floor_hue, spot_hue], 'rotcolor' = both, "
            "'all' = quaternion + all four lighting latents)."
        )
    return latent_type


def _check_latents(latents: np.ndarray, min_views: int) -> np.ndarray:
    latents = np.asarray(latents)
    if latents.ndim < 2 or latents.shape[-1] != NUM_LATENTS:
        raise ValueError(
            f"Expected latents of shape (..., V, {NUM_LATENTS}) in the 3DIEBench layout "
            f"{list(LATENT_NAMES)}, got shape {latents.shape}."
        )
    if latents.shape[-2] < min_views:
        raise ValueError(f"Need at least {min_views} views, got latents of shape {latents.shape}.")
    return latents


def action_dim(latent_type: str) -> int:
    """Dimension d_a of the absolute and the relative latents of ``latent_type`` (spec §6.1)."""
    return _ACTION_DIMS[_check_type(latent_type)]


def absolute_latents(latents: np.ndarray, latent_type: str) -> np.ndarray:
    """Absolute per-view latents of ``latent_type``: (..., V, 7) -> (..., V, d_a) float32.

    The rotation part is ``Rotation.from_euler("xyz", latents[..., :3]).as_quat()`` (scalar-last,
    not canonicalised); the rest are raw latent values (spec §6.1).
    """
    _check_type(latent_type)
    latents = _check_latents(latents, min_views=1).astype(np.float64)
    parts = []
    if _USES_ROTATION[latent_type]:
        parts.append(quaternion.euler_xyz_to_quaternion(latents[..., :3]))
    parts.append(latents[..., _OTHER_LATENTS[latent_type]])
    return np.concatenate(parts, axis=-1).astype(np.float32)


def relative_actions(latents: np.ndarray, latent_type: str) -> np.ndarray:
    """Relative actions between consecutive views: (..., V, 7) -> (..., V-1, d_a) float32.

    ``out[..., j]`` is the transform from view j to view j+1: the quaternion of R_j^-1 R_{j+1}
    (scalar-last, raw sign, spec Q36) followed by the plain differences ``x_{j+1} - x_j`` of the
    other latents of the type (no hue wrap-around, spec Q36). This is the official
    ``rel_latents`` (spec §6.1), with the ``all`` type made consistent (8 dims, spec Q13).
    """
    _check_type(latent_type)
    latents = _check_latents(latents, min_views=2).astype(np.float64)
    parts = []
    if _USES_ROTATION[latent_type]:
        q = quaternion.euler_xyz_to_quaternion(latents[..., :3])
        parts.append(quaternion.relative_quaternion(q[..., :-1, :], q[..., 1:, :]))
    other = latents[..., _OTHER_LATENTS[latent_type]]
    parts.append(other[..., 1:, :] - other[..., :-1, :])
    return np.concatenate(parts, axis=-1).astype(np.float32)


COMPOSABLE_ACTIONS = (*LATENT_TYPES, "saccade")
"""Action types whose consecutive actions compose into the transform first view -> last view."""


def compose_actions(actions: np.ndarray, latent_type: str) -> np.ndarray:
    """The cumulative transform of consecutive actions: (..., S, d_a) -> (..., d_a) float32.

    For the 3D latent types (this module's table) ``actions[..., k]`` is ``relative_actions``
    of views k -> k+1; the result is the action of view 0 -> view S as ``relative_actions`` would
    give it directly: the quaternion product of the relative rotations (R_0^-1 R_S, raw sign,
    `quaternion.compose_quaternions`) followed by the summed differences of the other latents
    (x_S - x_0, no wrap-around, Q36). For ``"saccade"`` actions are fixation differences (spec
    §3.2) and the result is the total displacement pos_S - pos_0. S = 0 gives the identity.
    Augmentation actions (``"aug"``, spec §6.3) are scaled parameter differences with no
    composition law here: ValueError.
    """
    if latent_type not in COMPOSABLE_ACTIONS:
        raise ValueError(
            f"Actions of latent type {latent_type!r} do not compose into a path; composable "
            f"types are {list(COMPOSABLE_ACTIONS)}."
        )
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim < 2:
        raise ValueError(f"Expected actions of shape (..., S, d_a), got {actions.shape}.")
    if latent_type == "saccade" or not _USES_ROTATION[latent_type]:
        return actions.sum(axis=-2).astype(np.float32)
    rotation = quaternion.compose_quaternions(actions[..., :4])
    return np.concatenate([rotation, actions[..., 4:].sum(axis=-2)], axis=-1).astype(np.float32)
