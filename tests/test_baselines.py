"""The baselines of spec §8 without torch: losses against numpy, parameter counts of the official
constructions (counted by hand from the spec), the official switches, and the config checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import load_config, tiny_batch

from seqjepa_jax import methods
from seqjepa_jax.config_checks import validate_config
from seqjepa_jax.config_defaults import base_config
from seqjepa_jax.models.baselines import losses
from seqjepa_jax.models.baselines.conv_ijepa import actions_to_target
from seqjepa_jax.models.baselines.sie import HypernetPredictor


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def numpy_nt_xent(a: np.ndarray, b: np.ndarray, temperature: float) -> float:
    """Row by row: -log(exp(s_i,partner / τ) / Σ_{j≠i} exp(s_ij / τ)) over the 2B rows."""
    f = np.concatenate([a, b]).astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    rows, total = len(f), 0.0
    for i in range(rows):
        partner = (i + rows // 2) % rows
        others = [j for j in range(rows) if j != i]
        logits = f[i] @ f[others].T / temperature
        total += -(f[i] @ f[partner] / temperature) + np.log(np.exp(logits).sum())
    return total / rows


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_nt_xent_matches_the_row_by_row_formula(temperature):
    a, b = rng(1).normal(size=(6, 5)), rng(2).normal(size=(6, 5))
    ours = losses.nt_xent(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), temperature)
    np.testing.assert_allclose(float(ours), numpy_nt_xent(a, b, temperature), rtol=1e-5)
    # Swapping the partners of one pair changes it (the partner is the positive, not any row).
    b_swapped = b[[1, 0, 2, 3, 4, 5]]
    assert abs(float(losses.nt_xent(a, b_swapped, temperature)) - float(ours)) > 1e-3


def test_vicreg_terms_match_numpy_unbiased_estimators():
    y = rng(3).normal(size=(7, 4)) * np.array([0.3, 1.0, 2.0, 0.1]) + 1.0
    std = np.sqrt(y.var(axis=0, ddof=1) + 1e-4)
    np.testing.assert_allclose(
        float(losses.variance_term(y)), np.mean(np.maximum(0, 1 - std)), rtol=1e-5
    )
    cov = np.cov(y, rowvar=False)  # (N - 1) normalisation
    off = (cov**2).sum() - (np.diag(cov) ** 2).sum()
    np.testing.assert_allclose(float(losses.covariance_term(y)), off / 4, rtol=1e-5)
    np.testing.assert_allclose(float(losses.covariance_term(y, 10)), off / 10, rtol=1e-5)


def test_trajectory_term_official_switch_matters_only_for_non_unit_centres():
    y_l, y_c, y_r = rng(4).normal(size=(3, 5, 6))

    def numpy_term(n):
        u = [v - np.sum(v * n, 1, keepdims=True) * n for v in (y_c - y_l, y_r - y_c)]
        cos = np.sum(u[0] * u[1], 1) / np.linalg.norm(u[0], axis=1) / np.linalg.norm(u[1], axis=1)
        return -cos.mean()

    unit = y_c / np.linalg.norm(y_c, axis=1, keepdims=True)
    fixed = float(losses.trajectory_term(y_l, y_c, y_r, official_unit_norm=False))
    official = float(losses.trajectory_term(y_l, y_c, y_r, official_unit_norm=True))
    np.testing.assert_allclose(fixed, numpy_term(unit), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(official, numpy_term(y_c), rtol=1e-5, atol=1e-6)
    assert abs(fixed - official) > 1e-3
    # With a unit-norm centre the two projections coincide.
    same = [float(losses.trajectory_term(y_l, unit, y_r, official_unit_norm=o)) for o in (0, 1)]
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)


def test_hypernetwork_predictor_equals_one_explicit_matrix_per_sample():
    x, action = rng(5).normal(size=(3, 5)), rng(6).normal(size=(3, 4))
    module = HypernetPredictor(5)
    params = module.init(jax.random.PRNGKey(0), x, action)
    ours = module.apply(params, x, action)
    kernel = np.asarray(params["params"]["kernel"])  # (d_a, E·E), torch Linear weight transposed
    for b in range(3):
        matrix = (action[b] @ kernel).reshape(5, 5)  # (out, in), as `.view(-1, out, in)`
        np.testing.assert_allclose(np.asarray(ours[b]), matrix @ x[b], rtol=1e-5, atol=1e-6)
    bound = 1 / np.sqrt(4)  # torch.nn.Linear(d_a, E·E) init: U(±1/√d_a)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound


def test_actions_to_target_are_the_displacements_to_the_target():
    positions = rng(7).normal(size=(2, 5, 2))
    actions = np.diff(positions, axis=1)  # (B, 4, 2): glimpse j -> j + 1
    expected = positions[:, -1:] - positions[:, :-1]
    np.testing.assert_allclose(np.asarray(actions_to_target(actions)), expected, atol=1e-6)


RESNET18_IMAGENET = 11_176_512  # spec §1.1
RESNET18_CIFAR = 11_168_832
# Online parameters of the official constructions beyond the encoder (spec §8, D = 512, P = 128,
# d_a = 4 for 3DIEBench rotations, 2 for saccades); a BN with affine=False has none.
OFFICIAL_HEADS = {
    # 512·2048 + 2·2048 + 2048·2048 + 2·2048 + 2048·2048
    "simclr": 9_445_376,
    # projector 512·2048 + 2·2048 + 2048·128; predictor 128·2048 + 2·2048 + 2048·128 + 128
    "byol": 1_314_816 + 528_512,
    # 512·2048 + 2048 + 2·2048 + 2048·2048 + 2048 + 2·2048 + 2048·2048
    "vicreg": 9_449_472,
    "vicreg_traj": 9_449_472,
    # 2 × (512·1024 + 2·1024 + 1024·1024 + 2·1024 + 1024·128); action 4·128; predictor 256·128
    "equimod": 2 * 1_708_032 + 512 + 32_768,
    # projector as BYOL; action 4·128; predictor 256·2048 + 2·2048 + 2048·128 + 128
    "byol_cond": 1_314_816 + 512 + 790_656,
    # projector as SimCLR; action 4·128; predictor (2048 + 128)·2048
    "sen": 9_445_376 + 512 + 4_456_448,
    # 2 × (256·1024 + 1024 + 2·1024 + 1024·1024 + 1024 + 2·1024 + 1024·1024); hypernet 4·1024²
    "sie": 2 * 2_365_440 + 4_194_304,
    # projector as BYOL; action 2·128; predictor 256·1024 + 2·1024 + 1024·128 + 128
    "conv_ijepa": 1_314_816 + 256 + 395_392,
}
# EMA targets: encoder + projector.
OFFICIAL_TARGETS = {
    "byol": RESNET18_IMAGENET + 1_314_816,
    "byol_cond": RESNET18_IMAGENET + 1_314_816,
    "conv_ijepa": RESNET18_CIFAR + 1_314_816,
}


def count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("method", sorted(OFFICIAL_HEADS))
def test_parameter_counts_equal_the_official_constructions(method):
    if method == "conv_ijepa":
        config, encoder, action_dim, size = load_config("stl10"), RESNET18_CIFAR, 2, 32
    else:
        config, encoder, action_dim, size = base_config(), RESNET18_IMAGENET, 4, 64
    config.method = method
    model = methods.build_method_model(config, action_dim)
    views = methods.training_views(config)
    variables = jax.eval_shape(
        lambda: model.init(
            jax.random.PRNGKey(0),
            jnp.zeros((2, views, size, size, 3)),
            jnp.zeros((2, views - 1, action_dim)),
            None,
            train=False,
            method=model.step_outputs,
        )
    )
    params = variables["params"]
    assert count(params) == encoder + OFFICIAL_HEADS[method]
    assert count(params["encoder"]) == encoder
    if method in OFFICIAL_TARGETS:
        assert count(model.target_params_of(params)) == OFFICIAL_TARGETS[method]
    else:
        assert model.target_network() is None


def _grads(config, targets=None, seed: int = 0):
    """(SSL loss, its gradient) of the tiny model of `config` on a fixed batch (4-d actions;
    Conv-IJEPA reads them as 2 positions' worth of displacements, which it does not check)."""
    model = methods.build_method_model(config, 4)
    batch = tiny_batch(batch=8, num_views=methods.training_views(config), seed=seed)
    args = (batch["views"], batch["actions"], targets)
    variables = model.init(jax.random.PRNGKey(0), *args, train=False, method=model.step_outputs)

    def loss(params):
        out, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            *args,
            train=True,
            mutable=["batch_stats"],
            method=model.step_outputs,
        )
        return out["loss"]

    return jax.jit(jax.value_and_grad(loss))(variables["params"])


def tiny_method_config(method: str, **options):
    config = load_config("default", "tiny")
    config.data.image_size = 16
    config.method = method
    for key, value in options.items():
        config.methods[method][key] = value
    return config


def test_official_gather_removes_exactly_the_global_batch_gradients():
    """Q6: with the official multi-GPU gather, NT-Xent gives no gradient at all and VICReg keeps
    only its invariance term's gradient."""
    simclr = tiny_method_config("simclr")
    simclr.methods.official_nondifferentiable_gather = True
    loss, grads = _grads(simclr)
    assert float(loss) > 0 and all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads))

    official = tiny_method_config("vicreg")
    official.methods.official_nondifferentiable_gather = True
    invariance_only = tiny_method_config("vicreg", var_coeff=0.0, cov_coeff=0.0)
    full_loss, official_grads = _grads(official)
    _, expected = _grads(invariance_only)
    _, differentiable = _grads(tiny_method_config("vicreg"))
    assert float(full_loss) > float(_grads(invariance_only)[0])  # the terms still count
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), official_grads, expected)
    assert max_gap(official_grads, differentiable) > 1e-4


def test_conv_ijepa_official_undetached_target_changes_only_the_gradient():
    """Q17: without EMA the official target branch is not detached: same loss, and gradients
    reach the encoder through the target glimpse too."""
    config = tiny_method_config("conv_ijepa")
    loss, grads = _grads(config)
    official_loss, official_grads = _grads(
        tiny_method_config("conv_ijepa", official_undetached_target=True)
    )
    np.testing.assert_allclose(float(loss), float(official_loss), rtol=1e-6)
    assert max_gap(grads["encoder"], official_grads["encoder"]) > 1e-5


def max_gap(a, b) -> float:
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize(
    "recipe,method,views",
    [
        ("default", "seqjepa", 4),
        ("default", "simclr", 2),
        ("default", "vicreg_traj", 3),
        ("cifar100", "sie", 2),
        ("stl10", "conv_ijepa", 5),
    ],
)
def test_training_views_per_method(recipe, method, views):
    config = load_config(recipe)
    config.method = method
    validate_config(config, device_count=1)
    assert methods.training_views(config) == views
    assert methods.aggregate_m_values(config) == (
        tuple(config.eval.m_val) if method == "seqjepa" else ()
    )


@pytest.mark.parametrize(
    "recipe,method,message",
    [
        ("3diebench", "conv_ijepa", "does not train on config.data.name='3diebench'"),
        ("stl10", "simclr", "Methods for 'stl10': ['conv_ijepa', 'seqjepa']"),
        ("default", "barlow", "config.method='barlow' is unknown"),
    ],
)
def test_a_method_that_does_not_fit_the_recipe_is_refused(recipe, method, message):
    config = load_config(recipe)
    config.method = method
    with pytest.raises(ValueError, match="Invalid configuration") as error:
        validate_config(config, device_count=1)
    assert message in str(error.value)


def test_bad_method_options_are_named():
    config = load_config("default")
    config.method = "simclr"
    config.methods.simclr.temperature = 0.0
    config.methods.simclr.projector_dims = ()
    with pytest.raises(ValueError) as error:
        validate_config(config, device_count=1)
    assert "config.methods.simclr.temperature=0.0 must be > 0" in str(error.value)
    assert "config.methods.simclr.projector_dims=() must list positive" in str(error.value)


def test_supervised_reference_loss_is_masked_cross_entropy_plus_action_mse():
    config = tiny_method_config("supervised", class_weight=0.5, action_weight=2.0)
    model = methods.build_method_model(config, 4)
    batch = tiny_batch(batch=8, num_views=2, seed=3)
    labels = np.array([0, 1, 2, -1, 3, -1, 4, 0], np.int32)  # -1: unlabelled rows
    args = (batch["views"], batch["actions"], None)
    variables = model.init(jax.random.PRNGKey(0), *args, train=False, method=model.step_outputs)
    out = model.apply(variables, *args, train=False, labels=labels, method=model.step_outputs)
    z1, z2 = (
        model.apply(variables, batch["views"][:, i], train=False, method=model.encode)
        for i in (0, 1)
    )
    logits, predicted = (
        np.asarray(a, np.float64) for a in model.apply(variables, z1, z2, method=model.heads)
    )
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    rows = labels >= 0
    ce = -log_softmax[rows, labels[rows]].mean()
    mse = np.mean((predicted - batch["actions"][:, 0]) ** 2)
    np.testing.assert_allclose(float(out["loss"]), 0.5 * ce + 2.0 * mse, rtol=1e-5)
    assert model.target_network() is None and not model.has_aggregate
