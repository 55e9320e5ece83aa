"""Smoke test of experiments/ablation_builtin.py on the tiny default (two short runs)."""

from __future__ import annotations

import json
import os

from experiment_scripts import load_experiment


def test_tiny_ablation_writes_table_ledger_and_heatmap(tmp_path, monkeypatch):
    # main() appends the YNN flag to XLA_FLAGS (as `seqjepa_jax.main` does); restore it afterwards
    # so that later tests' subprocesses see the session's flags.
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    module = load_experiment("ablation_builtin")
    workdir = tmp_path / "ablation"
    argv = [f"--workdir={workdir}", "--variant=tiny", "--epochs=1", f"--data_dir={tmp_path}/data"]
    rows = module.main(argv + ["--only=m_tr1_act,m_tr1_noact"])
    assert [(r["m_tr"], r["act_cond"]) for r in rows] == [(1, True), (1, False)]
    table = (workdir / "ablation.md").read_text().splitlines()
    assert table[0].startswith("| run | M_tr | act_cond | M_val=1 | M_val=3 | M_val=5 |")
    assert table[2].startswith("| m_tr1_act | 1 | on |") and table[3].startswith("| m_tr1_noact")
    ledger = [json.loads(line) for line in (workdir / "ablation.jsonl").read_text().splitlines()]
    assert [row["name"] for row in ledger] == ["m_tr1_act", "m_tr1_noact"]
    for row in ledger:
        assert set(row["probes"]["trained"]) >= {"agg_m5_accuracy", "relative_rotation_r2_pooled"}
    assert (workdir / "heatmap.png").stat().st_size > 0
    # A second invocation reuses the finished runs instead of retraining them.
    again = module.main(argv + ["--only=m_tr1_act"])
    assert again[0]["probes"] == rows[0]["probes"]
