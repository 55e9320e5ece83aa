"""Markdown tables of an evaluation, laid out like the paper's Table 1 (spec §12.1).

Table 1 has one row per model and M_val, "seq-JEPA (M_tr=3, M_val=5)", with top-1 (%) of the
linear probe and the relative and individual rotation R². Here each evaluated state (the trained
checkpoint, and the random init when compared) gives one row per M_val (the aggregate probe)
plus one row for the encoder probe on a single view (the official offline `res_classifier`,
Q11). The R² cells show `uniform / pooled` (`metrics.py`): the paper's numbers are the uniform
ones, ContextSSL's 0.74 the pooled one. The k-NN column is the same row's features under the
cosine k-NN (`knn.py`). For augmentation and saccade data the two R² columns are the relative and
individual augmentation or position probes. A second table lists every metric.
"""

from __future__ import annotations

from typing import Any

R2_COLUMNS = {
    "views": (
        ("relative rotation", "relative_rotation"),
        ("individual rotation", "individual_rotation"),
    ),
    "augment": (
        ("relative augmentation", "relative_augmentation"),
        ("individual augmentation", "individual_augmentation"),
    ),
    "saccade": (
        ("relative position", "relative_position"),
        ("individual position", "individual_position"),
    ),
}
STATE_NAMES = {"trained": "seq-JEPA", "random_init": "random init"}


def r2_cell(scores: dict[str, float], name: str) -> str:
    """'0.71 / 0.80' (uniform / pooled) or '–' when the probe was not run."""
    if f"{name}_r2_uniform" not in scores:
        return "–"
    return f"{scores[f'{name}_r2_uniform']:.2f} / {scores[f'{name}_r2_pooled']:.2f}"


def percent_cell(scores: dict[str, float], key: str) -> str:
    """'86.14' or '–'."""
    return f"{scores[key]:.2f}" if key in scores else "–"


def table1_markdown(results: dict[str, Any]) -> str:
    """The Table 1 layout (module docstring) of an evaluation's results dict."""
    columns = R2_COLUMNS[results["data_kind"]]
    header = ["method", "top-1 (%)", "k-NN top-1 (%)"]
    header += [f"{title} R² (uniform / pooled)" for title, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    m_tr = results["m_tr"]
    for state, scores in results["probes"].items():
        label = STATE_NAMES.get(state, state)
        r2 = [r2_cell(scores, name) for _, name in columns]
        for m in results["m_val"]:
            row = [
                f"{label} (M_tr={m_tr}, M_val={m})",
                percent_cell(scores, f"agg_m{m}_accuracy"),
                percent_cell(scores, f"knn_agg_m{m}_accuracy"),
            ]
            lines.append("| " + " | ".join(row + r2) + " |")
        row = [
            f"{label} (encoder, one view)",
            percent_cell(scores, "encoder_accuracy"),
            percent_cell(scores, "knn_encoder_accuracy"),
        ]
        lines.append("| " + " | ".join(row + r2) + " |")
    return "\n".join(lines) + "\n"


def metrics_markdown(results: dict[str, Any]) -> str:
    """Every metric of every evaluated state, one row per metric."""
    states = list(results["probes"])
    names = sorted({name for scores in results["probes"].values() for name in scores})
    lines = [
        "| metric | " + " | ".join(STATE_NAMES.get(s, s) for s in states) + " |",
        "|" + "---|" * (len(states) + 1),
    ]
    for name in names:
        cells = [
            f"{results['probes'][s][name]:.4f}" if name in results["probes"][s] else "–"
            for s in states
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_markdown(results: dict[str, Any]) -> str:
    """The Markdown file the evaluation program writes: a header, Table 1, all metrics."""
    head = (
        f"# Evaluation of {results['data']} at step {results['step']}\n\n"
        f"BN mode: {results['bn_mode']}; k-NN: cosine, k = {results['knn_k']}; "
        f"{results['num_eval_sequences']} held-out sequences. "
        "Top-1: linear probe on the aggregate of M_val views (encoder rows: one view). "
        "R²: uniform = per-dimension mean (sklearn, the paper), pooled = one global mean "
        "(SIE, ContextSSL).\n\n"
    )
    return head + table1_markdown(results) + "\n## All metrics\n\n" + metrics_markdown(results)
