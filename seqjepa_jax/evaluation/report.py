"""The frozen-feature probe report: what a run learned, next to the same probes on any model.

From features extracted on a probe-training split and a held-out split (`features.py`):

- `agg_m{m}_accuracy`: linear classifier on the aggregate of m observation views (paper Table 1
  top-1, for the M_val sweep);
- `encoder_accuracy`: linear classifier on one view's encoder embedding (the official offline
  `res_classifier`, Q11);
- `relative_action_r2_*`: MLP on the encoder pair (z0, z1) → the relative action view 0 → 1 (the
  paper's relative rotation R² for the `rot` latent type; spec §7.1, §12.2);
- `individual_rotation_r2_*`: MLP on one view's embedding → its absolute quaternion (spec §7.4,
  the protocol inferred there);
each R² under both names of `metrics.py`. The online probes (trained inside the step) are scored on
the held-out split too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqjepa_jax.data.quaternion import euler_xyz_to_quaternion
from seqjepa_jax.evaluation import metrics, probes


def online_probe_report(features: dict[str, np.ndarray]) -> dict[str, float]:
    """Scores the online probes on held-out features (accuracy on labelled rows, action R²)."""
    labelled = features["label"] >= 0
    report = {
        "online_action_r2_uniform": metrics.r2_uniform(
            features["action01"], features["online_action"]
        ),
        "online_action_r2_pooled": metrics.r2_pooled(
            features["action01"], features["online_action"]
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
) -> dict[str, float]:
    """Fits every frozen-feature probe on `train` features and scores it on `test` features."""
    report: dict[str, float] = {}

    def classify(key: str) -> float:
        return probes.linear_probe_accuracy(
            train[key], train["label"], test[key], test["label"], num_classes, steps=probe_steps
        )["accuracy"]

    for m in sorted(set(m_values)):
        report[f"agg_m{m}_accuracy"] = classify(f"agg_{m}")
    report["encoder_accuracy"] = classify("z0")

    def regress(name: str, train_x: np.ndarray, train_y: np.ndarray, test_x, test_y) -> None:  # noqa: ANN001
        result = probes.mlp_regression_r2(
            train_x, train_y, test_x, test_y, hidden=probe_hidden, steps=probe_steps
        )
        report[f"{name}_r2_uniform"] = result["r2_uniform"]
        report[f"{name}_r2_pooled"] = result["r2_pooled"]

    pair = lambda f: np.concatenate([f["z0"], f["z1"]], axis=-1)  # noqa: E731
    regress("relative_action", pair(train), train["action01"], pair(test), test["action01"])
    absolute = lambda f: euler_xyz_to_quaternion(f["latents"][:, 0, :3]).astype(np.float32)  # noqa: E731
    regress("individual_rotation", train["z0"], absolute(train), test["z0"], absolute(test))
    return report
