"""The frozen-feature probe report: what a run learned, next to the same probes on any model.

From features extracted on a probe-training split and a held-out split (`features.py`):

- `agg_m{m}_accuracy`: linear classifier on the aggregate of m observation views (paper Table 1
  top-1, for the M_val sweep);
- `encoder_accuracy`: linear classifier on one view's encoder embedding (the official offline
  `res_classifier`, Q11);
- `relative_action_r2_*`: MLP on the encoder pair (z_j, z_j+1) → the relative action view j → j+1
  (the paper's relative rotation R² for the `rot` latent type; spec §7.1, §12.2), over every
  consecutive pair of the extracted sequences (the official eval uses only views 0 and 1, Q40; more
  pairs per object make the probe far less data-starved on small datasets);
- `individual_{name}_r2_*`: MLP on one view's embedding → its absolute per-view target, over every
  view: the quaternion for 3D objects (`individual_rotation`, spec §7.4, the protocol inferred
  there), the augmentation parameter vector (`individual_augmentation`) or the fixation position
  (`individual_position`); the data layer says which (`RunData.individual_targets`);
each R² under both names of `metrics.py`. The online probes (trained inside the step) are scored on
the held-out split too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from seqjepa_jax.data.quaternion import euler_xyz_to_quaternion
from seqjepa_jax.evaluation import metrics, probes


def rotation_targets(latents: np.ndarray) -> np.ndarray:
    """Absolute quaternions (scalar-last, spec §6.1) of 3DIEBench-layout latents (..., 7)."""
    return euler_xyz_to_quaternion(latents[..., :3]).astype(np.float32)


def online_probe_report(features: dict[str, np.ndarray]) -> dict[str, float]:
    """Scores the online probes on held-out features (accuracy on labelled rows, action R²)."""
    labelled = features["label"] >= 0
    report = {
        "online_action_r2_uniform": metrics.r2_uniform(
            features["actions"][:, 0], features["online_action"]
        ),
        "online_action_r2_pooled": metrics.r2_pooled(
            features["actions"][:, 0], features["online_action"]
        ),
    }
    if labelled.any():
        report["online_accuracy"] = metrics.top1_accuracy(
            features["label"][labelled], features["online_logits"][labelled]
        )
    return report


def frozen_probe_report(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    *,
    num_classes: int,
    m_values: Sequence[int],
    probe_steps: int,
    probe_hidden: int,
    individual_name: str = "rotation",
    individual_targets: Callable[[np.ndarray], np.ndarray] = rotation_targets,
) -> dict[str, float]:
    """Fits every frozen-feature probe on `train` features and scores it on `test` features.

    `individual_targets` maps the (N, V, d) latents to the per-view targets of the individual
    probe, reported as `individual_{individual_name}_r2_*`.
    """
    report: dict[str, float] = {}

    def classify(key: str) -> float:
        return probes.linear_probe_accuracy(
            train[key], train["label"], test[key], test["label"], num_classes, steps=probe_steps
        )["accuracy"]

    for m in sorted(set(m_values)):
        report[f"agg_m{m}_accuracy"] = classify(f"agg_{m}")
    for split in (train, test):
        split["z0"] = split["z"][:, 0]
    report["encoder_accuracy"] = classify("z0")

    def regress(name: str, train_x: np.ndarray, train_y: np.ndarray, test_x, test_y) -> None:  # noqa: ANN001
        result = probes.mlp_regression_r2(
            train_x, train_y, test_x, test_y, hidden=probe_hidden, steps=probe_steps
        )
        report[f"{name}_r2_uniform"] = result["r2_uniform"]
        report[f"{name}_r2_pooled"] = result["r2_pooled"]

    regress("relative_action", *consecutive_pairs(train), *consecutive_pairs(test))
    regress(
        f"individual_{individual_name}",
        *single_views(train, individual_targets),
        *single_views(test, individual_targets),
    )
    return report


def consecutive_pairs(features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(z_j ⊕ z_j+1, action j → j+1) for every consecutive pair of views, flattened."""
    z, actions = features["z"], features["actions"]
    pairs = np.concatenate([z[:, :-1], z[:, 1:]], axis=-1)
    return pairs.reshape(-1, pairs.shape[-1]), actions.reshape(-1, actions.shape[-1])


def single_views(
    features: dict[str, np.ndarray],
    targets: Callable[[np.ndarray], np.ndarray] = rotation_targets,
) -> tuple[np.ndarray, np.ndarray]:
    """(z_j, target of view j) for every view, flattened; targets computed from the latents."""
    z = features["z"]
    y = targets(features["latents"])
    return z.reshape(-1, z.shape[-1]), y.reshape(-1, y.shape[-1])
