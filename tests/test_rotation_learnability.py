"""Smoke test of experiments/rotation_learnability.py (the scene diagnostic of issue 9)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

_PATH = os.path.join(
    os.path.dirname(__file__), os.pardir, "experiments", "rotation_learnability.py"
)


def test_tiny_run_reports_both_r2_names():
    spec = importlib.util.spec_from_file_location("rotation_learnability", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--train_objects=4", "--eval_objects=2", "--views=3", "--image_size=16"]
    record = module.main(argv + ["--steps=2", "--batch=4", "--max_angle=0.5", "--fixed_lighting"])
    assert record["max_angle"] == 0.5 and record["fixed_lighting"] is True
    assert np.isfinite(record["r2_uniform"]) and np.isfinite(record["r2_pooled"])
    # Two steps learn nothing: the held-out R² cannot be near a fitted one.
    assert record["r2_pooled"] < 0.5
