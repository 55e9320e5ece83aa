"""Smoke test of experiments/rotation_learnability.py (the scene diagnostic of issue 9)."""

from __future__ import annotations

import numpy as np
from experiment_scripts import load_experiment


def test_tiny_run_reports_both_r2_names():
    module = load_experiment("rotation_learnability")
    argv = ["--train_objects=4", "--eval_objects=2", "--views=3", "--image_size=16"]
    record = module.main(argv + ["--steps=2", "--batch=4", "--max_angle=0.5", "--fixed_lighting"])
    assert record["max_angle"] == 0.5 and record["fixed_lighting"] is True
    assert np.isfinite(record["r2_uniform"]) and np.isfinite(record["r2_pooled"])
    # Two steps learn nothing: the held-out R² cannot be near a fitted one.
    assert record["r2_pooled"] < 0.5
