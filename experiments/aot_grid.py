"""Every recipe x slice x dtype compiled ahead of time for TPU (docs/accelerators.md), resumable.

  nice -n 5 python experiments/aot_grid.py --output experiments/results/aot_grid.jsonl
  python experiments/aot_grid.py --output ... --only 3diebench --dtypes bfloat16 --max_batch

Each cell runs `python -m seqjepa_jax.aot --json` in a fresh subprocess (one compile set per
process, so one failure or memory blow-up costs one cell) and appends one JSON line: the aot
report plus `recipe`, `config`, `dtype`, `wall_s` and, when the command failed, `error` (its last
stderr line). Cells already in the output file are skipped, so an interrupted grid resumes where
it stopped. `--max_batch` adds the aot `--max_batch` search to each cell (several compiles).

The recipes are the configs of `RECIPES`, at their own global batch; the slices `TOPOLOGIES`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

RECIPES = {
    "default": "configs/default.py",
    "default_gpu": "configs/default.py:gpu",
    "3diebench": "configs/3diebench.py",
    "cifar100": "configs/cifar100.py",
    "tinyimagenet": "configs/tinyimagenet.py",
    "stl10": "configs/stl10.py",
    "imagenet": "configs/imagenet.py",
}
TOPOLOGIES = ("v5e:2x2", "v5e:4x4", "v5p:2x2x1", "v6e:2x4")
DTYPES = ("bfloat16", "float32")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cell_key(record: dict) -> tuple:
    """What identifies a cell of the grid (recipe, topology, dtype, batch, max_batch)."""
    return (
        record["recipe"],
        record["topology"],
        record["dtype"],
        record.get("batch_override"),
        bool(record.get("with_max_batch")),
    )


def done_cells(path: str) -> set[tuple]:
    """Cells already recorded in `path` (a jsonl file, maybe absent); failed ones are retried."""
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {cell_key(record) for record in records if "error" not in record}


def cell_command(
    recipe: str,
    topology: str,
    dtype: str,
    *,
    batch: int | None,
    max_batch: bool,
    with_eval: bool,
) -> list[str]:
    """The aot command line of one cell."""
    command = [
        sys.executable,
        "-m",
        "seqjepa_jax.aot",
        f"--config={RECIPES[recipe]}",
        f"--topology={topology}",
        f"--config.model.compute_dtype={dtype}",
        "--json",
    ]
    if batch:
        command.append(f"--config.train.batch_size={batch}")
    if max_batch:
        command.append("--max_batch")
    if not with_eval:
        command.append("--noeval")
    return command


def run_cell(command: Sequence[str]) -> dict:
    """Runs one aot command; its JSON report, or {'error': last stderr line}."""
    start = time.perf_counter()
    result = subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True)
    wall = round(time.perf_counter() - start, 1)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode == 0 and lines:
        return {**json.loads(lines[-1]), "wall_s": wall}
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    return {"error": errors[-1] if errors else f"exit {result.returncode}", "wall_s": wall}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--only", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--topologies", nargs="*", default=list(TOPOLOGIES))
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--batch", type=int, default=None, help="global batch override")
    parser.add_argument("--max_batch", action="store_true")
    parser.add_argument("--noeval", action="store_true", help="skip the evaluation forward")
    args = parser.parse_args(argv)
    done = done_cells(args.output)
    for dtype in args.dtypes:
        for topology in args.topologies:
            for recipe in args.only:
                cell = {
                    "recipe": recipe,
                    "config": RECIPES[recipe],
                    "topology": topology,
                    "dtype": dtype,
                    "batch_override": args.batch,
                    "with_max_batch": args.max_batch,
                }
                if cell_key(cell) in done:
                    continue
                command = cell_command(
                    recipe,
                    topology,
                    dtype,
                    batch=args.batch,
                    max_batch=args.max_batch,
                    with_eval=not args.noeval,
                )
                record = {**run_cell(command), **cell}
                print(json.dumps(record), flush=True)
                with open(args.output, "a") as f:
                    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
