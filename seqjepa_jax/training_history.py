"""What a training run measured over time, kept in the workdir and drawn as one PNG (issue 9).

The run appends one JSON line per logged interval to `<workdir>/history.jsonl`: the mean train
metrics (`kind="train"`: losses, online-probe accuracy, the collapse indicators `encoder_spread`
and `encoder_effective_rank` of `train_step.py`) and, at each validation, the online probes scored
on held-out objects (`kind="eval"`: `online_accuracy` of the class probe on the aggregate of M_tr
views, `online_action_r2_*` of the relative-action probe on encoder pairs; `report.py`). A resumed
run keeps the lines up to the step it resumes from and drops later ones (they belong to steps
that are being trained again), so the file always describes one run.

`training_curves_figure` draws held-out accuracy, relative-action R² and the collapse
indicators against the step, with the run's final frozen-feature probes of the trained and the
randomly initialised model as reference lines: the "what you should see" plot of the README.
"""

from __future__ import annotations

import json
from typing import Any

from etils import epath

from seqjepa_jax.run_config import write_text_atomically

HISTORY_FILE = "history.jsonl"
TRAINING_CURVES_FILE = "training_curves.png"
# The R² panel's lower edge: R² has no lower bound, and an overfitted probe on random features can
# score -30, which would flatten every other curve; such values are written under the axis.
R2_AXIS_FLOOR = -1.0


class TrainingHistory:
    """Append-only JSON-lines record of a run's metrics (`<workdir>/history.jsonl`).

    Attributes:
      records: every record so far, oldest first (dicts with "step" and "kind").
    """

    def __init__(self, workdir: str, start_step: int, *, write: bool = True) -> None:
        """Loads the records of steps <= start_step (a fresh run: none) and rewrites the file.

        `write=False` (hosts other than 0) keeps the records in memory only.
        """
        self._path = epath.Path(workdir) / HISTORY_FILE
        self._write = write
        self.records: list[dict[str, Any]] = []
        if self._path.exists():
            for line in self._path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    if record["step"] <= start_step:
                        self.records.append(record)
        if write:  # atomically: a full disk must not empty the history of earlier runs
            text = "".join(json.dumps(r) + "\n" for r in self.records)
            write_text_atomically(str(self._path), text)

    def add(self, step: int, kind: str, values: dict[str, float]) -> None:
        """Records `values` (JSON numbers) of `kind` ("train" or "eval") at `step`."""
        record = {"step": int(step), "kind": kind, **{k: float(v) for k, v in values.items()}}
        self.records.append(record)
        if self._write:
            with self._path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def series(self, kind: str, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric of one kind, in step order."""
        rows = [(r["step"], r[key]) for r in self.records if r["kind"] == kind and key in r]
        rows.sort()
        return [s for s, _ in rows], [v for _, v in rows]


def training_curves_figure(
    history: TrainingHistory,
    final_probes: dict[str, dict[str, float]],
    *,
    accuracy_key: str,
    r2_key: str,
    path: str,
    title: str = "",
) -> Any:
    """Writes the three-panel training-curve PNG to `path` and returns the matplotlib Figure.

    Panels: held-out top-1 (online class probe over training; the final frozen probe
    `accuracy_key`, the one the online probe mirrors: seq-JEPA's aggregate at M_val = M_tr, a
    baseline's encoder), held-out R² of the relative transform (both names; online probe over
    training, final frozen probe `r2_key`, e.g. "relative_rotation"; values below
    `R2_AXIS_FLOOR` are listed as text), and the collapse indicators of the train batches.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    styles = {"trained": ("tab:blue", "--"), "random_init": ("tab:gray", ":")}
    accuracy, r2 = axes[0], axes[1]
    steps, values = history.series("eval", "online_accuracy")
    accuracy.plot(steps, values, "o-", color="tab:orange", label="online probe (held-out)")
    for definition, marker in (("uniform", "o-"), ("pooled", "s--")):
        steps, values = history.series("eval", f"online_action_r2_{definition}")
        r2.plot(steps, values, marker, color="tab:orange", label=f"online probe, {definition}")
    off_scale = []
    for name, scores in final_probes.items():
        colour, dash = styles.get(name, ("black", "-."))
        label = name.replace("_", " ")
        if accuracy_key in scores:
            accuracy.axhline(scores[accuracy_key], color=colour, linestyle=dash,
                             label=f"final frozen probe, {label}")  # fmt: skip
        for definition in ("uniform", "pooled"):
            value = scores.get(f"{r2_key}_r2_{definition}")
            if value is None:
                continue
            if value < R2_AXIS_FLOOR:
                off_scale.append(f"{label} {definition}: {value:.2f}")
                continue
            r2.axhline(value, color=colour, linestyle=dash if definition == "uniform" else "-.",
                       label=f"final frozen, {label}, {definition}")  # fmt: skip
    r2.set_ylim(bottom=R2_AXIS_FLOOR - 0.05, top=1.0)
    if off_scale:
        r2.text(0.02, 0.02, "below the axis (final frozen): " + "; ".join(off_scale),
                transform=r2.transAxes, fontsize=6.5, va="bottom")  # fmt: skip
    for ax, label in ((accuracy, "held-out top-1 (%)"), (r2, "held-out relative-action R²")):
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="center right" if ax is r2 else "lower right")
    ax = axes[2]
    steps, spread = history.series("train", "encoder_spread")
    ax.plot(steps, spread, color="tab:green", label="encoder spread (1 = isotropic)")
    ax.set_xlabel("step")
    ax.set_ylabel("spread")
    ax.grid(alpha=0.3)
    rank_axis = ax.twinx()
    steps, rank = history.series("train", "encoder_effective_rank")
    rank_axis.plot(steps, rank, color="tab:purple", label="encoder effective rank")
    rank_axis.set_ylabel("effective rank")
    handles = ax.get_legend_handles_labels()[0] + rank_axis.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="lower left")
    ax.set_title("collapse indicators (train batches)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with epath.Path(path).open("wb") as f:
        fig.savefig(f, dpi=110, format="png")
    return fig
