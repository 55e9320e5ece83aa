"""Each baseline's loss and BatchNorm statistics against a PyTorch reference written from the spec.

For every method of spec §8 the reference (tests/torch_reference_baselines.py, float64, official
attribute names) is randomised in every tensor, its state dict is imported with the checkpoint
importer (`convert.import_official_weights`, so this also tests the official-key mapping of the
baselines and their EMA targets), and one train-mode forward of both on the same views and actions
must give the same loss to 1e-5, the same online action-probe pair, and the same BN running
statistics afterwards (online and target networks).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from tiny import IMAGE, load_config

from seqjepa_jax import convert, methods, optimizers
from seqjepa_jax.data import kinds
from seqjepa_jax.models.heads import OnlineProbes
from seqjepa_jax.state import init_train_state
from seqjepa_jax.train_step import run_target

torch = pytest.importorskip("torch")
import torch_reference_baselines as ref  # noqa: E402  (needs torch)
from torch_reference import randomise_everything_, state_dict_arrays  # noqa: E402

BATCH = 8
TOLERANCE = dict(atol=1e-5, rtol=1e-5)


def method_config(method: str, **options):
    config = (
        load_config("stl10", "smoke") if method == "conv_ijepa" else load_config("default", "tiny")
    )
    config.data.image_size = IMAGE
    config.method = method
    for key, value in options.items():
        config.methods[method][key] = value
    return config


def torch_model(method: str, config, action_dim: int):
    """The reference of `method` with the sizes of `config`."""
    m, options = config.model, config.methods[method]
    encoder = dict(stem=m.stem, width=m.width, stage_sizes=tuple(m.stage_sizes))
    dims = tuple(options.projector_dims)
    vicreg = dict(
        coeffs=(options.get("inv_coeff"), options.get("var_coeff"), options.get("cov_coeff"))
    )
    action = dict(action_dim=action_dim, act_proj_dim=m.act_proj_dim)
    builders = {
        "simclr": lambda: ref.TorchSimCLR(dims=dims, temperature=options.temperature, **encoder),
        "byol": lambda: ref.TorchBYOL(
            dims=dims, predictor_hidden=options.predictor_hidden, **encoder
        ),
        "vicreg": lambda: ref.TorchVICReg(dims=dims, **vicreg, **encoder),
        "vicreg_traj": lambda: ref.TorchVICRegTraj(
            dims=dims,
            alpha=options.alpha,
            unit_norm=options.official_unit_norm,
            official_pair=options.official_probe_pair,
            **vicreg,
            **encoder,
        ),
        "equimod": lambda: ref.TorchEquiMod(
            dims=dims,
            temperature=options.temperature,
            equi_factor=options.equi_factor,
            **action,
            **encoder,
        ),
        "byol_cond": lambda: ref.TorchBYOLConditional(
            dims=dims, predictor_hidden=options.predictor_hidden, **action, **encoder
        ),
        "sen": lambda: ref.TorchSEN(
            dims=dims, temperature=options.temperature, **action, **encoder
        ),
        "sie": lambda: ref.TorchSIE(
            dims=dims,
            action_dim=action_dim,
            equi_factor=options.equi_factor,
            **vicreg,
            **encoder,
        ),
        "conv_ijepa": lambda: ref.TorchConvIJEPA(
            dims=dims,
            pred_hidden=m.pred_hidden,
            official_pair=options.official_probe_pair,
            **action,
            **encoder,
        ),
    }
    return builders[method]().double()


def imported_state(config, model, action_dim: int, state_dict: dict):
    """A fresh TrainState of `model` with the reference's weights imported (EMA target on)."""
    views = methods.training_views(config)
    probes = OnlineProbes(config.data.num_classes, action_dim, 16)
    optimizer = optimizers.build_optimizer("adam", lambda count: 1e-3)
    state = jax.jit(
        lambda key: init_train_state(
            key,
            model,
            probes,
            optimizer,
            num_obs_views=views - 1,
            image_shape=(IMAGE, IMAGE, 3),
            use_ema=True,
        )
    )(jax.random.PRNGKey(0))
    state, _ = convert.import_official_weights(
        state_dict, state, act_cond=True, skip_probes=True, method=config.method
    )
    return state


def nchw(x: np.ndarray):
    return torch.from_numpy(np.asarray(x, np.float64)).movedim(-1, -3).contiguous()


def reference_forward(method: str, net, views: np.ndarray, actions: np.ndarray):
    if method == "vicreg_traj":
        return net(nchw(views[:, :3]), None)
    if method == "conv_ijepa":
        positions = np.concatenate([np.zeros_like(actions[:, :1]), np.cumsum(actions, 1)], 1)
        return net(nchw(views[:, :-1]), nchw(views[:, -1]), torch.from_numpy(positions).double())
    return net(nchw(views[:, 0]), nchw(views[:, 1]), torch.from_numpy(actions[:, 0]).double())


CASES = [
    ("simclr", {}),
    ("byol", {}),
    ("vicreg", {}),
    ("vicreg_traj", {}),
    ("vicreg_traj", {"official_unit_norm": True, "official_probe_pair": True}),
    ("equimod", {"equi_factor": 0.7}),
    ("byol_cond", {}),
    ("sen", {}),
    ("sie", {"equi_factor": 0.5}),
    ("conv_ijepa", {}),
    ("conv_ijepa", {"official_probe_pair": True}),
]


@pytest.mark.parametrize("method,options", CASES, ids=[f"{m}-{'-'.join(o)}" for m, o in CASES])
def test_loss_pair_and_statistics_match_the_torch_reference(method, options):
    config = method_config(method, **options)
    action_dim = kinds.action_dim(config.data)
    model = methods.build_method_model(config, action_dim)
    net = torch_model(method, config, action_dim)
    randomise_everything_(net, seed=3)
    state = imported_state(config, model, action_dim, state_dict_arrays(net))

    rng = np.random.default_rng(0)
    views_per_sequence = methods.training_views(config)
    views = rng.normal(size=(BATCH, views_per_sequence, IMAGE, IMAGE, 3)).astype(np.float32)
    actions = rng.normal(size=(BATCH, views_per_sequence - 1, action_dim)).astype(np.float32)

    net.train()
    loss, z1, z2 = reference_forward(method, net, views, actions)
    targets, target_stats = None, None
    if state.target_params is not None:
        targets, target_stats = run_target(
            model, state.target_params, state.target_batch_stats, views
        )
    out, updates = model.apply(
        {"params": state.params["model"], "batch_stats": state.batch_stats},
        views,
        actions,
        targets,
        train=True,
        mutable=["batch_stats"],
        method=model.step_outputs,
    )
    np.testing.assert_allclose(float(out["loss"]), loss.item(), **TOLERANCE)
    pair = torch.cat([z1, z2], dim=1).detach().numpy()
    np.testing.assert_allclose(np.asarray(out["probe_pair"]), pair, **TOLERANCE)

    after = imported_state(config, model, action_dim, state_dict_arrays(net))
    jax.tree.map(
        lambda ours, theirs: np.testing.assert_allclose(ours, theirs, **TOLERANCE),
        (updates["batch_stats"], target_stats),
        (after.batch_stats, after.target_batch_stats if target_stats is not None else None),
    )
