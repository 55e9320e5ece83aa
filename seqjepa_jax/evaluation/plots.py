"""Figures of an evaluation (PNG): the M_tr × M_val heatmap, feature projections, a view strip.

- `accuracy_heatmap`: top-1 of the aggregate probe for every (M_tr, M_val) of several runs, as
  the paper's heatmap (rows M_val, columns M_tr; peers_and_numbers.md §3.1);
- `projection_figure`: a 2-D UMAP (umap-learn) of held-out features, the paper's figure
  (`assets/umap.jpeg`, spec §7.3: aggregates coloured by class, encoder embeddings coloured by
  rotation angle; the official repository has no script for it). Without umap-learn the
  projection falls back to PCA and says so in the log and the title;
- `path_integration_figure`: path-integration R² vs M_val of the trained aggregate, the trained
  first + last encoder embeddings, the random init's aggregate and the actions alone (issue 10);
- `ood_figure`: in-distribution vs OOD bars of top-1, relative-rotation R² and path-integration
  R² (spec §6.2);
- `sequence_strip`: the views of one sequence with the action between consecutive views
  (`first_sequence_strip` for a run's data), and `object_gallery`: one view of several objects.

Figures are built with the object-oriented `matplotlib.figure.Figure` and its Agg canvas, so the
module never switches pyplot's backend (a notebook keeps its inline backend). Each function
writes its PNG and returns the Figure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import logging
from matplotlib.figure import Figure

MAX_PROJECTED_POINTS = 2000


def load_run_results(path: str) -> dict[str, Any]:
    """An evaluation's results from a workdir, its eval folder, or the results.json itself."""
    for candidate in (
        path,
        os.path.join(path, "results.json"),
        os.path.join(path, "eval", "results.json"),
    ):
        if os.path.isfile(candidate):
            with open(candidate) as f:
                results = json.load(f)
            if "m_tr" in results and "probes" in results:
                return results
    raise ValueError(
        f"No evaluation results under {path}: run python -m seqjepa_jax.evaluate on that "
        "workdir first (it writes <workdir>/eval/results.json)."
    )


def heatmap_grid(runs: Sequence[dict[str, Any]]) -> tuple[list[int], list[int], np.ndarray]:
    """(M_tr values, M_val values, top-1 grid [M_val, M_tr]); NaN where no run gives a cell.

    Runs with the same M_tr (e.g. several seeds) are averaged cell by cell.
    """
    cells: dict[tuple[int, int], list[float]] = {}
    for run in runs:
        scores = run["probes"]["trained"]
        for m in run["m_val"]:
            key = f"agg_m{m}_accuracy"
            if key in scores:
                cells.setdefault((int(run["m_tr"]), int(m)), []).append(float(scores[key]))
    if not cells:
        raise ValueError("No aggregate-probe accuracies in the given runs.")
    m_trs = sorted({m_tr for m_tr, _ in cells})
    m_vals = sorted({m_val for _, m_val in cells})
    grid = np.full((len(m_vals), len(m_trs)), np.nan)
    for (m_tr, m_val), values in cells.items():
        grid[m_vals.index(m_val), m_trs.index(m_tr)] = np.mean(values)
    return m_trs, m_vals, grid


def accuracy_heatmap(runs: Sequence[dict[str, Any]], path: str) -> Figure:
    """The M_tr × M_val top-1 heatmap of several runs' results, annotated with the values."""
    m_trs, m_vals, grid = heatmap_grid(runs)
    fig = Figure(figsize=(1.2 * len(m_trs) + 2.5, 0.6 * len(m_vals) + 1.8))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(m_trs)), [str(m) for m in m_trs])
    ax.set_yticks(range(len(m_vals)), [str(m) for m in m_vals])
    ax.set_xlabel("M_tr (training observations)")
    ax.set_ylabel("M_val (evaluation observations)")
    ax.set_title("Linear-probe top-1 (%) on the aggregate")
    for row in range(grid.shape[0]):
        for col in range(grid.shape[1]):
            if np.isfinite(grid[row, col]):
                ax.text(col, row, f"{grid[row, col]:.1f}", ha="center", va="center", color="w")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def project_2d(x: np.ndarray, *, use_umap: bool = True, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) projection of features and the method's name: UMAP if installed, else PCA."""
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    if use_umap and len(x) > 3:
        try:
            import umap
        except ImportError:
            logging.warning("umap-learn is not installed (pip install umap-learn); using PCA.")
        else:
            reducer = umap.UMAP(
                n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1), n_jobs=1
            )
            return np.asarray(reducer.fit_transform(x)), "UMAP"
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "PCA"


def projection_figure(
    features: np.ndarray,
    colours: np.ndarray,
    path: str,
    *,
    title: str,
    colour_label: str,
    categorical: bool,
    use_umap: bool = True,
    seed: int = 0,
) -> Figure:
    """Scatter of a 2-D projection of `features` coloured by `colours` (at most 2000 points)."""
    features, colours = np.asarray(features), np.asarray(colours)
    if len(features) > MAX_PROJECTED_POINTS:
        keep = np.random.default_rng(seed).choice(len(features), MAX_PROJECTED_POINTS, False)
        features, colours = features[keep], colours[keep]
    points, method = project_2d(features, use_umap=use_umap, seed=seed)
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    cmap = "tab20" if categorical else "viridis"
    dots = ax.scatter(points[:, 0], points[:, 1], c=colours, cmap=cmap, s=6)
    fig.colorbar(dots, ax=ax, label=colour_label)
    ax.set_title(f"{title} ({method})")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def rotation_angles(quaternions: np.ndarray) -> np.ndarray:
    """Rotation angle in radians, [0, π], of scalar-last quaternions (..., 4)."""
    q = np.asarray(quaternions, dtype=np.float64)
    return 2.0 * np.arctan2(np.linalg.norm(q[..., :3], axis=-1), np.abs(q[..., 3]))


def format_action(action: np.ndarray, per_line: int = 3) -> str:
    """An action vector as rounded values, `per_line` per text line."""
    values = [f"{v:+.2f}" for v in np.asarray(action).ravel()]
    return "\n".join(" ".join(values[i : i + per_line]) for i in range(0, len(values), per_line))


def sequence_strip(
    views: np.ndarray,
    actions: np.ndarray,
    path: str,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    title: str = "",
) -> Figure:
    """One sequence's views (V, H, W, C; normalised) with the action j → j+1 under view j."""
    views = np.asarray(views, dtype=np.float32) * np.asarray(std) + np.asarray(mean)
    num_views = len(views)
    fig = Figure(figsize=(1.8 * num_views, 2.8))
    for j in range(num_views):
        ax = fig.add_subplot(1, num_views, j + 1)
        ax.imshow(np.clip(views[j], 0.0, 1.0))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("target" if j == num_views - 1 else f"view {j}", fontsize=9)
        if j < num_views - 1:
            ax.set_xlabel(f"a{j}→{j + 1}:\n{format_action(actions[j])}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def evaluation_figures(
    config: ml_collections.ConfigDict,
    held_out: dict[str, np.ndarray],
    data: Any,
    out_dir: str,
    *,
    use_umap: bool = True,
) -> dict[str, str]:
    """The projections of the held-out features and a view strip; returns {name: path}. The
    aggregate projection is drawn for methods with an aggregate (its `agg_{M_tr}` features)."""
    from seqjepa_jax.evaluation.report import rotation_targets

    names = ("projection_aggregate", "projection_encoder", "sequence_strip")
    m_tr = config.train.seq_len
    if f"agg_{m_tr}" not in held_out:
        names = names[1:]
    paths = {name: os.path.join(out_dir, f"{name}.png") for name in names}
    if "projection_aggregate" in paths:
        projection_figure(
            held_out[f"agg_{m_tr}"],
            held_out["label"],
            paths["projection_aggregate"],
            title=f"Aggregate (M={m_tr}) by class",
            colour_label="class",
            categorical=True,
            use_umap=use_umap,
        )
    z = held_out["z"].reshape(-1, held_out["z"].shape[-1])
    latents = held_out["latents"].reshape(-1, held_out["latents"].shape[-1])
    if data.individual_target_name == "rotation":
        colours, label = rotation_angles(rotation_targets(latents)), "rotation angle (rad)"
    else:
        colours, label = latents[:, 0], f"{data.individual_target_name}[0]"
    projection_figure(
        z,
        colours,
        paths["projection_encoder"],
        title="Encoder embeddings",
        colour_label=label,
        categorical=False,
        use_umap=use_umap,
    )
    first_sequence_strip(config, data, paths["sequence_strip"])
    return paths


def first_eval_batch(config: ml_collections.ConfigDict, data: Any) -> dict[str, np.ndarray]:
    """The first held-out batch (fixed views) as host numpy arrays."""
    from seqjepa_jax.evaluation.features import to_host

    batch = next(iter(data.probe_batches("eval", config.eval.batch_size)))
    return {key: to_host(value) for key, value in batch.items()}


def first_sequence_strip(config: ml_collections.ConfigDict, data: Any, path: str) -> Figure:
    """`sequence_strip` of the first held-out sequence of `data` (a `RunData`)."""
    batch = first_eval_batch(config, data)
    return sequence_strip(
        batch["views"][0],
        batch["actions"][0],
        path,
        mean=config.data.mean,
        std=config.data.std,
        title=f"{config.data.name}: one held-out sequence and its actions",
    )


def object_gallery(
    views: np.ndarray,
    titles: Sequence[str],
    path: str,
    *,
    mean: Sequence[float],
    std: Sequence[float],
) -> Figure:
    """One image per object (N, H, W, C; normalised) in a row, titled (e.g. by class)."""
    views = np.asarray(views, dtype=np.float32) * np.asarray(std) + np.asarray(mean)
    fig = Figure(figsize=(1.6 * len(views), 2.0))
    for i, (view, title) in enumerate(zip(views, titles)):
        ax = fig.add_subplot(1, len(views), i + 1)
        ax.imshow(np.clip(view, 0.0, 1.0))
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def path_integration_figure(results: dict[str, Any], path: str) -> Figure:
    """R² (uniform, the paper's definition) of the path-integration probes against M_val."""
    m_values = results["path_integration_m_val"]
    probes = results["probes"]
    method = results.get("method_label", "seq-JEPA")
    curves = [
        (f"{method} aggregate", "trained", "agg", "o-"),
        (f"{method} first + last encoder", "trained", "encoder", "s--"),
        ("random init aggregate", "random_init", "agg", "^-"),
        ("actions alone (ceiling)", "trained", "actions", "kd:"),
    ]
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.add_subplot()
    for label, state, key, style in curves:
        scores = probes.get(state, {})
        names = [f"path_integration_{key}_m{m}_r2_uniform" for m in m_values]
        if all(name in scores for name in names):
            ax.plot(m_values, [scores[name] for name in names], style, label=label)
    ax.set_xticks(m_values)
    ax.set_xlabel("M_val (observation views; path from the first to the last)")
    ax.set_ylabel("R² (uniform)")
    ax.set_title("Path integration")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def ood_figure(results: dict[str, Any], path: str) -> Figure:
    """Bars of the trained model's probes in distribution and OOD: top-1 (left), R² (right)."""
    from seqjepa_jax.evaluation.tables import ood_rows

    scores = results["probes"]["trained"]
    rows = [
        row for row in ood_rows(results) if row[1] + ("" if row[2] else "_r2_uniform") in scores
    ]
    fig = Figure(figsize=(9.0, 4.0))
    for column, accuracy in enumerate((True, False)):
        ax = fig.add_subplot(1, 2, column + 1)
        chosen = [(title, key) for title, key, is_acc in rows if is_acc == accuracy]
        suffix = "" if accuracy else "_r2_uniform"
        x = np.arange(len(chosen))
        for offset, (prefix, label) in enumerate((("", "in distribution"), ("ood_", "OOD"))):
            values = [scores.get(prefix + key + suffix, np.nan) for _, key in chosen]
            ax.bar(x + (offset - 0.5) * 0.4, values, 0.4, label=label)
        ax.set_xticks(x, [title for title, _ in chosen], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("top-1 (%)" if accuracy else "R² (uniform)")
        ax.legend(fontsize=8)
    fig.suptitle("Probes fitted in distribution, scored in distribution and OOD")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig
