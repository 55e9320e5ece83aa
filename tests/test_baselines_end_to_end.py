"""Every baseline through the whole main job on the tiny built-in config (one step, checkpoint,
final probes), Conv-IJEPA on STL-10 mock data, and the evaluation program and the checkpoint
importer on a baseline's files (issue 17)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from tiny import load_config

from seqjepa_jax import checkpointing, convert, methods, train
from seqjepa_jax.evaluation.program import EvalOptions, evaluate_checkpoint

TRANSFORMED = [name for name, info in methods.METHODS.items() if "views" in info.data_kinds]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("procedural"))


def one_step_config(method: str, data_dir: str):
    config = load_config("default", "tiny")
    config.method = method
    config.data.data_dir = data_dir
    config.data.procedural.num_train_objects = 8  # one step of batch 8 per epoch
    config.train.num_epochs = 1
    config.eval.compare_random_init = False
    config.eval.knn_k = 3
    return config


def check_results(results: dict, method: str) -> None:
    assert results["step"] == 1
    metrics = results["final_train_metrics"]
    assert math.isfinite(metrics["ssl_loss"])
    trained = results["probes"]["trained"]
    assert 0.0 <= trained["encoder_accuracy"] <= 100.0
    assert math.isfinite(
        trained.get(
            "relative_rotation_r2_pooled", trained.get("relative_position_r2_pooled", float("nan"))
        )
    )
    assert "online_accuracy" in trained
    has_aggregate = methods.METHODS[method].module.has_aggregate
    assert any(key.startswith("agg_m") for key in trained) == has_aggregate


@pytest.mark.parametrize("method", [m for m in TRANSFORMED if m != "seqjepa"])
def test_each_baseline_trains_checkpoints_and_is_probed(method, data_dir, tmp_path):
    workdir = str(tmp_path / method)
    results = train.train_and_evaluate(one_step_config(method, data_dir), workdir)
    check_results(results, method)
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["1"]
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["method"] == method


def test_conv_ijepa_trains_on_stl10_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    config = load_config("stl10", "smoke")
    config.method = "conv_ijepa"
    config.data.data_dir = str(tmp_path / "tfds")
    config.eval.compare_random_init = False
    with tfds.testing.mock_data(num_examples=8):
        results = train.train_and_evaluate(config, str(tmp_path / "work"))
    check_results(results, "conv_ijepa")
    assert "individual_position_r2_uniform" in results["probes"]["trained"]


def test_evaluation_program_on_a_baseline_checkpoint(data_dir, tmp_path):
    """The evaluation program reads a BYOL checkpoint (EMA target included): encoder probes,
    k-NN, rotation R², path integration from the encoder pair, no aggregate rows."""
    config = one_step_config("byol", data_dir)
    workdir = str(tmp_path / "byol")
    train.train_and_evaluate(config, workdir)
    results = evaluate_checkpoint(
        config, workdir, EvalOptions(m_val=(1, 3), plots=True, use_umap=False)
    )
    assert results["method_label"] == "BYOL" and results["m_val"] == []
    trained = results["probes"]["trained"]
    assert not any(key.startswith(("agg_m", "knn_agg", "path_integration_agg")) for key in trained)
    assert {"knn_encoder_accuracy", "relative_rotation_r2_uniform"} <= trained.keys()
    assert "path_integration_encoder_m3_r2_uniform" in trained
    table = open(os.path.join(workdir, "eval", "table1.md")).read()
    assert "| BYOL (encoder, one view) |" in table and "M_val=1" not in table.split("##")[0]
    figures = set(os.listdir(os.path.join(workdir, "eval")))
    assert "projection_encoder.png" in figures and "projection_aggregate.png" not in figures


def test_an_official_baseline_file_converts_and_resumes(data_dir, tmp_path):
    """A SEN state dict saved as the official script does ({'model': ..., 'epoch': E}) with its
    online probes converts into a workdir that the main job resumes from."""
    torch = pytest.importorskip("torch")
    import torch_reference_baselines as ref
    from torch_reference import randomise_everything_, torch_action_probe

    config = one_step_config("sen", data_dir)
    m = config.model
    width = m.width * 2 ** (len(m.stage_sizes) - 1)
    net = ref.TorchSEN(
        dims=tuple(config.methods.sen.projector_dims),
        action_dim=4,
        act_proj_dim=m.act_proj_dim,
        temperature=0.5,
        stem=m.stem,
        width=m.width,
        stage_sizes=tuple(m.stage_sizes),
    )
    net.online_linprobe = torch.nn.Sequential(torch.nn.Linear(width, config.data.num_classes))
    net.online_equiprobe = torch_action_probe(2 * width, m.probe_hidden, 4)
    randomise_everything_(net, seed=5)
    path = str(tmp_path / "sen.pth")
    torch.save({"model": net.state_dict(), "epoch": 0}, path)
    out = str(tmp_path / "converted")
    summary = convert.convert_checkpoint(path, config, out, steps_per_epoch=1)
    assert summary["fresh_variables"] == [] and summary["step"] == 0
    imported = restored_state(config, out)
    np.testing.assert_allclose(
        imported.params["probes"]["class_probe"]["Dense_0"]["kernel"],
        net.online_linprobe[0].weight.detach().numpy().T,
        rtol=1e-6,
    )
    projector = imported.params["model"]["projector_equi"]["linear0"]["Dense_0"]["kernel"]
    np.testing.assert_allclose(projector, net.projector_equi[0].weight.detach().numpy().T)
    results = train.train_and_evaluate(config, out)
    assert results["steps_trained_this_run"] == 1


def restored_state(config, workdir: str):
    """The newest checkpoint of `workdir` restored into the state structure of `config`."""
    mesh = train.make_mesh()
    model, probes = train.build_model(config)
    optimizer = train.build_optimizer(config.train.optimizer, lambda count: 1e-3)
    template = train.create_state(config, model, probes, optimizer, mesh)
    ckpt = checkpointing.Checkpointer(
        checkpointing.checkpoint_dir(workdir), save_every_steps=1, async_save=False
    )
    try:
        return ckpt.restore(checkpointing.abstract_like(template))
    finally:
        ckpt.close()
