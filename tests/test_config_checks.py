"""Bad configurations fail at start-up with a message naming the field (before compiling)."""

from __future__ import annotations

import os

import pytest
from tiny import load_config

from seqjepa_jax.config_checks import validate_config
from seqjepa_jax.config_defaults import set_field


def default():
    return load_config("default", "tiny")


CASES = [
    ("model.num_heads", 3, "config.model.num_heads=3 does not divide"),
    ("train.batch_size", 6, "config.train.batch_size=6 is not a positive multiple of the 4"),
    ("train.seq_len", 0, "config.train.seq_len=0: M_tr must be >= 1"),
    ("train.seq_len", 8, "needs M_tr + 1 = 9 distinct views"),
    ("train.optimizer", "lamb", "config.train.optimizer='lamb' is unknown"),
    ("train.lr_schedule", "cosine", "config.train.lr_schedule='cosine' is unknown"),
    ("train.ema_schedule_unit", "epochs", "config.train.ema_schedule_unit='epochs'"),
    ("data.latent_type", "quat", "config.data.latent_type='quat' does not fit"),
    ("data.name", "mnist", "config.data.name='mnist' is unknown"),
    ("model.stem", "vit", "config.model.stem='vit' is unknown"),
    ("data.image_size", 4, "config.data.image_size=4 is smaller than the encoder's total stride"),
    ("eval.m_val", (1, 9), "config.eval.num_views=4 is too few for M_val=(1, 9)"),
    ("eval.num_views", 9, "config.eval.num_views=9 exceeds config.data.views_per_object=8"),
    ("train.weight_decay", 0.1, "with optimizer 'adam'"),
    ("model.compute_dtype", "fp8", "config.model.compute_dtype='fp8'"),
    ("train.ema_tau_base", 1.5, "config.train.ema_tau_base=1.5"),
    ("eval.knn_k", 49, "config.eval.knn_k=49 must lie in [1, 48]"),
    ("eval.knn_k", 49, "(set by config.data.procedural.num_train_objects=48)"),
    ("eval.knn_k", 0, "config.eval.knn_k=0 must lie in [1,"),
    ("eval.feature_scaling", "minmax", "config.eval.feature_scaling='minmax' is not one of"),
]


@pytest.mark.parametrize("field,value,message", CASES)
def test_each_bad_field_is_named(field, value, message):
    config = set_field(default(), field, value)
    with pytest.raises(ValueError) as error:
        validate_config(config, device_count=4)
    assert message in str(error.value)


def test_knn_k_is_checked_against_the_smaller_of_cap_and_split():
    config = set_field(default(), "eval.max_train_objects", 10)
    set_field(config, "eval.knn_k", 11)
    with pytest.raises(ValueError, match=r"\[1, 10\].*config.eval.max_train_objects=10"):
        validate_config(config, device_count=4)
    set_field(config, "eval.knn_k", 10)
    validate_config(config, device_count=4)


def test_all_problems_are_reported_together():
    config = set_field(default(), "train.optimizer", "lamb")
    set_field(config, "model.num_heads", 3)
    with pytest.raises(ValueError) as error:
        validate_config(config, device_count=1)
    assert "train.optimizer" in str(error.value) and "model.num_heads" in str(error.value)


def test_default_and_official_configs_are_valid():
    validate_config(default(), device_count=8)
    validate_config(load_config("default"), device_count=8)
    for variant in (None, "rotcolor", "no_act_cond", "m_tr1"):
        validate_config(load_config("3diebench", variant), device_count=8)


def test_bad_config_fails_before_any_work(tmp_path):
    """train_and_evaluate refuses a bad config before rendering data or writing the workdir."""
    from seqjepa_jax import train

    config = set_field(default(), "model.num_heads", 3)
    config.data.data_dir = str(tmp_path / "data")
    workdir = tmp_path / "work"
    with pytest.raises(ValueError, match="num_heads"):
        train.train_and_evaluate(config, str(workdir))
    assert not workdir.exists() and not os.path.exists(config.data.data_dir)


def test_missing_3diebench_root_is_named(tmp_path):
    from seqjepa_jax.data import datasets

    config = load_config("3diebench")
    config.data.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.build_view_sources(config)
    config.data.data_dir = ""
    with pytest.raises(ValueError, match="config.data.data_dir is empty"):
        datasets.build_view_sources(config)
