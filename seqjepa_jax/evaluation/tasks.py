"""Which frozen-feature regressions the evaluation program fits, per kind of data.

Each list follows the official offline evaluation of its data (spec §7.1, §7.2) and adds the
paper's single-view probe (spec §7.4). Targets come from the extracted features (`features.py`):
`actions` (N, V-1, d_a) for relative targets that are the model's own actions, `latents`
(N, V, d) for absolute per-view targets and for targets the action type may not include.

- 3D objects (3DIEBench, procedural; spec §7.1, §12.2):
  `relative_rotation` MLP, pair → R_j⁻¹R_j+1 as a scalar-last quaternion from the latents, so it
  is the same target for any `latent_type` (the official rotcolor evaluation, Q10);
  `individual_rotation` MLP, one view → its absolute quaternion (§7.4, inferred);
  `relative_colour` linear, pair → [Δ floor hue, Δ spot hue] (official `color_regressor`).
- Augmentations (CIFAR-100, TinyImageNet; spec §7.1 "aug"): `relative_crop` and
  `relative_jitter` MLPs and a linear `relative_blur` on the pair → the action columns
  [crop i, j, h, w | brightness, contrast, saturation, hue | blur σ]; `relative_augmentation`
  scores the three heads' predictions together (the official `R2` over 9 columns);
  `individual_augmentation` MLP, one view → its parameter vector.
- Saccades (STL-10, ImageNet; spec §7.2): `relative_position` linear, pair → fixation
  difference (official `pos_regressor`); `individual_position` MLP, one glimpse → its position.

Path integration (issue 10; not in the official code, spec §7.3 "no path-integration code"):
for each M_val = m >= 2, MLPs regress the cumulative transform from view 0 to view m-1, the
composition of the actions 0..m-2 (`latents.compose_actions`: R_0⁻¹R_m-1 with hue deltas for
3D data, the total fixation displacement for saccades), from three inputs:
`path_integration_agg_m{m}` the aggregate `agg_{m}` (it has seen exactly the observations
0..m-1 and the actions 0..m-2: the last observation token's action is zeroed),
`path_integration_encoder_m{m}` the encoder pair z_0 ⊕ z_m-1 (what aggregation adds beyond
the end points), and
`path_integration_actions_m{m}` the flattened actions 0..m-2 alone, the ceiling that a perfect
integrator reaches (model-free, so fitted once, for the trained model's report). M_val = 1 has no
path (the target is always the identity), so it is skipped; so is augmentation data, whose
actions have no composition law.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from absl import logging

from seqjepa_jax.data import kinds
from seqjepa_jax.data import latents as latents_lib
from seqjepa_jax.evaluation.report import RegressionTask, rotation_targets

CROP_COLUMNS = slice(0, 4)
JITTER_COLUMNS = slice(4, 8)
BLUR_COLUMNS = slice(8, 9)


def _action_columns(columns: slice):  # noqa: ANN202
    return lambda features: features["actions"][..., columns]


def relative_rotations(features: dict[str, np.ndarray]) -> np.ndarray:
    """(N, V-1, 4) relative quaternions of consecutive views from the 3DIEBench latents."""
    return latents_lib.relative_actions(features["latents"], "rot")


def relative_colours(features: dict[str, np.ndarray]) -> np.ndarray:
    """(N, V-1, 2) floor-hue and spot-hue differences of consecutive views (spec §6.1)."""
    return latents_lib.relative_actions(features["latents"], "color")


def _lighting_varies(config: ml_collections.ConfigDict) -> bool:
    """False for a procedural scene with fixed floor and spot (`vary_lighting=False`): its colour
    targets are all zero, so a colour probe would score nothing."""
    return config.data.name != "procedural" or bool(config.data.procedural.vary_lighting)


def regression_tasks(
    config: ml_collections.ConfigDict,
) -> tuple[tuple[RegressionTask, ...], dict[str, tuple[str, ...]]]:
    """(regression tasks, combined scores) for `config.data` (see the module docstring)."""
    kind = kinds.dataset_kind(config.data.name)
    if kind == "views":
        tasks = (
            RegressionTask("relative_rotation", "pair", relative_rotations, rotation=True),
            RegressionTask(
                "individual_rotation",
                "single",
                lambda f: rotation_targets(f["latents"]),
                rotation=True,
            ),
        )
        if _lighting_varies(config):
            tasks += (RegressionTask("relative_colour", "pair", relative_colours, head="linear"),)
        return tasks, {}
    if kind == "augment":
        tasks = [
            RegressionTask("relative_crop", "pair", _action_columns(CROP_COLUMNS)),
            RegressionTask("relative_jitter", "pair", _action_columns(JITTER_COLUMNS)),
        ]
        if config.data.augment.use_blur:
            tasks.append(
                RegressionTask(
                    "relative_blur", "pair", _action_columns(BLUR_COLUMNS), head="linear"
                )
            )
        combined = {"relative_augmentation": tuple(task.name for task in tasks)}
        tasks.append(RegressionTask("individual_augmentation", "single", lambda f: f["latents"]))
        return tuple(tasks), combined
    tasks = (
        RegressionTask("relative_position", "pair", lambda f: f["actions"], head="linear"),
        RegressionTask("individual_position", "single", lambda f: f["latents"]),
    )
    return tasks, {}


def path_integration_targets(
    features: dict[str, np.ndarray], m: int, latent_type: str
) -> np.ndarray:
    """(N, d_a) transform view 0 → view m-1: the composed actions 0..m-2 (module docstring)."""
    return latents_lib.compose_actions(features["actions"][:, : m - 1], latent_type)


def path_integration_tasks(
    config: ml_collections.ConfigDict,
    m_values: tuple[int, ...],
    *,
    actions_only: bool = True,
    aggregate: bool = True,
) -> tuple[RegressionTask, ...]:
    """The path-integration probes of each M_val >= 2 (module docstring); () where the data's
    actions do not compose (augmentations), with the reason logged. `aggregate=False` (a method
    without an aggregate) keeps the encoder and actions-alone probes."""
    latent_type = config.data.latent_type
    if latent_type not in latents_lib.COMPOSABLE_ACTIONS:
        logging.info(
            "No path integration for config.data.latent_type=%r: augmentation actions have no "
            "composition law (only %s compose).",
            latent_type,
            latents_lib.COMPOSABLE_ACTIONS,
        )
        return ()
    rotation = latents_lib.uses_rotation(latent_type)
    tasks = []
    for m in sorted(set(m_values)):
        if m < 2:
            continue  # one observation: no path, the target is the identity

        def targets(f: dict[str, np.ndarray], m: int = m) -> np.ndarray:
            return path_integration_targets(f, m, latent_type)

        if aggregate:
            tasks.append(
                RegressionTask(
                    f"path_integration_agg_m{m}",
                    lambda f, m=m: f[f"agg_{m}"],
                    targets,
                    rotation=rotation,
                )
            )
        tasks.append(
            RegressionTask(
                f"path_integration_encoder_m{m}",
                lambda f, m=m: np.concatenate([f["z"][:, 0], f["z"][:, m - 1]], axis=-1),
                targets,
                rotation=rotation,
            )
        )
        if actions_only:
            tasks.append(
                RegressionTask(
                    f"path_integration_actions_m{m}",
                    lambda f, m=m: f["actions"][:, : m - 1].reshape(len(f["actions"]), -1),
                    targets,
                    rotation=rotation,
                )
            )
    return tuple(tasks)
