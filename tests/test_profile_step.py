"""experiments/profile_step.py: the trace summary on hand-made events, and one tiny traced step."""

from __future__ import annotations

import pytest
from experiment_scripts import load_experiment


@pytest.fixture(scope="module")
def profile_step():
    module = load_experiment("profile_step")
    return module


def test_summarise_groups_by_op_kind_and_skips_wrappers(profile_step):
    ms = 1_000_000
    events = [
        ("python", "$api.py:1 block_until_ready", 900 * ms),
        ("tf_XLAEigen/1", "ThunkExecutor::Execute", 500 * ms),
        ("tf_XLAEigen/1", "transpose_copy_fusion.29", 30 * ms),
        ("tf_XLAEigen/2", "transpose_copy_fusion.33", 10 * ms),
        ("tf_XLAEigen/2", "ynn_fusion", 20 * ms),
        ("tf_XLAPjRtCpuClient/7", "copy.4", 2 * ms),
    ]
    summary = profile_step.summarise(events, steps=2, step_s=0.5)
    assert summary["worker_threads"] == 2
    assert summary["categories"]["transpose_copy_fusion"] == {
        "thread_ms_per_step": 20.0,
        "per_step": 1,
    }
    assert list(summary["categories"]) == ["transpose_copy_fusion", "ynn_fusion", "copy"]
    assert summary["attributed_thread_s"] == pytest.approx(0.031)
    assert summary["unattributed_thread_s"] == pytest.approx(2 * 0.5 - 0.031)


def test_a_tiny_step_is_traced_and_summarised(profile_step, tmp_path):
    result = profile_step.main(
        [
            "--width",
            "8",
            "--image_size",
            "32",
            "--batch",
            "4",
            "--steps",
            "1",
            "--trace_dir",
            str(tmp_path),
        ]  # fmt: skip
    )
    assert result["step_s"] > 0 and result["worker_threads"] >= 1
    assert result["categories"], "no thunk events were read back from the trace"
    assert 0 < result["attributed_thread_s"] <= result["worker_threads"] * result["step_s"] * 1.05
