"""The regression check of experiments/bench_step.py (`--check FILE [--margin 0.15]`).

  python experiments/bench_step.py --check experiments/results/bench_step_cpu.jsonl

Pure functions on bench_step records (`match_key`, `compare_to_baseline`, `check_exit_code`,
`format_check_table`, `load_records`; tested in tests/test_bench_step.py without timing) and
`run_check`, which re-measures the baseline's measurements through bench_step. See
docs/benchmarks.md for when to run it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_step  # noqa: E402

RECIPES = bench_step.RECIPES
FAST_XLA_FLAG = bench_step.FAST_XLA_FLAG

DEFAULT_MARGIN = 0.15


def match_key(record: dict) -> tuple:
    """What makes two records the same measurement: recipe, method, batch, dtype, device count,
    XLA flags and the encoder size (records written before method/width/stage_sizes/image_size
    were recorded are seq-JEPA at the official sizes)."""
    return (
        record["recipe"],
        record.get("method", "seqjepa"),
        int(record["batch"]),
        record["dtype"],
        int(record["devices"]),
        record.get("xla_flags", "").strip(),
        int(record.get("width", 64)),
        tuple(record.get("stage_sizes", (2, 2, 2, 2))),
        int(record.get("image_size") or RECIPES[record["recipe"]]["image_size"]),
    )


def latest_baselines(baseline: Sequence[dict]) -> dict[tuple, dict]:
    """The newest (last) baseline record of each `match_key`, keyed in first-seen order."""
    latest: dict[tuple, dict] = {}
    for record in baseline:
        latest[match_key(record)] = record
    return latest


def compare_to_baseline(
    baseline: Sequence[dict], current: Sequence[dict], margin: float = DEFAULT_MARGIN
) -> list[dict]:
    """One row per current record: its baseline's median step time, the ratio and a status.

    status is "ok", "slower" (ratio > 1 + margin, a regression), "faster" (ratio < 1 - margin:
    consider recording a new baseline) or "no baseline" (no record with the same `match_key`,
    e.g. another device count). The newest baseline record of a key is the reference.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}.")
    latest = latest_baselines(baseline)
    rows = []
    for record in current:
        row = {
            "recipe": record["recipe"],
            "batch": record["batch"],
            "dtype": record["dtype"],
            "devices": record["devices"],
            "xla_flags": record.get("xla_flags", ""),
            "current_s": record["step_s_median"],
            "baseline_s": None,
            "ratio": None,
            "status": "no baseline",
        }
        base = latest.get(match_key(record))
        if base is not None:
            ratio = record["step_s_median"] / base["step_s_median"]
            row.update(baseline_s=base["step_s_median"], ratio=round(ratio, 3))
            if ratio > 1 + margin:
                row["status"] = "slower"
            elif ratio < 1 - margin:
                row["status"] = "faster"
            else:
                row["status"] = "ok"
        rows.append(row)
    return rows


def check_exit_code(rows: Sequence[dict]) -> int:
    """0 if every row is ok or faster, 1 if any is slower, 2 if any has no baseline (or none)."""
    statuses = {row["status"] for row in rows}
    if not rows or "no baseline" in statuses:
        return 2
    return 1 if "slower" in statuses else 0


def format_check_table(rows: Sequence[dict], margin: float = DEFAULT_MARGIN) -> str:
    """A fixed-width table of `compare_to_baseline` rows."""
    header = f"{'recipe':<10} {'batch':>5} {'dtype':<9} {'dev':>3} {'ynn':<3} "
    header += f"{'baseline s':>10} {'now s':>8} {'ratio':>6}  status (margin {margin:.0%})"
    lines = [header, "-" * len(header)]
    for row in rows:
        ynn = "yes" if FAST_XLA_FLAG in row["xla_flags"] else "no"
        base = "-" if row["baseline_s"] is None else f"{row['baseline_s']:.4f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        lines.append(
            f"{row['recipe']:<10} {row['batch']:>5} {row['dtype']:<9} {row['devices']:>3} "
            f"{ynn:<3} {base:>10} {row['current_s']:>8.4f} {ratio:>6}  {row['status']}"
        )
    return "\n".join(lines)


def load_records(path: str) -> list[dict]:
    """The JSON lines of a results file; clear errors for a missing file or a bad line."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Baseline file {path!r} does not exist. Record one first with "
            f"`python experiments/bench_step.py --output {path}`."
        )
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            missing = {"recipe", "batch", "dtype", "devices", "step_s_median"} - set(record)
            if missing:
                raise ValueError(
                    f"{path}:{number} lacks {sorted(missing)}: not a bench_step.py record. "
                    "Pass a file written by `bench_step.py --output`."
                )
            if record["recipe"] not in RECIPES:
                raise ValueError(f"{path}:{number}: unknown recipe {record['recipe']!r}.")
            records.append(record)
    if not records:
        raise ValueError(f"Baseline file {path!r} has no records.")
    return records


def run_check(args: argparse.Namespace) -> tuple[list[dict], int]:
    """Re-measures every distinct baseline measurement in a fresh subprocess, with the
    baseline's own XLA_FLAGS and sizes, prints the comparison table; returns (records, code)."""
    baseline = load_records(args.check)
    current = []
    for record in latest_baselines(baseline).values():
        current.append(
            bench_step._measure_in_subprocess(
                args,
                record["recipe"],
                int(record["batch"]),
                record["dtype"],
                xla_flags=record.get("xla_flags", ""),
                width=int(record.get("width", 64)),
                stage_sizes=tuple(record.get("stage_sizes", (2, 2, 2, 2))),
                image_size=record.get("image_size"),
                method=record.get("method", "seqjepa"),
            )
        )
        print(json.dumps(current[-1]), flush=True)
    rows = compare_to_baseline(baseline, current, args.margin)
    print(format_check_table(rows, args.margin), flush=True)
    code = check_exit_code(rows)
    if code == 2:
        print(
            "Some measurements have no baseline with the same devices/flags/sizes: run the check "
            "on a machine like the baseline's, or record a new baseline with --output.",
            file=sys.stderr,
        )
    return current, code
