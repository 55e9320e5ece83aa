"""The paper's Table 1 on the built-in data: every method, several seeds, one probe protocol.

Run from the repository root (hours on the 2-core development CPU; resumable):

  python experiments/table1_builtin.py --workdir=workdirs/table1 \
      --output_dir=experiments/results/table1_builtin

Each row trains `configs/default.py` (issue 19's scene and budget) with one method or ablation,
for each of its seeds, and scores the trained encoder (and seq-JEPA's aggregate) with the
end-of-run report of `train.py`, which is the evaluation program's probe protocol
(`evaluation/scoring.py`: validation split of the training objects, early stopping, weight-decay
and ridge-penalty grids, three probe seeds, the ridge reference and the predict-the-mean floor).
The random-init row probes an untrained seq-JEPA of each seed with the same probes.

Writes into `--output_dir`: `table1_builtin.md` (mean ± std over seeds per row: encoder top-1,
aggregate top-1 at M_val = 1/3/5, relative rotation as official R², pooled R² and geodesic
error in degrees, colour R² when the scene changes colour, wall time per run; then the floors
and the paper's three claims checked with these numbers), `table1_builtin.jsonl` (one line per
(row, seed), the ledger) and `table1_builtin.png` (invariance against equivariance, one point per
row with its seed spread, as the paper's summary figure).

Resumable: a (row, seed) already in the ledger is never recomputed; an interrupted run resumes
from its last checkpoint in `<workdir>/<row>/seed<seed>` (the main job's automatic resume; its
ledger line then names `resumed_from_step` and leaves the wall time out). A new
workdir starts from the ledger in `--output_dir` (the committed results), so the command above
continues the study on any machine. Rows run seed-major: every row's first seed, then the second
seeds, then the third.

One probe protocol per table: every ledger line names the `feature_scaling` of its probes
(`config.eval.feature_scaling`; a line without it predates the field and used "per_feature").
A run with another `--feature_scaling` than the ledger's refuses to mix them; `--rescore` scores
those lines again from their final checkpoints (no training; wall and train times kept, the
random-init rows recomputed), one line at a time, so it resumes too.

One training budget per table: every line names its `num_epochs` (`--epochs`, else the config's).
A run with another budget than the ledger's is refused before any work, since its (row, seed)
pairs would count as done and a rescore would train them further: a longer budget gets its own
workdir and output folder (`experiments/results/table1_builtin_long`: one seed of the key rows at
twice the steps, issue 19 §4).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
SEEDS = (42, 43, 44)
M_VAL = (1, 3, 5)
PROBE_SEEDS = (0, 1, 2)
LEDGER = "table1_builtin.jsonl"
LEGACY_FEATURE_SCALING = "per_feature"  # ledger lines written before the field existed


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the table: a method or ablation, its config overrides and its seed count."""

    name: str
    label: str
    overrides: dict[str, Any]
    seeds: int = 2
    family: str = ""  # "invariant", "equivariant" (claim c), "" for others
    train: bool = True


ROWS = (
    Row("seqjepa", "seq-JEPA", {}, 3, "equivariant"),
    Row("seqjepa_no_act", "seq-JEPA, no action conditioning", {"model.act_cond": False}, 3),
    Row("seqjepa_raw_actions", "seq-JEPA, raw actions", {"model.learn_act_emb": False}, 3),
    Row("simclr", "SimCLR", {"method": "simclr"}, 2, "invariant"),
    Row("byol", "BYOL", {"method": "byol"}, 2, "invariant"),
    Row("vicreg", "VICReg", {"method": "vicreg"}, 2, "invariant"),
    Row("vicreg_traj", "VICReg-Traj", {"method": "vicreg_traj"}, 2),
    Row("equimod", "SimCLR-EquiMod", {"method": "equimod"}, 2, "equivariant"),
    Row("byol_cond", "BYOL-conditional", {"method": "byol_cond"}, 2),
    Row("sen", "SEN", {"method": "sen"}, 2, "equivariant"),
    Row("sie", "SIE", {"method": "sie"}, 2, "equivariant"),
    Row("supervised", "supervised (reference)", {"method": "supervised"}, 3),
    Row("random_init", "random init (seq-JEPA)", {}, 3, train=False),
)
ROTATION = "relative_rotation"
# (column title, result key, is a percentage)
COLUMNS = (
    ("encoder top-1 (%)", "encoder_accuracy", True),
    *((f"aggregate top-1, M_val={m} (%)", f"agg_m{m}_accuracy", True) for m in M_VAL),
    ("rotation R², official (uniform)", f"{ROTATION}_r2_uniform", False),
    ("rotation R², pooled", f"{ROTATION}_r2_pooled", False),
    ("rotation error (°)", f"{ROTATION}_geodesic_deg", False),
    ("rotation R², ridge (uniform)", f"{ROTATION}_ridge_r2_uniform", False),
    ("colour R² (uniform)", "relative_colour_r2_uniform", False),
    ("wall time per run (min)", "wall_minutes", False),
)
FLOORS = {  # column key -> the key of its predict-the-mean floor (`report.py`)
    f"{ROTATION}_{metric}": f"{ROTATION}_mean_{metric}"
    for metric in ("r2_uniform", "r2_pooled", "geodesic_deg")
}


def row_config(row: Row, seed: int, args: argparse.Namespace):  # noqa: ANN201
    """configs/default.py (or its `--variant`) with the row's overrides and the table's probes."""
    from seqjepa_jax.config_defaults import load_config_file, set_field

    config = load_config_file(os.path.join(ROOT, "configs", "default.py"), args.variant or None)
    for dotted, value in row.overrides.items():
        set_field(config, dotted, value)
    config.seed = seed
    config.eval.m_val = M_VAL if args.variant != "tiny" else (1, 3)
    config.eval.probe_seeds = PROBE_SEEDS
    config.eval.feature_scaling = args.feature_scaling
    config.eval.compare_random_init = False
    config.train.progress_bar = False
    if args.epochs:
        config.train.num_epochs = args.epochs
    if args.data_dir:
        config.data.data_dir = args.data_dir
    return config


def random_init_scores(config) -> dict[str, float]:  # noqa: ANN001
    """The probes of the end-of-run report on an untrained model of `config` (seed = its seed)."""
    import jax

    from seqjepa_jax import train
    from seqjepa_jax.config_checks import validate_config
    from seqjepa_jax.evaluation import features as features_lib

    mesh = train.make_mesh()
    validate_config(config, device_count=mesh.devices.size, process_count=jax.process_count())
    data = train.build_data(config, mesh)
    model, probes = train.build_model(config)
    optimizer = train.build_optimizer(config.train.optimizer, lambda count: 0.0)
    state = train.create_state(config, model, probes, optimizer, mesh)
    feature_fn = features_lib.config_feature_fn(config, model, probes)
    return train.final_report(config, feature_fn, {"random_init": state}, data)["random_init"]


def run_one(row: Row, seed: int, args: argparse.Namespace) -> dict:
    """Trains and scores one (row, seed); returns its ledger line."""
    from seqjepa_jax import train

    config = row_config(row, seed, args)
    started = time.time()
    resumed_from = 0
    if row.train:
        workdir = os.path.join(args.workdir, row.name, f"seed{seed}")
        results = train.train_and_evaluate(config, workdir)
        scores, train_seconds = results["probes"]["trained"], results["train_seconds_this_run"]
        resumed_from = results["step"] - results["steps_trained_this_run"]
    else:
        scores, train_seconds = random_init_scores(config), 0.0
    line = {
        "row": row.name,
        "seed": seed,
        "wall_minutes": round((time.time() - started) / 60, 2),
        "train_minutes": round(train_seconds / 60, 2),
        "feature_scaling": config.eval.feature_scaling,
        "num_epochs": config.train.num_epochs,
        "probes": scores,
    }
    if resumed_from:  # the interrupted part took an unknown time: no wall time, not a wrong one
        line.update(wall_minutes=None, resumed_from_step=resumed_from)
    return line


def feature_scaling_of(line: dict) -> str:
    """The probe feature scaling a ledger line was scored with (module docstring)."""
    return line.get("feature_scaling", LEGACY_FEATURE_SCALING)


def budgets_of(ledger: Sequence[dict]) -> list[str]:
    """The training budgets (`num_epochs`) of the ledger's lines; "None" where not recorded."""
    return sorted({str(line.get("num_epochs")) for line in ledger})


def check_one_budget(ledger: Sequence[dict], num_epochs: int, ledger_path: str) -> None:
    """Refuses a run whose training budget differs from the ledger's (module docstring): a
    (row, seed) of another budget would count as done, and a rescore would train it further."""
    other = [budget for budget in budgets_of(ledger) if budget != str(num_epochs)]
    if other:
        raise SystemExit(
            f"The ledger {ledger_path} has runs trained for num_epochs {other} (None: not "
            f"recorded), not {num_epochs}: one table, one training budget. Give another budget "
            "its own --workdir and --output_dir (as experiments/results/table1_builtin_long), "
            "or pass the ledger's --epochs."
        )


def write_ledger(ledger: Sequence[dict], path: str) -> None:
    """Replaces the ledger file atomically: an interrupted rewrite leaves the old one whole."""
    with open(path + ".tmp", "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in ledger)
    os.replace(path + ".tmp", path)


def rescore(ledger: list[dict], args: argparse.Namespace, ledger_path: str) -> list[dict]:
    """Scores every selected ledger line of another feature scaling again with
    `args.feature_scaling`, from its finished workdir (module docstring); returns the ledger.

    Every missing workdir is named before any scoring starts: those lines need their training
    again (delete them from the ledger and rerun without `--rescore`).
    """
    rows = {row.name: row for row in ROWS}
    stale = [
        index
        for index, line in enumerate(ledger)
        if feature_scaling_of(line) != args.feature_scaling
        and (not args.only or line["row"] in args.only.split(","))
    ]
    workdirs = [
        os.path.join(args.workdir, ledger[index]["row"], f"seed{ledger[index]['seed']}")
        for index in stale
        if rows[ledger[index]["row"]].train
    ]
    missing = [w for w in workdirs if not os.path.isdir(os.path.join(w, "checkpoints"))]
    if missing:
        raise SystemExit(
            f"--rescore needs the finished runs' checkpoints, and {len(missing)} are missing: "
            f"{', '.join(missing)}. Point --workdir at the workdir that trained them, or delete "
            "those lines from the ledger and rerun without --rescore to train them again."
        )
    for index in stale:
        old = ledger[index]
        fresh = run_one(rows[old["row"]], old["seed"], args)
        ledger[index] = {
            **old,
            "feature_scaling": fresh["feature_scaling"],
            "probes": fresh["probes"],
        }
        write_ledger(ledger, ledger_path)
        print(f"{old['row']} seed {old['seed']}: rescored ({args.feature_scaling})", flush=True)
    return ledger


def read_ledger(path: str) -> list[dict]:
    """The finished (row, seed) lines of the ledger (none if it does not exist yet)."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise(ledger: Sequence[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{row: {key: (mean, std over seeds, seed count)}} for every column key and floor.

    The std is the sample std (ddof = 1; 0 for one seed): with two or three seeds the population
    std would understate the spread that claims (a) to (c) weigh differences against. A null
    ledger value (a wall time lost when a run was resumed in a later session) is left out.
    """
    summary: dict[str, dict[str, tuple[float, float, int]]] = {}
    for row in ROWS:
        lines = [line for line in ledger if line["row"] == row.name]
        if not lines:
            continue
        values: dict[str, list[float]] = {}
        for line in lines:
            for key, value in {**line["probes"], "wall_minutes": line["wall_minutes"]}.items():
                if value is not None:  # null: not known (a run finished across sessions)
                    values.setdefault(key, []).append(float(value))
        summary[row.name] = {
            key: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
            for key, v in values.items()
        }
    return summary


def cell(stats: tuple[float, float, int] | None, percent: bool) -> str:
    if stats is None:
        return "–"
    mean, std, count = stats
    digits = 1 if percent else 2
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if count > 1 else f"{mean:.{digits}f}"


def table_markdown(summary: dict) -> str:
    """The table of every row's mean ± std (over its seeds) per column, and the floors row."""
    header = ["row", "seeds", *(title for title, _, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in ROWS:
        if row.name not in summary:
            continue
        scores = summary[row.name]
        seeds = max(count for _, _, count in scores.values())
        cells = [cell(scores.get(key), percent) for _, key, percent in COLUMNS]
        lines.append(f"| {row.label} | {seeds} | " + " | ".join(cells) + " |")
    if summary:  # the targets do not depend on the run: any row's floors are every row's
        floors = next(iter(summary.values()))
        cells = [
            cell(floors.get(FLOORS[key]), False) if key in FLOORS else "–" for _, key, _ in COLUMNS
        ]
        lines.append("| predict-the-mean floor | | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdict(gain: float, spread: float, seeds: int) -> str:
    """A claim's verdict from the gain it predicts (positive = as claimed) and the seed spread.

    Two seeds or more: "holds" when the gain exceeds twice the larger seed std of the rows
    compared, "does not hold" when the opposite difference does, and a tie otherwise. One seed:
    the sign of the gain only, marked provisional.
    """
    if seeds < 2:
        return ("holds" if gain > 0 else "does not hold") + f", provisionally ({seeds} seed)"
    if gain > 2 * spread:
        return "holds"
    if -gain > 2 * spread:
        return "does not hold"
    return "a tie within twice the seed spread (neither shown)"


def claims(summary: dict) -> list[str]:
    """The paper's three claims (issue 19 §4) checked on the summary, each stated either way."""
    out = []
    invariant = [row.name for row in ROWS if row.family == "invariant"]
    equivariant = [row.name for row in ROWS if row.family == "equivariant"]
    seq = summary.get("seqjepa", {}).get("agg_m3_accuracy")
    baselines = [n for n in invariant if "encoder_accuracy" in summary.get(n, {})]
    if seq and baselines:
        best = max(baselines, key=lambda n: summary[n]["encoder_accuracy"][0])
        mean, std, seeds = summary[best]["encoder_accuracy"]
        out.append(
            f"(a) seq-JEPA's aggregate top-1 (M_val = 3) is at least that of the invariant "
            f"baselines: {verdict(seq[0] - mean, max(seq[1], std), min(seq[2], seeds))} "
            f"({seq[0]:.1f} ± {seq[1]:.1f} % vs the best, {best}, {mean:.1f} ± {std:.1f} %)."
        )
    for metric, better in (
        (f"{ROTATION}_r2_uniform", 1),
        (f"{ROTATION}_r2_pooled", 1),
        (f"{ROTATION}_geodesic_deg", -1),
    ):
        on = summary.get("seqjepa", {}).get(metric)
        off = summary.get("seqjepa_no_act", {}).get(metric)
        if on and off:
            gain = better * (on[0] - off[0])
            spread = max(on[1], off[1])
            seeds = min(on[2], off[2])
            found = (  # one seed has no spread to compare the gain with
                verdict(gain, spread, seeds)
                if seeds >= 2
                else f"undecided, {seeds} seed (a spread needs 2 or more)"
            )
            out.append(
                f"(b) action conditioning raises seq-JEPA's rotation readout ({metric}) by "
                f"more than twice the seed spread: {found} (on {on[0]:.3f} ± {on[1]:.3f}, "
                f"off {off[0]:.3f} ± {off[1]:.3f}; gain {gain:.3f}, 2 × spread "
                f"{2 * spread:.3f})."
            )
    for metric, better in ((f"{ROTATION}_r2_uniform", 1), (f"{ROTATION}_geodesic_deg", -1)):
        eq_rows = [n for n in equivariant if metric in summary.get(n, {})]
        inv_rows = [n for n in invariant if metric in summary.get(n, {})]
        if eq_rows and inv_rows:
            rows = eq_rows + inv_rows
            worst_eq = min(eq_rows, key=lambda n: better * summary[n][metric][0])
            best_inv = max(inv_rows, key=lambda n: better * summary[n][metric][0])
            gain = better * (summary[worst_eq][metric][0] - summary[best_inv][metric][0])
            found = verdict(
                gain,
                max(summary[worst_eq][metric][1], summary[best_inv][metric][1]),
                min(summary[n][metric][2] for n in rows),
            )
            out.append(
                f"(c) every equivariant method ({', '.join(eq_rows)}) reads rotation better than "
                f"every invariant one ({', '.join(inv_rows)}) on {metric}: {found} (equivariant "
                f"mean {np.mean([summary[n][metric][0] for n in eq_rows]):.3f}, invariant mean "
                f"{np.mean([summary[n][metric][0] for n in inv_rows]):.3f}; weakest equivariant "
                f"{worst_eq} {summary[worst_eq][metric][0]:.3f}, strongest invariant {best_inv} "
                f"{summary[best_inv][metric][0]:.3f})."
            )
    return out


def summary_figure(summary: dict, path: str, equivariance_key: str) -> None:
    """Invariance (top-1) against equivariance (`equivariance_key`), one point per row with its
    seed spread as error bars; seq-JEPA rows use the aggregate at M_val = 3."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 5.0))
    ax = fig.add_subplot()
    for row in ROWS:
        scores = summary.get(row.name, {})
        x_key = "agg_m3_accuracy" if "agg_m3_accuracy" in scores else "encoder_accuracy"
        if x_key not in scores or equivariance_key not in scores:
            continue
        (x, x_err, _), (y, y_err, _) = scores[x_key], scores[equivariance_key]
        marker = {"invariant": "s", "equivariant": "o"}.get(row.family, "^")
        ax.errorbar(x, y, xerr=x_err, yerr=y_err, fmt=marker, capsize=3, label=row.label)
    ax.set_xlabel("top-1 (%): invariance (seq-JEPA: aggregate, M_val = 3; others: encoder)")
    ax.set_ylabel(f"{equivariance_key}: equivariance")
    if equivariance_key.endswith("geodesic_deg"):
        ax.invert_yaxis()  # lower error is better: up is more equivariant
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_outputs(ledger: Sequence[dict], output_dir: str, equivariance_key: str) -> str:
    """The Markdown table with floors and claims, the ledger copy and the figure."""
    os.makedirs(output_dir, exist_ok=True)
    summary = summarise(ledger)
    text = "# Table 1 on the built-in data\n\n"
    text += f"Training budget: {', '.join(budgets_of(ledger))} epochs per run.\n\n"
    text += table_markdown(summary)
    text += "\n## The paper's claims on this data and budget\n\n"
    text += "".join(f"- {claim}\n" for claim in claims(summary))
    with open(os.path.join(output_dir, "table1_builtin.md"), "w") as f:
        f.write(text)
    write_ledger(ledger, os.path.join(output_dir, LEDGER))
    summary_figure(summary, os.path.join(output_dir, "table1_builtin.png"), equivariance_key)
    return text


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Runs every missing (row, seed), appending each to the ledger, then writes the outputs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="run workdirs and the working ledger")
    parser.add_argument("--output_dir", default="", help="results folder ('' = --workdir)")
    parser.add_argument("--only", default="", help="comma-separated row names")
    parser.add_argument("--max_seeds", type=int, default=0, help="cap seeds per row (0: none)")
    parser.add_argument("--epochs", type=int, default=0, help="override num_epochs (0: default)")
    parser.add_argument("--variant", default="", help="configs/default.py variant, e.g. tiny")
    parser.add_argument("--data_dir", default="", help="procedural cache ('' = default)")
    parser.add_argument(
        "--equivariance", default=f"{ROTATION}_geodesic_deg", help="figure's equivariance key"
    )
    parser.add_argument(
        "--feature_scaling",
        default=None,
        help="config.eval.feature_scaling of every probe (default: the config's; probes.py)",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score ledger lines of another --feature_scaling again from their checkpoints",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from seqjepa_jax.config_defaults import base_config
    from seqjepa_jax.evaluation.probes import FEATURE_SCALINGS
    from seqjepa_jax.main import xla_flags_with_ynn

    if args.feature_scaling is None:
        args.feature_scaling = base_config().eval.feature_scaling
    if args.feature_scaling not in FEATURE_SCALINGS:
        parser.error(f"--feature_scaling={args.feature_scaling!r}: use one of {FEATURE_SCALINGS}.")

    # As `python -m seqjepa_jax.main` does by default: set before JAX starts.
    os.environ["XLA_FLAGS"] = xla_flags_with_ynn(os.environ.get("XLA_FLAGS", ""), True)
    os.makedirs(args.workdir, exist_ok=True)
    ledger_path = os.path.join(args.workdir, LEDGER)
    ledger = read_ledger(ledger_path)
    if not ledger and args.output_dir:  # a fresh workdir continues the committed ledger
        ledger = read_ledger(os.path.join(args.output_dir, LEDGER))
        write_ledger(ledger, ledger_path)
    check_one_budget(ledger, row_config(ROWS[0], SEEDS[0], args).train.num_epochs, ledger_path)
    if args.rescore:
        ledger = rescore(ledger, args, ledger_path)
    mixed = sorted({feature_scaling_of(line) for line in ledger} - {args.feature_scaling})
    if mixed:
        raise SystemExit(
            f"The ledger {ledger_path} has lines scored with feature_scaling {mixed}, not "
            f"--feature_scaling={args.feature_scaling}: one table, one probe protocol. Add "
            "--rescore to score them again from their checkpoints, or pass the ledger's scaling."
        )
    done = {(line["row"], line["seed"]) for line in ledger}
    # Seed-major: the first pass gives every row one seed, so an interrupted table already compares
    # every method; later passes add the seed spreads.
    for index, seed in enumerate(SEEDS):
        for row in ROWS:
            if args.only and row.name not in args.only.split(","):
                continue
            if index >= min(row.seeds, args.max_seeds or row.seeds) or (row.name, seed) in done:
                continue
            line = run_one(row, seed, args)
            ledger.append(line)
            with open(ledger_path, "a") as f:
                f.write(json.dumps(line) + "\n")
            print(f"{row.name} seed {seed}: {line['wall_minutes']} min", flush=True)
            write_outputs(ledger, args.output_dir or args.workdir, args.equivariance)
    print(write_outputs(ledger, args.output_dir or args.workdir, args.equivariance))
    return ledger


if __name__ == "__main__":
    main()
