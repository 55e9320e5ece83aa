"""The paper's ablations on the built-in procedural dataset, sized for a 2-core CPU.

Run from the repository root (about 30 minutes on the 2-core development machine):

  python experiments/ablation_builtin.py --workdir=workdirs/ablation

Trains `configs/default.py` four times, M_tr ∈ {1, 3} × action conditioning ∈ {on, off}, each
scored by the run's own frozen-feature report on held-out objects (aggregate linear probe for
M_val ∈ {1, 3, 5}, relative-rotation R² of the encoder pair under both R² names); the default run
(M_tr = 3, act_cond on) also probes a randomly initialised model as the reference. Writes
`<workdir>/ablation.md` (the table), `<workdir>/ablation.jsonl` (one line per run, with its wall
time) and `<workdir>/heatmap.png` (M_tr × M_val accuracy). A run whose workdir already holds
`results.json` is not retrained, so the script resumes after an interruption.

The paper's reading to compare with (Table 1, 3DIEBench): accuracy rises with M_val (87.41 at
M_val = 5 vs 86.14 at 3), and action conditioning raises the relative-rotation R² (0.71 vs 0.29).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
VARIANTS = (
    {"name": "m_tr3_act", "seq_len": 3, "act_cond": True},
    {"name": "m_tr3_noact", "seq_len": 3, "act_cond": False},
    {"name": "m_tr1_act", "seq_len": 1, "act_cond": True},
    {"name": "m_tr1_noact", "seq_len": 1, "act_cond": False},
)
M_VAL = (1, 3, 5)


def variant_config(variant: dict, args: argparse.Namespace):  # noqa: ANN201
    """configs/default.py with the variant's M_tr and action conditioning."""
    from seqjepa_jax.config_defaults import load_config_file

    config = load_config_file(os.path.join(ROOT, "configs", "default.py"), args.variant or None)
    config.train.seq_len = variant["seq_len"]
    config.model.act_cond = variant["act_cond"]
    config.eval.m_val = M_VAL
    config.eval.num_views = max(config.eval.num_views, max(M_VAL) + 1)
    config.data.views_per_object = max(config.data.views_per_object, config.eval.num_views)
    config.eval.compare_random_init = variant["name"] == "m_tr3_act"
    config.train.progress_bar = False
    config.seed = args.seed
    if args.epochs:
        config.train.num_epochs = args.epochs
    if args.data_dir:
        config.data.data_dir = args.data_dir
    return config


def run_variant(variant: dict, args: argparse.Namespace) -> dict:
    """Trains one variant (unless its results exist) and returns its ledger row."""
    from seqjepa_jax import train

    workdir = os.path.join(args.workdir, variant["name"])
    results_path = os.path.join(workdir, "results.json")
    started = time.time()
    if not os.path.isfile(results_path):
        train.train_and_evaluate(variant_config(variant, args), workdir)
    with open(results_path) as f:
        results = json.load(f)
    return {
        **variant,
        "seed": args.seed,
        "m_tr": variant["seq_len"],
        "m_val": list(M_VAL),
        "wall_s_this_invocation": round(time.time() - started, 1),
        "train_seconds": results.get("train_seconds_this_run"),
        "probes": results["probes"],
    }


def ledger_markdown(rows: Sequence[dict]) -> str:
    """The ablation table: accuracy per M_val and relative-rotation R² per run."""
    header = "| run | M_tr | act_cond | " + " | ".join(f"M_val={m}" for m in M_VAL)
    header += " | rel. rotation R² (uniform / pooled) |"
    lines = [header, "|" + "---|" * (4 + len(M_VAL))]

    def line(label: str, row: dict, scores: dict) -> str:
        accuracies = " | ".join(f"{scores[f'agg_m{m}_accuracy']:.1f}" for m in M_VAL)
        r2 = (
            f"{scores['relative_rotation_r2_uniform']:.2f} / "
            f"{scores['relative_rotation_r2_pooled']:.2f}"
        )
        act = "on" if row["act_cond"] else "off"
        return f"| {label} | {row['m_tr']} | {act} | {accuracies} | {r2} |"

    for row in rows:
        lines.append(line(row["name"], row, row["probes"]["trained"]))
        if "random_init" in row["probes"]:
            lines.append(line("random init", row, row["probes"]["random_init"]))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Runs every variant, then writes the table, the JSON lines and the heatmap."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=0, help="override num_epochs (0: default)")
    parser.add_argument("--only", default="", help="comma-separated variant names")
    parser.add_argument("--variant", default="", help="configs/default.py variant, e.g. tiny")
    parser.add_argument("--data_dir", default="", help="procedural cache ('' = default)")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from seqjepa_jax.main import xla_flags_with_ynn

    # As `python -m seqjepa_jax.main` does by default: set before JAX starts.
    os.environ["XLA_FLAGS"] = xla_flags_with_ynn(os.environ.get("XLA_FLAGS", ""), True)
    from seqjepa_jax.evaluation import plots

    chosen = [v for v in VARIANTS if not args.only or v["name"] in args.only.split(",")]
    rows = [run_variant(v, args) for v in chosen]
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "ablation.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    table = ledger_markdown(rows)
    with open(os.path.join(args.workdir, "ablation.md"), "w") as f:
        f.write(table)
    # The heatmap averages runs of equal M_tr, so it shows the action-conditioned runs only.
    conditioned = [row for row in rows if row["act_cond"]]
    if conditioned:
        plots.accuracy_heatmap(conditioned, os.path.join(args.workdir, "heatmap.png"))
    print(table)
    return rows


if __name__ == "__main__":
    main()
