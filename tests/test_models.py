"""Model structure: official parameter counts, shapes and the action-token rules (spec §1-§2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_model

from seqjepa_jax.models.heads import OnlineProbes
from seqjepa_jax.models.resnet import ResNet, max_pool_3x3_stride2
from seqjepa_jax.models.seqjepa import SeqJEPA


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_params(model, size, num_obs=3):
    views = jnp.zeros((2, num_obs, size, size, 3))
    actions = jnp.zeros((2, num_obs, model.action_dim))
    return jax.eval_shape(
        lambda: model.init(
            {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
            views,
            actions,
            train=False,
        )
    )["params"]


@pytest.mark.parametrize(
    "stem,size,encoder_count", [("imagenet", 64, 11_176_512), ("cifar", 32, 11_168_832)]
)
def test_official_parameter_counts(stem, size, encoder_count):
    params = abstract_params(SeqJEPA(action_dim=4, stem=stem), size)
    assert count(params["encoder"]) == encoder_count
    assert count(params["aggregator"]) == 14_771_840  # incl. the final LayerNorm
    assert count(params["predictor"]) == 1_313_280
    assert count(params["action_proj"]) == 512
    assert count(params["agg_token"]) == 640


def test_online_probe_parameter_counts():
    probes = OnlineProbes(num_classes=55, action_dim=4)
    params = jax.eval_shape(
        lambda: probes.init(jax.random.PRNGKey(0), jnp.zeros((1, 640)), jnp.zeros((1, 1024)))
    )["params"]
    linear = {k: v for k, v in params.items() if k == "class_probe"}
    assert count(linear) == 35_255
    assert count(params) - count(linear) == 2_103_300


def test_raw_action_token_widths_follow_the_official_padding():
    # Spec §2.1: rot d_a=4 -> 516 (no pad), pred_in 520; rotcolor d_a=6 -> 518 + pad 2 = 520.
    rot = SeqJEPA(action_dim=4, learn_act_emb=False)
    rotcolor = SeqJEPA(action_dim=6, learn_act_emb=False)
    assert rot.token_width(4) == 516
    assert rotcolor.token_width(6) == 520
    assert SeqJEPA(action_dim=4, act_cond=False).token_width(4) == 512


def test_max_pool_matches_lax_reduce_window():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 10, 3))
    expected = jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    )
    np.testing.assert_array_equal(max_pool_3x3_stride2(x), expected)


def test_resnet_output_width_and_batch_independence_in_eval():
    net = ResNet(stem="cifar", width=4, stage_sizes=(1, 1))
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 8, 3))
    variables = net.init(jax.random.PRNGKey(1), x, train=False)
    full = net.apply(variables, x, train=False)
    single = net.apply(variables, x[:1], train=False)
    assert full.shape == (3, 8)
    np.testing.assert_allclose(full[:1], single, atol=1e-6)


def _apply(model, variables, views, actions, train=False):
    return model.apply(
        variables,
        views,
        actions,
        train=train,
        rngs={"dropout": jax.random.PRNGKey(0)},
        mutable=["batch_stats"] if train else False,
    )


def _init(model, num_obs=3):
    views = jax.random.normal(jax.random.PRNGKey(0), (4, num_obs, 16, 16, 3))
    actions = jax.random.normal(jax.random.PRNGKey(1), (4, num_obs, model.action_dim))
    variables = model.init(
        {"params": jax.random.PRNGKey(2), "dropout": jax.random.PRNGKey(3)},
        views,
        actions,
        train=False,
    )
    # Non-zero [AGG] token so that it matters for the tests below.
    return variables, views, actions


def test_last_observation_action_only_reaches_the_predictor():
    """Spec §2.2 step 3: the last token's action slot is zeroed; its action conditions the
    predictor. Changing it must leave agg_out unchanged (eval mode) and change the prediction."""
    model = tiny_model()
    variables, views, actions = _init(model)
    out = _apply(model, variables, views, actions)
    changed = actions.at[:, -1].add(3.0)
    out2 = _apply(model, variables, views, changed)
    np.testing.assert_allclose(out["agg_out"], out2["agg_out"], atol=1e-6)
    assert np.abs(np.asarray(out["prediction"] - out2["prediction"])).max() > 1e-3
    # An earlier action changes the aggregate.
    out3 = _apply(model, variables, views, actions.at[:, 0].add(3.0))
    assert np.abs(np.asarray(out["agg_out"] - out3["agg_out"])).max() > 1e-3


def test_aggregate_is_permutation_invariant_without_positional_embedding():
    """No positional embedding (spec §1.4): permuting (view, action) tokens leaves agg_out as is,
    provided the zero-action last token stays last."""
    model = tiny_model()
    variables, views, actions = _init(model, num_obs=4)
    out = _apply(model, variables, views, actions)
    perm = np.array([1, 0, 2, 3])
    out_perm = _apply(model, variables, views[:, perm], actions[:, perm])
    np.testing.assert_allclose(out["agg_out"], out_perm["agg_out"], atol=1e-5)


def test_without_action_conditioning_actions_are_ignored():
    model = tiny_model(act_cond=False)
    variables, views, actions = _init(model)
    out = _apply(model, variables, views, actions)
    out2 = _apply(model, variables, views, actions + 5.0)
    np.testing.assert_allclose(out["prediction"], out2["prediction"], atol=1e-6)
    assert "action_proj" not in variables["params"]


def test_raw_actions_condition_predictor_with_real_last_action():
    """learn_act_emb=False: the predictor sees the real last action (the official Q7 bug would
    zero it), so changing it changes the prediction."""
    model = tiny_model(learn_act_emb=False, action_dim=6)
    variables, views, actions = _init(model)
    out = _apply(model, variables, views, actions)
    out2 = _apply(model, variables, views, actions.at[:, -1].add(1.0))
    assert np.abs(np.asarray(out["prediction"] - out2["prediction"])).max() > 1e-4
    np.testing.assert_allclose(out["agg_out"], out2["agg_out"], atol=1e-6)


def test_action_projection_runs_twice_per_step_in_the_configured_order():
    """Q30: the action BN statistics move twice per forward; the order depends on the setting."""
    results = {}
    for first in (True, False):
        model = tiny_model(pred_action_first=first)
        variables, views, actions = _init(model)
        _, updates = _apply(model, variables, views, actions, train=True)
        results[first] = np.asarray(updates["batch_stats"]["action_proj"]["bn"]["mean"])
    # Same inputs, different call order -> different running means after two momentum updates.
    assert np.abs(results[True] - results[False]).max() > 1e-6


def test_zeroing_before_projection_changes_action_statistics_only():
    model_a = tiny_model()
    model_b = tiny_model(zero_last_action_before_projection=True)
    variables, views, actions = _init(model_a)
    out_a, up_a = _apply(model_a, variables, views, actions, train=True)
    out_b, up_b = _apply(model_b, variables, views, actions, train=True)
    stats_a = np.asarray(up_a["batch_stats"]["action_proj"]["bn"]["var"])
    stats_b = np.asarray(up_b["batch_stats"]["action_proj"]["bn"]["var"])
    assert np.abs(stats_a - stats_b).max() > 1e-6


def test_wrong_action_width_is_rejected():
    model = tiny_model()
    variables, views, actions = _init(model)
    with pytest.raises(ValueError, match="Expected actions of shape"):
        _apply(model, variables, views, actions[..., :3])
