"""Cosine k-NN against scikit-learn (majority vote) and a brute-force numpy reference (weighted)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from seqjepa_jax.evaluation import knn, report


def clustered(rng, n, classes=5, dim=12, spread=1.5):
    centres = rng.normal(size=(classes, dim))
    labels = rng.integers(0, classes, size=n)
    return centres[labels] + spread * rng.normal(size=(n, dim)), labels


def test_majority_vote_matches_sklearn_cosine_knn():
    rng = np.random.default_rng(0)
    x, y = clustered(rng, 400)
    train_x, train_y, test_x = x[:300], y[:300], x[300:]
    for k in (1, 7, 20):
        ours = knn.knn_predict(train_x, train_y, test_x, num_classes=5, k=k, vote="majority")
        reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
        expected = reference.fit(train_x, train_y).predict(test_x)
        np.testing.assert_array_equal(ours, expected)


def test_weighted_vote_matches_brute_force_reference():
    rng = np.random.default_rng(1)
    x, y = clustered(rng, 250, classes=4)
    train_x, train_y, test_x = x[:200], y[:200], x[200:]
    k, temperature = 10, 0.07
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    expected = []
    for query in unit(test_x):
        sims = unit(train_x) @ query
        order = np.argsort(-sims)[:k]
        votes = np.zeros(4)
        for i in order:
            votes[train_y[i]] += np.exp(sims[i] / temperature)
        expected.append(np.argmax(votes))
    ours = knn.knn_predict(train_x, train_y, test_x, num_classes=4, k=k, chunk=7)
    np.testing.assert_array_equal(ours, np.array(expected))


def test_weighted_and_majority_votes_differ_when_a_close_neighbour_is_outvoted():
    # One very close neighbour of class 1 and two farther ones of class 0: the majority picks 0,
    # the temperature-weighted vote picks 1.
    train_x = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
    train_y = np.array([1, 0, 0])
    query = np.array([[1.0, 0.01]])
    assert knn.knn_predict(train_x, train_y, query, num_classes=2, k=3, vote="majority")[0] == 0
    assert knn.knn_predict(train_x, train_y, query, num_classes=2, k=3, vote="weighted")[0] == 1


def test_accuracy_is_percent_and_scale_invariant():
    rng = np.random.default_rng(2)
    x, y = clustered(rng, 300, spread=0.3)
    accuracy = knn.knn_accuracy(x[:200], y[:200], x[200:], y[200:], num_classes=5, k=5)
    assert accuracy > 95
    scaled = knn.knn_accuracy(
        x[:200] * 7.0, y[:200], x[200:] * 0.1, y[200:], num_classes=5, k=5
    )  # cosine similarity ignores norms
    assert scaled == accuracy


@pytest.mark.parametrize(
    "kwargs, message",
    [({"k": 0}, "k-NN with k=0"), ({"k": 11}, "k=11"), ({"vote": "soft"}, "Unknown k-NN vote")],
)
def test_bad_arguments_are_named(kwargs, message):
    x = np.eye(10, 3)
    with pytest.raises(ValueError, match=message):
        knn.knn_predict(x, np.zeros(10, int), x, num_classes=2, **kwargs)


def test_knn_report_scores_encoder_and_aggregates_on_labelled_rows():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 12))

    def split(n):
        y = rng.integers(0, 3, size=n)
        x = centres[y] + 0.2 * rng.normal(size=(n, 12))
        y[:5] = -1  # unlabelled rows are left out
        z = np.stack([x, rng.normal(size=x.shape)], axis=1)
        return {"z": z, "label": y, "agg_2": -x, "agg_4": rng.normal(size=x.shape)}

    train, test = split(150), split(60)
    out = report.knn_probe_report(train, test, num_classes=3, m_values=(4, 2), k=5)
    assert list(out) == ["knn_encoder_accuracy", "knn_agg_m2_accuracy", "knn_agg_m4_accuracy"]
    expected = knn.knn_accuracy(
        train["z"][5:, 0],
        train["label"][5:],
        test["z"][5:, 0],
        test["label"][5:],
        num_classes=3,
        k=5,
    )
    assert out["knn_encoder_accuracy"] == expected > 95
    assert out["knn_agg_m2_accuracy"] > 95 and out["knn_agg_m4_accuracy"] < 70
