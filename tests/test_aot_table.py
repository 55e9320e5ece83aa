"""experiments/aot_table.py on the committed AOT grid: extrapolated cells take the collectives of
a compiled step of their own dtype, and a compiled cell is shown as measured."""

from __future__ import annotations

import os

import pytest
from experiment_scripts import EXPERIMENTS_DIR, load_experiment

GRID = os.path.join(EXPERIMENTS_DIR, "results", "aot_grid.jsonl")


@pytest.fixture(scope="module")
def aot_table():
    return load_experiment("aot_table")


def rows_of(markdown: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()[2:]]


def test_extrapolated_cells_keep_the_all_reduce_bytes_of_their_dtype(aot_table):
    records = aot_table.load(GRID)
    rows = rows_of(aot_table.table(records))
    checked = 0
    for r in records:
        if not r.get("fits") or r["recipe"] in aot_table.ALIASES:
            continue
        mib = sum(c["bytes"] for c in r["collectives"].values()) / 2**20
        dtype = {"bfloat16": "bf16", "float32": "fp32"}[r["dtype"]]
        same = [row for row in rows if row[0] == r["recipe"] and row[2] == dtype]
        estimated = [row for row in same if row[4].startswith("~")]
        assert all(row[11] == f"{mib:.1f}" for row in estimated), (r["recipe"], dtype)
        measured = next(row for row in same if row[1] == aot_table.SLICE_NAMES[r["topology"]])
        mark = "†" if r.get("qdwh_corrected") else ""
        assert measured[4] == f"{mark}{r['hbm_bytes_per_device'] / 2**30:.1f}"
        checked += len(estimated)
    assert checked > 0
    # fp32 gradients are all-reduced in fp32: about twice the bf16 step's bytes (finding 4).
    by_dtype = {row[2]: float(row[11]) for row in rows if row[0] == "3diebench"}
    assert 1.7 < by_dtype["fp32"] / by_dtype["bf16"] < 2.0
