"""Evaluation metrics with their definitions named (spec §7.3, peers_and_numbers.md §3.1).

Peers disagree on what "R²" means, and the two definitions give different numbers on quaternion
targets whose columns have very different means (the w column). Both are reported, by name:

- `r2_uniform`: R² per output column, then the unweighted mean; sklearn's `r2_score` default
  (`multioutput="uniform_average"`), which the official seq-JEPA code uses everywhere.
- `r2_pooled`: one global mean over all elements, 1 - Σ(y - ŷ)² / Σ(y - ȳ)², as SIE's and
  ContextSSL's evaluation scripts compute it.

For rotations, `geodesic_degrees` is the mean angle between predicted and true rotations: the
convention-free readout (issue 19) that neither R² gives.
"""

from __future__ import annotations

import numpy as np


def r2_uniform(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Per-column R² averaged uniformly (sklearn `r2_score` default).

    A constant target column scores 1 if predicted exactly and 0 otherwise, as in sklearn.
    """
    y, p = _as_2d(targets), _as_2d(predictions)
    residual = np.sum((y - p) ** 2, axis=0)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    scores = np.where(
        total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), (residual == 0) * 1.0
    )
    return float(np.mean(scores))


def r2_pooled(targets: np.ndarray, predictions: np.ndarray) -> float:
    """R² with a single global mean over all target elements (SIE / ContextSSL definition)."""
    y, p = _as_2d(targets), _as_2d(predictions)
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - p) ** 2) / total) if total > 0 else 0.0


def geodesic_degrees(targets: np.ndarray, predictions: np.ndarray) -> float:
    """Mean rotation angle (degrees) between predicted and true rotations, from quaternions.

    The first 4 columns of each row are a quaternion (scalar-last, spec §6.1); predictions are
    normalised first (an MLP's output is not unit-norm), and q and -q are the same rotation, so
    the angle is 2·arccos(|<q̂, q>|). Convention-free: it does not depend on the quaternion's sign
    or column order, unlike an R² over its components.
    """
    y, p = _as_2d(targets)[:, :4], _as_2d(predictions)[:, :4]
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    cosine = np.clip(np.abs(np.sum(y * p, axis=1)), 0.0, 1.0)
    return float(np.degrees(2.0 * np.arccos(cosine)).mean())


def top1_accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Top-1 accuracy in percent (argmax of the logits), as the official `accuracy_score · 100`."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels) * 100.0)


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x.reshape(x.shape[0], -1)
