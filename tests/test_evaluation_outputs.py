"""Evaluation outputs: the Table 1 Markdown, the M_tr × M_val heatmap grid, projections, strips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from seqjepa_jax.evaluation import plots, tables


def fake_results(m_tr, accuracies, kind="views", states=("trained",)):
    scores = {f"agg_m{m}_accuracy": a for m, a in accuracies.items()}
    scores.update(
        encoder_accuracy=50.0,
        knn_encoder_accuracy=40.0,
        relative_rotation_r2_uniform=0.712,
        relative_rotation_r2_pooled=0.801,
    )
    return {
        "data": "procedural",
        "data_kind": kind,
        "step": 10,
        "m_tr": m_tr,
        "m_val": sorted(accuracies),
        "bn_mode": "inference",
        "knn_k": 20,
        "num_eval_sequences": 5,
        "probes": {state: dict(scores) for state in states},
    }


def test_table1_has_one_row_per_state_and_m_val_plus_the_encoder_row():
    results = fake_results(3, {3: 86.14, 5: 87.41}, states=("trained", "random_init"))
    table = tables.table1_markdown(results).splitlines()
    assert table[0].startswith("| method | top-1 (%) | k-NN top-1 (%) | relative rotation R²")
    assert len(table) == 2 + 2 * 3
    assert table[2] == "| seq-JEPA (M_tr=3, M_val=3) | 86.14 | – | 0.71 / 0.80 | – |"
    assert table[4] == "| seq-JEPA (encoder, one view) | 50.00 | 40.00 | 0.71 / 0.80 | – |"
    assert table[5].startswith("| random init (M_tr=3, M_val=3) | 86.14 |")
    full = tables.results_markdown(results)
    assert "| agg_m5_accuracy | 87.4100 | 87.4100 |" in full
    saccade = tables.table1_markdown(fake_results(4, {1: 10.0}, kind="saccade"))
    assert "relative position R²" in saccade


def test_heatmap_grid_places_and_averages_runs():
    runs = [
        fake_results(1, {1: 84.0, 3: 85.0}),
        fake_results(3, {3: 86.0, 5: 87.0}),
        fake_results(3, {3: 88.0}),  # a second seed of M_tr = 3
    ]
    m_trs, m_vals, grid = plots.heatmap_grid(runs)
    assert m_trs == [1, 3] and m_vals == [1, 3, 5]
    expected = np.array([[84.0, np.nan], [85.0, 87.0], [np.nan, 87.0]])
    np.testing.assert_array_equal(grid, expected)
    with pytest.raises(ValueError, match="No aggregate-probe"):
        plots.heatmap_grid([fake_results(1, {})])


def test_heatmap_png_and_results_loading(tmp_path):
    run = fake_results(3, {1: 80.0, 3: 86.0})
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps(run))
    assert plots.load_run_results(str(tmp_path)) == run
    with pytest.raises(ValueError, match="No evaluation results"):
        plots.load_run_results(str(tmp_path / "missing"))
    path = tmp_path / "heatmap.png"
    plots.accuracy_heatmap([run, fake_results(1, {1: 84.0})], str(path))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200


def test_rotation_angles_match_scipy():
    rotations = Rotation.from_euler("xyz", np.random.default_rng(0).uniform(-3, 3, (50, 3)))
    angles = plots.rotation_angles(rotations.as_quat())
    np.testing.assert_allclose(angles, rotations.magnitude(), atol=1e-9)
    np.testing.assert_allclose(plots.rotation_angles(-rotations.as_quat()), angles, atol=1e-9)


def test_pca_fallback_is_the_top_two_principal_components():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    points, method = plots.project_2d(x, use_umap=False)
    assert method == "PCA"
    centred = x - x.mean(axis=0)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1]
    np.testing.assert_allclose(np.var(points, axis=0, ddof=1), eigenvalues[:2], rtol=1e-4)


def test_projection_and_strip_pngs(tmp_path):
    rng = np.random.default_rng(2)
    plots.projection_figure(
        rng.normal(size=(40, 5)),
        rng.integers(0, 3, 40),
        str(tmp_path / "p.png"),
        title="t",
        colour_label="class",
        categorical=True,
        use_umap=False,
    )
    views = rng.normal(size=(4, 16, 16, 3)).astype(np.float32)
    actions = rng.normal(size=(3, 4))
    fig = plots.sequence_strip(
        views, actions, str(tmp_path / "s.png"), mean=(0.5,) * 3, std=(0.2,) * 3
    )
    assert len(fig.axes) == 4
    assert fig.axes[0].get_xlabel() == "a0→1:\n" + plots.format_action(actions[0])
    assert plots.format_action(np.array([0.5, -1.0, 0.25, 2.0])) == "+0.50 -1.00 +0.25\n+2.00"
    for name in ("p.png", "s.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"


@pytest.mark.slow
def test_umap_projection_separates_clusters():
    pytest.importorskip("umap", reason="umap-learn is the [eval] extra")
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 60)
    x = np.eye(3)[labels] * 10 + rng.normal(size=(180, 3))
    points, method = plots.project_2d(np.concatenate([x, rng.normal(size=(180, 5))], 1))
    assert method == "UMAP" and points.shape == (180, 2)
    centres = np.stack([points[labels == c].mean(axis=0) for c in range(3)])
    spread = max(points[labels == c].std(axis=0).max() for c in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 2 * spread
