"""Smoke test of experiments/bench_step.py on a tiny encoder (the step of spec §4.1 step 7)."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "bench_step.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_step", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_measurement_prints_one_complete_record(bench, capsys):
    argv = [
        "--recipe=cifar100",
        "--batch=4",
        "--steps=2",
        "--width=4",
        "--stage_sizes=1,1",
        "--image_size=16",
    ]
    records = bench.main(argv)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and len(records) == 1
    record = json.loads(lines[0])
    assert record == records[0]
    assert tuple(record) == bench.RECORD_KEYS
    assert (record["recipe"], record["batch"], record["dtype"]) == ("cifar100", 4, "float32")
    assert record["devices"] >= 1
    for key in ("compile_s", "step_s_median", "step_s_min", "step_s_max", "peak_rss_mib"):
        assert record[key] > 0, key
    assert record["step_s_min"] <= record["step_s_median"] <= record["step_s_max"]
    assert record["images_per_s"] == pytest.approx(4 * 4 / record["step_s_median"], rel=1e-2)


def test_fast_flag_reaches_the_subprocess_environment(bench, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_foo=1")
    env = bench.subprocess_env(True)
    assert env["XLA_FLAGS"] == "--xla_foo=1 " + bench.FAST_XLA_FLAG
    assert bench.subprocess_env(False)["XLA_FLAGS"] == "--xla_foo=1"
    assert bench.DEFAULT_MEASUREMENTS == (
        ("3diebench", 32, "float32"),
        ("3diebench", 32, "bfloat16"),
        ("cifar100", 64, "float32"),
        ("cifar100", 64, "bfloat16"),
    )
