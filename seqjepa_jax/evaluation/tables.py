"""Markdown tables of an evaluation, laid out like the paper's Table 1 (spec §12.1).

Table 1 has one row per model and M_val, "seq-JEPA (M_tr=3, M_val=5)", with top-1 (%) of the
linear probe and the relative and individual rotation R². Here each evaluated state (the trained
checkpoint, and the random init when compared) gives one row per M_val (the aggregate probe)
plus one row for the encoder probe on a single view (the official offline `res_classifier`,
Q11). The R² cells show `uniform / pooled` (`metrics.py`): the paper's numbers are the uniform
ones, ContextSSL's 0.74 the pooled one. The k-NN column is the same row's features under the
cosine k-NN (`knn.py`). For augmentation and saccade data the two R² columns are the relative and
individual augmentation or position probes. Where they were run, a path-integration table (R² per
M_val of the aggregate, of the first and last encoder embeddings, and of the actions alone;
`tasks.py`, issue 10) and an in-distribution vs OOD table (spec §6.2) follow. A last table lists
every metric.
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


def state_label(results: dict[str, Any], state: str) -> str:
    """The row label of an evaluated state: the method's name for the trained checkpoint."""
    if state == "trained":
        return results.get("method_label", STATE_NAMES[state])
    return STATE_NAMES.get(state, state)


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
        label = state_label(results, state)
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


PATH_INPUTS = (("aggregate", "agg"), ("first + last encoder", "encoder"))


def path_integration_markdown(results: dict[str, Any]) -> str:
    """R² (uniform / pooled) of the path-integration probes, one row per M_val >= 2."""
    probes = results["probes"]
    inputs = PATH_INPUTS if results["m_val"] else PATH_INPUTS[1:]  # no aggregate: encoder only
    columns = [
        (f"{state_label(results, state)} {title}", state, f"path_integration_{key}_m")
        for state in probes
        for title, key in inputs
    ]
    columns.append(("actions alone (ceiling)", "trained", "path_integration_actions_m"))
    header = ["M_val"] + [title for title, _, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in results.get("path_integration_m_val", []):
        cells = [r2_cell(probes[state], f"{prefix}{m}") for _, state, prefix in columns]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ood_rows(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(row title, metric key stem, is an accuracy) of the in-distribution vs OOD table."""
    rows = [(f"top-1 (%), M_val={m}", f"agg_m{m}_accuracy", True) for m in results["m_val"]]
    rows.append(("top-1 (%), encoder", "encoder_accuracy", True))
    rows += [(f"{title} R²", name, False) for title, name in R2_COLUMNS[results["data_kind"]]]
    path_input = "agg" if results["m_val"] else "encoder"
    rows += [
        (f"path integration R², M_val={m}", f"path_integration_{path_input}_m{m}", False)
        for m in results.get("path_integration_m_val", [])
    ]
    return rows


def ood_markdown(results: dict[str, Any]) -> str:
    """Each probe scored in distribution and out of distribution (fitted in distribution only)."""
    states = list(results["probes"])
    header = ["metric"]
    for state in states:
        label = state_label(results, state)
        header += [f"{label} in-dist", f"{label} OOD"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for title, key, accuracy in ood_rows(results):
        cells = []
        for state in states:
            scores = results["probes"][state]
            for prefix in ("", "ood_"):
                if accuracy:
                    cells.append(percent_cell(scores, prefix + key))
                else:
                    cells.append(r2_cell(scores, prefix + key))
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def metrics_markdown(results: dict[str, Any]) -> str:
    """Every metric of every evaluated state, one row per metric."""
    states = list(results["probes"])
    names = sorted({name for scores in results["probes"].values() for name in scores})
    lines = [
        "| metric | " + " | ".join(state_label(results, s) for s in states) + " |",
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
        f"# Evaluation of {results.get('method_label', 'seq-JEPA')} on {results['data']} at "
        f"step {results['step']}\n\n"
        f"BN mode: {results['bn_mode']}; k-NN: cosine, k = {results['knn_k']}; "
        f"{results['num_eval_sequences']} held-out sequences. "
        "Top-1: linear probe on the aggregate of M_val views (encoder rows: one view). "
        "R²: uniform = per-dimension mean (sklearn, the paper), pooled = one global mean "
        "(SIE, ContextSSL).\n\n"
    )
    text = head + table1_markdown(results)
    if results.get("path_integration_m_val"):
        text += (
            "\n## Path integration\n\nR² (uniform / pooled) of the transform from the first to "
            "the last of M_val observation views (composed actions).\n\n"
        )
        text += path_integration_markdown(results)
    if results.get("ood"):
        text += (
            f"\n## In distribution vs OOD\n\n{results.get('num_ood_sequences', 0)} OOD "
            "sequences; every probe is fitted in distribution only.\n\n"
        )
        text += ood_markdown(results)
    return text + "\n## All metrics\n\n" + metrics_markdown(results)
