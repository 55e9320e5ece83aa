"""Smoke test of experiments/bench_saccades_input.py on tiny shapes (the sampler of spec §6.4.2)."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "bench_saccades_input.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_saccades_input", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_variant_prints_one_consistent_record(bench, capsys):
    bench.main(["--batch=2", "--image_size=16", "--fovea_size=4", "--num_saccades=3", "--steps=2"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["variant"] for r in records] == list(bench.VARIANTS)
    for record in records:
        assert record["batch"] == 2 and record["num_saccades"] == 3
        assert record["sequences_per_s"] > 0
        assert record["glimpses_per_s"] == pytest.approx(3 * record["sequences_per_s"], rel=1e-3)


def test_unknown_variant_is_refused(bench):
    with pytest.raises(ValueError, match="variant must be one of"):
        bench.bench_saccade_batch("saliency")
