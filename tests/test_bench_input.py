"""Smoke test of experiments/bench_input.py on a tiny batch (the augmentation stage, spec §6.3)."""

from __future__ import annotations

import json

import pytest
from experiment_scripts import load_experiment


@pytest.fixture(scope="module")
def bench():
    module = load_experiment("bench_input")
    return module


def test_tiny_augment_measurement_prints_one_complete_record(bench, capsys, tmp_path):
    output = tmp_path / "bench.jsonl"
    argv = ["--measure=augment", "--batch=2", "--steps=2", "--image_size=20", "--out_size=16"]
    records = bench.main(argv + [f"--output={output}"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and len(records) == 1
    record = json.loads(lines[0])
    assert record == records[0] == json.loads(output.read_text())
    assert tuple(record) == bench.RECORD_KEYS
    assert (record["stage"], record["batch"], record["views"]) == ("augment", 2, 4)
    assert (record["image_size"], record["out_size"]) == (20, 16)
    assert record["views_per_s"] == pytest.approx(4 * record["sequences_per_s"], rel=1e-3, abs=0.5)
    for key in ("compile_s", "step_s_median", "step_s_min", "step_s_max"):
        assert record[key] > 0, key


def test_bad_arguments_are_rejected(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--batch=0"])


@pytest.mark.parametrize("stage", ["cifar100_pipeline", "stl10_pipeline"])
def test_recipe_pipeline_measurement_runs_the_training_input_path(bench, capsys, stage):
    argv = [f"--measure={stage}", "--batch=2", "--steps=1", "--saliency=file"]
    (record,) = bench.main(argv)
    views = 4 if stage == "cifar100_pipeline" else 5
    assert record["views"] == views and record["batch"] == 2
    assert record["stage"].startswith(stage.split("_")[0]) and record["stage"].endswith("pipeline")
    assert record["views_per_s"] == pytest.approx(views * record["sequences_per_s"], rel=1e-2)
