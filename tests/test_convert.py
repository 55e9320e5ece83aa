"""Importing official PyTorch checkpoints (seqjepa_jax/convert.py; spec §9, §10, Q28-Q30, Q34).

The "official" checkpoints come from tests/torch_reference.py: torch modules with the attribute
names of SeqJEPA_Transforms / SeqJEPA_PLS and the online probes of the two training scripts, every
tensor random (weights, [AGG] token, BN statistics), saved with torch.save in the official format
({'model': state_dict, 'optimizer': ..., 'epoch': E, ...}). After conversion our model must
reproduce the reference (run in float64) in float32 to 1e-4: agg_out, prediction, target embedding,
loss and probe outputs, in train mode with dropout off and in eval mode, and the BN running
statistics after the train-mode forward (online, target, the twice-updated action BN).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny import load_config

from seqjepa_jax import checkpointing, convert, train
from seqjepa_jax.data import latents
from seqjepa_jax.models.seqjepa import encoder_of, prediction_loss
from seqjepa_jax.optimizers import build_optimizer
from seqjepa_jax.sharding import make_mesh, replicated
from seqjepa_jax.train_step import jit_train_step, make_train_step

torch = pytest.importorskip("torch")
from torch_reference import (  # noqa: E402  (needs torch)
    TorchSeqJEPA,
    disable_dropout_,
    randomise_everything_,
    state_dict_arrays,
)

TOL = 1e-4
EPOCH = 7
STEPS_PER_EPOCH = 3
BATCH = 6
ROOT = os.path.join(os.path.dirname(__file__), "..")


def transforms_config():
    """SeqJEPA_Transforms on 3DIEBench rotations: torchvision's ResNet-18 topology (ImageNet stem,
    2 blocks per stage) at width 4 and 32 px, M_tr = 3, d_a = 4."""
    config = load_config("default", "tiny")
    config.model.stem = "imagenet"
    config.model.stage_sizes = (2, 2, 2, 2)
    config.data.image_size = 32
    return config


def saccades_config():
    """SeqJEPA_PLS-like: CIFAR stem, d_a = 2, observation actions projected first and zeroed
    before projection (Q29, Q30), AdamW."""
    config = load_config("default", "tiny")
    config.data.latent_type = "color"  # any latent type of width 2, the fixation-difference width
    config.model.pred_action_first = False
    config.model.zero_last_action_before_projection = True
    config.train.optimizer = "adamw"
    config.train.weight_decay = 1e-3
    return config


def reference_for(config, saccades: bool, seed: int = 0) -> TorchSeqJEPA:
    m = config.model
    torch.manual_seed(seed)
    ref = TorchSeqJEPA(
        stem=m.stem,
        width=m.width,
        stage_sizes=tuple(m.stage_sizes),
        action_dim=latents.action_dim(config.data.latent_type),
        act_proj_dim=m.act_proj_dim,
        num_heads=m.num_heads,
        num_layers=m.num_layers,
        pred_hidden=m.pred_hidden,
        num_classes=config.data.num_classes,
        probe_hidden=m.probe_hidden,
        saccades=saccades,
    )
    randomise_everything_(ref, seed)
    return ref


def save_official(ref, path: str) -> str:
    """torch.save in the format of the official training scripts (spec §9)."""
    optimizer = torch.optim.Adam(ref.parameters(), lr=1e-3)
    payload = {
        "model": ref.state_dict(),
        "optimizer": optimizer.state_dict(),
        "min_loss": 0.5,
        "epoch": EPOCH,
        "run_id": "seqjepa-3diebench",
    }
    torch.save(payload, path)
    return path


def fresh_state(config):
    model, probes = train.build_model(config)
    optimizer = build_optimizer(
        config.train.optimizer, optax.constant_schedule(0.0), config.train.weight_decay
    )
    return train.create_state(config, model, probes, optimizer, make_mesh())


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """name -> (config, float32 reference, checkpoint path, fresh state)."""
    folder = tmp_path_factory.mktemp("official")
    out = {}
    for name, config_fn, saccades in (
        ("transforms", transforms_config, False),
        ("saccades", saccades_config, True),
    ):
        config = config_fn()
        ref = reference_for(config, saccades)
        path = save_official(ref, str(folder / f"{name}.pth"))
        out[name] = (config, ref, path, fresh_state(config))
    return out


def imported(case, **kwargs):
    config, _, path, fresh = case
    state_dict, _ = convert.load_official_checkpoint(path)
    return convert.import_official_weights(
        state_dict, fresh, act_cond=config.model.act_cond, **kwargs
    )


def make_batch(config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    size, d_a = config.data.image_size, latents.action_dim(config.data.latent_type)
    views = rng.normal(size=(BATCH, config.train.seq_len + 1, size, size, 3)).astype(np.float32)
    actions = rng.normal(size=(BATCH, config.train.seq_len, d_a)).astype(np.float32)
    labels = rng.integers(0, config.data.num_classes, size=BATCH).astype(np.int32)
    return {"views": views, "actions": actions, "label": labels}


def torch_outputs(ref, batch, train_mode: bool) -> dict[str, np.ndarray]:
    views = torch.from_numpy(batch["views"].transpose(0, 1, 4, 2, 3).astype(np.float64))
    actions = torch.from_numpy(batch["actions"].astype(np.float64))
    ref.train(train_mode)
    with torch.no_grad():
        out = ref(views[:, :-1], views[:, -1], actions)
    return {k: v.numpy() for k, v in out.items()}


def our_outputs(config, state, batch, train_mode: bool):
    """(outputs like `torch_outputs`, online BN stats after, target BN stats after)."""
    model, probes = train.build_model(config)
    target_encoder = encoder_of(model)

    def forward(state, batch):
        obs, target_views = batch["views"][:, :-1], batch["views"][:, -1]
        target_vars = {"params": state.target_params, "batch_stats": state.target_batch_stats}
        model_vars = {"params": state.params["model"], "batch_stats": state.batch_stats}
        target_stats, stats = state.target_batch_stats, state.batch_stats
        if train_mode:
            z_target, updates = target_encoder.apply(
                target_vars, target_views, train=True, mutable=["batch_stats"]
            )
            target_stats = updates["batch_stats"]
            out, updates = model.apply(
                model_vars,
                obs,
                batch["actions"],
                train=True,
                rngs={"dropout": jax.random.PRNGKey(0)},
                mutable=["batch_stats"],
            )
            stats = updates["batch_stats"]
        else:
            z_target = target_encoder.apply(target_vars, target_views, train=False)
            out = model.apply(model_vars, obs, batch["actions"], train=False)
        pair = jnp.concatenate([out["z_obs"][:, 0], out["z_obs"][:, 1]], axis=-1)
        logits, action = probes.apply({"params": state.params["probes"]}, out["agg_out"], pair)
        outputs = {
            "agg_out": out["agg_out"],
            "prediction": out["prediction"],
            "z_target": z_target,
            "loss": prediction_loss(out["prediction"], z_target),
            "probe_logits": logits,
            "probe_action": action,
        }
        return outputs, stats, target_stats

    return jax.jit(forward)(state, batch)


def assert_outputs_match(ours: dict, reference: dict, skip: tuple[str, ...] = ()) -> None:
    for name, expected in reference.items():
        if name in skip:
            continue
        np.testing.assert_allclose(
            np.asarray(ours[name], np.float64), expected, atol=TOL, rtol=TOL, err_msg=name
        )


# ------------------------------------------------------------------------------------------------
# Mapping.


def test_every_official_key_is_mapped(cases):
    config, ref, _, fresh = cases["transforms"]
    state, notes = imported(cases["transforms"])
    state_dict = state_dict_arrays(ref)
    counters = [k for k in state_dict if k.endswith("num_batches_tracked")]
    assert notes["probe_flavour"] == "transforms"
    assert notes["imported_keys"] == len(state_dict) - len(counters)
    assert list(notes["dropped_keys"].values()) == [counters]
    assert notes["fresh_variables"] == []
    # Hand-checked layouts: conv OIHW -> HWIO, the fused in-projection's k block, the target's own
    # BN buffers (running_var copied unchanged: both store the unbiased estimate), a probe layer.
    params = state.params["model"]
    np.testing.assert_array_equal(
        params["encoder"]["conv1"]["kernel"][:, :, 1, 2], state_dict["encoder.conv1.weight"][2, 1]
    )
    width = params["agg_token"].shape[-1]
    in_proj = "transformer_encoder.transformer_encoder.layers.1.self_attn.in_proj_weight"
    kernel = params["aggregator"]["layer_1"]["self_attn"]["in_proj"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(
        kernel[:, width : 2 * width], state_dict[in_proj][width : 2 * width].T
    )
    np.testing.assert_array_equal(
        state.target_batch_stats["layer4_1"]["bn2"]["var"],
        state_dict["target_encoder.layer4.1.bn2.running_var"],
    )
    np.testing.assert_array_equal(
        state.params["probes"]["action_probe_1"]["Dense_0"]["kernel"],
        state_dict["online_equiprobe.2.weight"].T,
    )
    # Online and target encoders are different tensors in the checkpoint and stay apart.
    assert not np.allclose(
        params["encoder"]["layer1_0"]["conv1"]["kernel"],
        state.target_params["layer1_0"]["conv1"]["kernel"],
    )
    # Nothing of the fresh init survives in the imported weights.
    for new, old in zip(jax.tree.leaves(state.params), jax.tree.leaves(fresh.params)):
        assert not np.array_equal(np.asarray(new), np.asarray(old))


@pytest.mark.parametrize("name", ["transforms", "saccades"])
def test_converted_model_matches_torch_in_train_and_eval_mode(cases, name):
    config, ref, _, _ = cases[name]
    state, _ = imported(cases[name])
    batch = make_batch(config)
    reference = copy.deepcopy(ref).double()
    disable_dropout_(reference)
    no_dropout = copy.deepcopy(config)
    no_dropout.model.dropout_rate = 0.0

    # The saccade probes' action head has no counterpart (linear vs MLP): it starts fresh.
    skip = ("probe_action",) if name == "saccades" else ()
    expected = torch_outputs(reference, batch, train_mode=True)
    ours, stats, target_stats = our_outputs(no_dropout, state, batch, train_mode=True)
    assert_outputs_match(ours, expected, skip)
    assert 0.2 < float(expected["loss"]) < 1.8  # random weights: the loss is far from 0
    # BN running statistics after the forward: online encoder, action BN (two updates, in the
    # official order, Q30), predictor, and the target encoder's own statistics (Q28).
    after, _ = convert.import_official_weights(state_dict_arrays(reference), state, act_cond=True)
    for ours_tree, torch_tree in (
        (stats, after.batch_stats),
        (target_stats, after.target_batch_stats),
    ):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, atol=TOL, rtol=TOL), ours_tree, torch_tree
        )
    assert not np.allclose(
        stats["action_proj"]["bn"]["var"], state.batch_stats["action_proj"]["bn"]["var"]
    )

    # Eval mode, from the statistics the train-mode forward left behind.
    expected = torch_outputs(reference, batch, train_mode=False)
    evaluated = state.replace(batch_stats=stats, target_batch_stats=target_stats)
    ours, _, _ = our_outputs(config, evaluated, batch, train_mode=False)
    assert_outputs_match(ours, expected, skip)


def test_saccade_probes_without_counterpart_are_reported(cases):
    _, ref, _, fresh = cases["saccades"]
    state, notes = imported(cases["saccades"])
    assert notes["probe_flavour"] == "pls"
    dropped = [k for keys in notes["dropped_keys"].values() for k in keys]
    assert {"online_res_probe.0.weight", "online_equiprobe.0.bias"} <= set(dropped)
    assert all(p.startswith("probes/action_probe") for p in notes["fresh_variables"])
    assert len(notes["fresh_variables"]) == 6  # 3 layers x (kernel, bias)
    np.testing.assert_array_equal(
        state.params["probes"]["action_probe_out"]["Dense_0"]["kernel"],
        fresh.params["probes"]["action_probe_out"]["Dense_0"]["kernel"],
    )
    np.testing.assert_array_equal(
        state.params["probes"]["class_probe"]["Dense_0"]["bias"],
        state_dict_arrays(ref)["online_agg_probe.0.bias"],
    )


def test_skip_probes_keeps_fresh_probes(cases):
    _, _, _, fresh = cases["transforms"]
    state, notes = imported(cases["transforms"], skip_probes=True)
    jax.tree.map(np.testing.assert_array_equal, state.params["probes"], fresh.params["probes"])
    assert len(notes["fresh_variables"]) == 8


def test_bare_state_dict_with_module_prefix_loads(cases, tmp_path):
    _, ref, path, _ = cases["transforms"]
    bare = {f"module.{k}": v for k, v in ref.state_dict().items()}
    torch.save(bare, tmp_path / "bare.pth")
    state_dict, metadata = convert.load_official_checkpoint(str(tmp_path / "bare.pth"))
    wrapped, wrapped_metadata = convert.load_official_checkpoint(path)
    assert metadata == {}
    assert wrapped_metadata == {"min_loss": 0.5, "epoch": EPOCH, "run_id": "seqjepa-3diebench"}
    assert state_dict.keys() == wrapped.keys()
    jax.tree.map(np.testing.assert_array_equal, state_dict, wrapped)
    assert convert.resolve_step(metadata, transforms_config()) == (
        0,
        "no 'epoch' in the checkpoint",
    )
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        convert.load_official_checkpoint(str(tmp_path / "tensor.pth"))


def test_step_from_flag_epoch_and_data(tmp_path):
    config = load_config("default", "tiny")
    config.data.data_dir = str(tmp_path)
    metadata = {"epoch": 5}  # official: the number of completed epochs
    assert convert.resolve_step(metadata, config, step=11) == (11, "--step")
    assert convert.resolve_step(metadata, config, steps_per_epoch=4)[0] == 20
    # Without the flag: the steps per epoch of the config's training split, as train.py counts
    # them (48 procedural objects // batch 8).
    assert convert.resolve_step(metadata, config)[0] == 5 * (48 // 8)
    with pytest.raises(ValueError, match="--step=-1 must be >= 0"):
        convert.resolve_step(metadata, config, step=-1)


# ------------------------------------------------------------------------------------------------
# Clear errors.


def import_error(case, state_dict) -> str:
    config, _, _, fresh = case
    with pytest.raises(ValueError) as error:
        convert.import_official_weights(state_dict, fresh, act_cond=config.model.act_cond)
    return str(error.value)


def test_missing_and_unknown_keys_are_listed_with_causes(cases):
    state_dict = state_dict_arrays(cases["transforms"][1])
    del state_dict["predictor.3.bias"]
    state_dict["rot_regressor.0.weight"] = np.zeros((1024, 64), np.float32)
    message = import_error(cases["transforms"], state_dict)
    assert "Missing keys (the config's model has them, the checkpoint does not): 1" in message
    assert "predictor.3.bias: expected shape (32,)" in message
    assert "Unknown keys (in the checkpoint, not in the config's model): 1" in message
    assert "rot_regressor.0.weight: shape (1024, 64)" in message
    assert "--config.model.pred_hidden" in message
    assert "does not belong to the official SeqJEPA_Transforms" in message


def test_shape_mismatches_name_expected_and_found_shapes(cases):
    state_dict = state_dict_arrays(cases["transforms"][1])
    state_dict["encoder.conv1.weight"] = np.zeros((4, 3, 3, 3), np.float32)  # CIFAR stem
    state_dict["action_proj.0.weight"] = np.zeros((8, 6), np.float32)  # rotcolor actions
    message = import_error(cases["transforms"], state_dict)
    assert "Shape mismatches (PyTorch layout; expected by the config, found): 2" in message
    assert "encoder.conv1.weight: expected (4, 3, 7, 7), found (4, 3, 3, 3)" in message
    assert "action_proj.0.weight: expected (8, 4), found (8, 6)" in message
    assert "--config.model.stem=cifar" in message
    assert "--config.data.latent_type" in message and "act_proj_dim" in message


def test_missing_target_encoder_suggests_use_ema_false(cases):
    state_dict = state_dict_arrays(cases["transforms"][1])
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("target_encoder.")}
    message = import_error(cases["transforms"], state_dict)
    assert "target_encoder.conv1.weight" in message
    assert "... and" in message  # long lists are cut
    assert "--config.train.use_ema=False" in message


def test_unused_action_projection_of_unconditioned_model_is_dropped(cases):
    """SeqJEPA_PLS builds `action_proj` even with act_cond=0; without conditioning it is dropped,
    not reported. Shapes only: the state is never built (`jax.eval_shape`)."""
    config = saccades_config()
    config.model.act_cond = False
    abstract = jax.eval_shape(lambda: fresh_state(config))
    state_dict = state_dict_arrays(cases["saccades"][1])
    with pytest.raises(ValueError) as error:
        convert.check_official_weights(state_dict, abstract, act_cond=False)
    listed = str(error.value).split("Likely causes:")[0]
    assert "agg_token: expected (1, 1, 32), found (1, 1, 40)" in listed  # token width D + P
    assert "action_proj" not in listed


def test_failed_conversion_writes_nothing(cases, tmp_path):
    _, _, path, _ = cases["transforms"]
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="encoder.conv1.weight: expected"):
        convert.convert_checkpoint(path, saccades_config(), str(out), steps_per_epoch=1)
    assert not out.exists()
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory"):
        convert.convert_checkpoint(path, transforms_config(), str(out), step=0)
    assert os.listdir(out) == ["keep"]


# ------------------------------------------------------------------------------------------------
# The written checkpoint.


def test_converted_checkpoint_restores_and_trains(cases, tmp_path):
    config, _, path, _ = cases["saccades"]
    out = str(tmp_path / "workdir")
    summary = convert.convert_checkpoint(path, config, out, steps_per_epoch=STEPS_PER_EPOCH)
    step = EPOCH * STEPS_PER_EPOCH
    assert summary["step"] == step
    assert json.load(open(os.path.join(out, "conversion.json")))["step"] == step

    mesh = make_mesh()
    model, probes = train.build_model(config)
    learning_rate, ema_decay = train.build_schedules(config, STEPS_PER_EPOCH)
    optimizer = build_optimizer(config.train.optimizer, learning_rate, config.train.weight_decay)
    # The structure train.py restores into (shapes only: no need to run the initialiser).
    template = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated(mesh)),
        jax.eval_shape(lambda: train.create_state(config, model, probes, optimizer, mesh)),
    )
    ckpt = checkpointing.Checkpointer(
        os.path.join(out, "checkpoints"), save_every_steps=1, async_save=False
    )
    assert ckpt.latest_step() == step
    restored = ckpt.restore(template)
    ckpt.close()
    expected, _ = imported(cases["saccades"])
    for tree in ("params", "batch_stats", "target_params", "target_batch_stats"):
        jax.tree.map(
            np.testing.assert_array_equal, getattr(restored, tree), getattr(expected, tree)
        )
    assert int(restored.step) == step

    # Fresh Adam moments, LR schedule at the imported step (official resume, Q34): a first update
    # with unit gradients is -lr(step) on an undecayed bias (bias-corrected m/sqrt(v) = 1), not the
    # warmup's lr(0).
    ones = jax.tree.map(jnp.ones_like, restored.params)
    updates, _ = optimizer.update(ones, restored.opt_state, restored.params)
    lr = float(learning_rate(step))
    assert lr > 10 * float(learning_rate(0))
    bias_update = updates["model"]["predictor"]["linear2"]["Dense_0"]["bias"]
    np.testing.assert_allclose(bias_update, -lr, rtol=1e-5)

    step_fn = jit_train_step(
        make_train_step(model, probes, optimizer, learning_rate, ema_decay), mesh
    )
    new_state, metrics = step_fn(restored, make_batch(config))
    assert int(new_state.step) == step + 1
    assert np.isfinite(float(metrics["loss"]))


def test_command_line(cases, tmp_path):
    """`python -m seqjepa_jax.convert` with config overrides, on the saccade checkpoint."""
    _, _, path, _ = cases["saccades"]
    out = tmp_path / "cli"
    command = [
        sys.executable,
        "-m",
        "seqjepa_jax.convert",
        f"--torch_checkpoint={path}",
        f"--config={os.path.join(ROOT, 'configs', 'default.py')}:tiny",
        "--config.data.latent_type=color",
        "--config.model.pred_action_first=False",
        "--config.model.zero_last_action_before_projection=True",
        "--config.train.optimizer=adamw",
        "--config.train.weight_decay=0.001",
        f"--out={out}",
        f"--steps_per_epoch={STEPS_PER_EPOCH}",
    ]
    # As tests/conftest.py does in-process: XLA optimisations off for tiny models.
    env = {
        **os.environ,
        "PYTHONPATH": os.path.abspath(ROOT),
        "JAX_PLATFORMS": "cpu",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "true",
    }
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.load(open(out / "conversion.json"))
    assert summary["step"] == EPOCH * STEPS_PER_EPOCH
    assert summary["probe_flavour"] == "pls"
    assert os.listdir(out / "checkpoints") == [str(EPOCH * STEPS_PER_EPOCH)]
