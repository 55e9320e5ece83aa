"""experiments/bench_step.py (a tiny step of spec §4.1 step 7) and its --check (bench_check.py)."""

from __future__ import annotations

import json
import os

import pytest
from experiment_scripts import EXPERIMENTS_DIR, load_experiment


@pytest.fixture(scope="module")
def bench():
    return load_experiment("bench_step")


@pytest.fixture(scope="module")
def check():
    return load_experiment("bench_check")


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
    assert (record["width"], record["stage_sizes"], record["image_size"]) == (4, [1, 1], 16)
    assert record["devices"] >= 1
    for key in ("compile_s", "first_step_s", "step_s_median", "step_s_max", "peak_rss_mib"):
        assert record[key] > 0, key
    assert record["step_s_min"] <= record["step_s_median"] <= record["step_s_max"]
    assert record["images_per_s"] == pytest.approx(4 * 4 / record["step_s_median"], rel=1e-2)


def test_a_baseline_step_is_timed_on_the_same_recipe(bench):
    """--method times a baseline's step: its own views per sequence (SimCLR: 2)."""
    argv = ["--recipe=cifar100", "--batch=4", "--steps=1", "--width=4", "--stage_sizes=1,1"]
    (record,) = bench.main([*argv, "--image_size=16", "--method=simclr"])
    assert record["method"] == "simclr"
    assert record["images_per_s"] == pytest.approx(4 * 2 / record["step_s_median"], rel=1e-2)
    with pytest.raises(SystemExit):
        bench.parse_args(["--method=all"])  # needs --recipe
    with pytest.raises(SystemExit):
        bench.parse_args(["--recipe=cifar100", "--method=conv_ijepa"])  # saccades only
    assert "conv_ijepa" not in bench.transformed_view_methods()
    assert len(bench.transformed_view_methods()) == 10  # seq-JEPA, 8 baselines, supervised


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


def _record(step_s, recipe="3diebench", batch=32, dtype="float32", devices=1, flags="", **extra):
    return {
        "recipe": recipe,
        "batch": batch,
        "dtype": dtype,
        "devices": devices,
        "xla_flags": flags,
        "step_s_median": step_s,
        **extra,
    }


def test_check_flags_only_slowdowns_beyond_the_margin(check):
    baseline = [
        _record(1.0),
        _record(2.0, dtype="bfloat16"),
        _record(4.0, recipe="cifar100", batch=64),
    ]
    current = [
        _record(1.149),  # within 15 %
        _record(2.4, dtype="bfloat16"),  # 20 % slower
        _record(3.0, recipe="cifar100", batch=64),  # 25 % faster
    ]
    rows = check.compare_to_baseline(baseline, current, margin=0.15)
    assert [row["status"] for row in rows] == ["ok", "slower", "faster"]
    assert [row["ratio"] for row in rows] == [1.149, 1.2, 0.75]
    assert [row["baseline_s"] for row in rows] == [1.0, 2.0, 4.0]
    assert check.check_exit_code(rows) == 1
    assert check.check_exit_code([rows[0], rows[2]]) == 0
    # A wider margin accepts the 20 % slow-down.
    assert check.check_exit_code(check.compare_to_baseline(baseline, current, margin=0.25)) == 0
    table = check.format_check_table(rows)
    assert table.count("\n") == 4 and "slower" in table and "1.200" in table


def test_check_matches_devices_flags_and_sizes_and_uses_the_newest_baseline(check):
    fast = check.FAST_XLA_FLAG
    baseline = [
        _record(1.0),
        _record(0.5, flags=fast),
        _record(9.0, flags=fast),  # newer record of the same measurement: the reference
        _record(0.1, width=8, stage_sizes=[1, 1], image_size=16),
    ]
    # Old records (no width/image_size) are the official sizes.
    assert check.match_key(_record(1.0)) == check.match_key(
        _record(1.0, width=64, stage_sizes=[2, 2, 2, 2], image_size=128)
    )
    # Records from before the baselines are seq-JEPA's; another method is another measurement.
    assert check.match_key(_record(1.0)) == check.match_key(_record(1.0, method="seqjepa"))
    assert check.match_key(_record(1.0)) != check.match_key(_record(1.0, method="byol"))
    rows = check.compare_to_baseline(
        baseline,
        [
            _record(1.0, flags=fast),
            _record(1.0, devices=8),
            _record(0.1, width=8, stage_sizes=[1, 1], image_size=16),
        ],
    )
    assert [row["baseline_s"] for row in rows] == [9.0, None, 0.1]
    assert [row["status"] for row in rows] == ["faster", "no baseline", "ok"]
    assert check.check_exit_code(rows) == 2
    assert check.check_exit_code([]) == 2
    assert len(check.latest_baselines(baseline)) == 3


def test_check_rejects_a_bad_baseline_file_before_measuring(check, tmp_path):
    with pytest.raises(FileNotFoundError, match="Record one first"):
        check.load_records(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"recipe": "3diebench", "batch": 32}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1 lacks \['devices', 'dtype'"):
        check.load_records(str(bad))
    with pytest.raises(ValueError, match="margin"):
        check.compare_to_baseline([], [], margin=-0.1)
    # The recorded CPU baseline of the repository parses.
    records = check.load_records(os.path.join(EXPERIMENTS_DIR, "results", "bench_step_cpu.jsonl"))
    assert len(check.latest_baselines(records)) == 8


def test_check_command_reruns_the_baseline_measurement_and_fails_when_slower(
    bench, tmp_path, capsys
):
    # A tiny baseline with an impossible 1 µs step: the re-run must be reported slower.
    baseline = tmp_path / "baseline.jsonl"
    record = _record(1e-6, recipe="cifar100", batch=2, width=4, stage_sizes=[1, 1], image_size=16)
    baseline.write_text(json.dumps(record) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        bench.main([f"--check={baseline}", "--steps=1"])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    rerun = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert (rerun["batch"], rerun["width"], rerun["image_size"]) == (2, 4, 16)
    assert rerun["xla_flags"] == "" and "slower" in out
