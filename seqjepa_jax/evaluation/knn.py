"""k-nearest-neighbour classification of frozen features by cosine similarity.

The official seq-JEPA code has no k-NN evaluation (spec §7.3); this is the common SSL one. Features
are L2-normalised, so the dot product is the cosine similarity, and each test point takes the k
most similar training points. Two votes are offered:

- `"weighted"` (the default): each neighbour votes for its class with weight exp(sim / T),
  T = 0.07, the temperature-weighted vote of InstDisc (Wu et al. 2018) that DINO and solo-learn
  report as "k-NN accuracy";
- `"majority"`: one vote per neighbour, ties broken towards the smaller class id (scikit-learn's
  `KNeighborsClassifier(weights="uniform")`).

Similarities are computed in chunks of test rows in float32 numpy, so memory stays at
`chunk × N_train` floats whatever the split sizes.
"""

from __future__ import annotations

import numpy as np

VOTES = ("weighted", "majority")


def knn_predict(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    *,
    num_classes: int,
    k: int = 20,
    vote: str = "weighted",
    temperature: float = 0.07,
    chunk: int = 256,
) -> np.ndarray:
    """Predicted class ids (N_test,) of the cosine k-NN classifier (module docstring)."""
    if vote not in VOTES:
        raise ValueError(f"Unknown k-NN vote {vote!r}; use one of {VOTES}.")
    train_y = np.asarray(train_y)
    if not 1 <= k <= len(train_y):
        raise ValueError(
            f"k-NN with k={k} needs 1 <= k <= {len(train_y)} training points; lower --knn_k."
        )
    if temperature <= 0:
        raise ValueError(f"k-NN temperature must be > 0; got {temperature}.")
    train_n, test_n = _unit_rows(train_x), _unit_rows(test_x)
    predictions = np.empty(len(test_n), dtype=np.int64)
    for start in range(0, len(test_n), chunk):
        sims = test_n[start : start + chunk] @ train_n.T  # (c, N_train)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        weights = np.exp(top_sims / temperature) if vote == "weighted" else np.ones_like(top_sims)
        votes = np.zeros((len(top), num_classes), dtype=np.float64)
        np.add.at(votes, (np.arange(len(top))[:, None], train_y[top]), weights)
        predictions[start : start + chunk] = np.argmax(votes, axis=1)
    return predictions


def knn_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_classes: int,
    k: int = 20,
    vote: str = "weighted",
    temperature: float = 0.07,
) -> float:
    """Top-1 accuracy (%) of `knn_predict` on labelled test rows."""
    predictions = knn_predict(
        train_x,
        train_y,
        test_x,
        num_classes=num_classes,
        k=k,
        vote=vote,
        temperature=temperature,
    )
    return float(np.mean(predictions == np.asarray(test_y)) * 100.0)


def _unit_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
