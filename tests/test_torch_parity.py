"""Layer-by-layer parity with PyTorch itself (spec §1.1-§1.7, §10.1, §10.3-§10.4, Q37, Q38).

Each test builds the PyTorch reference from `torch.nn` modules (float64, the ground truth),
copies its weights into the Flax parameters with `seqjepa_jax.official_keys` (the mapping of the
checkpoint importer, convert.py, so these tests also check it), and compares outputs and
BatchNorm running statistics; our Flax modules run in float32, so outputs must agree to 1e-5
(absolute and relative). The references (tests/torch_reference.py) are written by hand from the
official architecture with its module names (torchvision BasicBlock/ResNet stems,
`nn.TransformerEncoderLayer` post-norm plus the extra final LayerNorm of `TransformerEncoder_`, the
action projection and the predictor of `models.py`); torchvision is not needed. Section (c)
checks the initial distributions against PyTorch's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import IMAGE, tiny_model, tiny_probes

from seqjepa_jax import official_keys, optimizers, schedules
from seqjepa_jax.models.aggregator import Aggregator
from seqjepa_jax.models.heads import ActionProjection, Predictor
from seqjepa_jax.models.resnet import BasicBlock, ResNet
from seqjepa_jax.models.seqjepa import prediction_loss
from seqjepa_jax.state import init_train_state

torch = pytest.importorskip("torch")
tnn = torch.nn
from torch_reference import (  # noqa: E402  (needs torch)
    TorchAggregator,
    TorchBasicBlock,
    TorchResNet,
    disable_dropout_,
    randomise_,
    state_dict_arrays,
    torch_action_projection,
    torch_predictor,
)

ATOL = 1e-5
RTOL = 1e-5


# ------------------------------------------------------------------------------------------------
# PyTorch -> Flax weight conversion (seqjepa_jax.official_keys, used by seqjepa_jax.convert).


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def torch_to_flax(ref, kind: str, flax_module, *args, **kwargs) -> tuple[dict, dict]:
    """(params, batch_stats) of `flax_module` from the reference's state dict via
    `official_keys.module_variables`, which raises on any missing, unknown or mis-shaped key (so the
    converted tree has exactly the module's own structure).

    Shapes only (`jax.eval_shape`): drawing the random init would just cost compile time.
    """
    template = jax.eval_shape(lambda: flax_module.init(jax.random.PRNGKey(0), *args, **kwargs))
    variables = official_keys.module_variables(state_dict_arrays(ref), template, kind)
    return variables["params"], variables.get("batch_stats", {})


def to_nhwc(t) -> np.ndarray:
    return _np(t).transpose(0, 2, 3, 1)


def nchw(x: np.ndarray):
    return torch.from_numpy(np.asarray(x, np.float64).transpose(0, 3, 1, 2).copy())


def assert_close(ours, reference, atol: float = ATOL, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.asarray(ours, np.float64), reference, atol=atol, rtol=rtol)


def torch_stats(params: dict, flax_stats: dict, torch_module, kind: str) -> dict:
    """The torch module's current BN running statistics in the Flax layout."""
    template = {"params": params, "batch_stats": flax_stats}
    return official_keys.module_variables(state_dict_arrays(torch_module), template, kind)[
        "batch_stats"
    ]


def assert_stats_match(params: dict, flax_stats: dict, torch_module, kind: str, **kwargs) -> None:
    expected = torch_stats(params, flax_stats, torch_module, kind)
    jax.tree.map(lambda a, b: assert_close(a, b, **kwargs), flax_stats, expected)


# ------------------------------------------------------------------------------------------------
# (a) BasicBlock and the ResNet stems.


def _block_pair(inplanes: int, planes: int, stride: int, seed: int = 0):
    torch.manual_seed(seed)
    ref = TorchBasicBlock(inplanes, planes, stride).double()
    randomise_(ref, seed)
    x0 = jnp.zeros((2, 8, 8, inplanes))
    params, stats = torch_to_flax(ref, "resnet", BasicBlock(planes, stride, train=True), x0)
    return ref, params, stats


@pytest.mark.parametrize("inplanes,planes,stride", [(8, 8, 1), (4, 8, 2)])
def test_basic_block_matches_torch_in_train_and_eval_mode(inplanes, planes, stride):
    ref, params, stats = _block_pair(inplanes, planes, stride)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(3, 8, 8, inplanes)).astype(np.float32) + 0.5 for _ in range(2)]

    train_block = BasicBlock(planes, stride, train=True)
    apply_train = jax.jit(
        lambda p, s, x: train_block.apply(
            {"params": p, "batch_stats": s}, x, mutable=["batch_stats"]
        )
    )
    ref.train()
    for x in inputs:  # two train-mode forwards: outputs and running statistics after each
        expected = ref(nchw(x))
        out, updates = apply_train(params, stats, x)
        stats = updates["batch_stats"]
        assert_close(out, to_nhwc(expected).astype(np.float64))
        assert_stats_match(params, stats, ref, "resnet")
    # The running statistics really moved (so the comparison above can fail).
    assert not np.allclose(stats["bn1"]["var"], 1.0, atol=1e-2)

    ref.eval()
    eval_out = BasicBlock(planes, stride, train=False).apply(
        {"params": params, "batch_stats": stats}, inputs[0]
    )
    assert_close(eval_out, ref(nchw(inputs[0])).detach().numpy().transpose(0, 2, 3, 1))
    # Eval differs from train mode on the same input (running vs batch statistics).
    train_out, _ = apply_train(params, stats, inputs[0])
    assert np.abs(np.asarray(train_out) - np.asarray(eval_out)).max() > 1e-2


def test_biased_running_var_differs_by_exactly_n_over_n_minus_1():
    """unbiased_running_var=False (Flax's rule) moves running_var by (n-1)/n of PyTorch's step."""
    ref, params, stats0 = _block_pair(4, 8, 2)
    rng = np.random.default_rng(2)
    inputs = [rng.normal(size=(2, 8, 8, 4)).astype(np.float32) for _ in range(2)]
    n = 2 * 4 * 4  # images x output height x output width, per channel
    factor = n / (n - 1)
    assert factor - 1.0 > 100 * 1e-4  # the check below can tell the two rules apart

    block = BasicBlock(8, 2, train=True, unbiased_running_var=False)
    stats = stats0
    ref.train()
    torch_var_prev = {k: v["var"] for k, v in stats0.items()}
    for x in inputs:
        ref(nchw(x))
        reference_stats = torch_stats(params, stats0, ref, "resnet")
        prev = stats
        _, updates = block.apply({"params": params, "batch_stats": stats}, x, mutable=True)
        stats = updates["batch_stats"]
        for name in stats:
            torch_step = reference_stats[name]["var"] - 0.9 * torch_var_prev[name]
            our_step = np.asarray(stats[name]["var"]) - 0.9 * np.asarray(prev[name]["var"])
            np.testing.assert_allclose(torch_step / our_step, factor, rtol=1e-4)
            # The running mean does not depend on the variance rule.
            assert_close(stats[name]["mean"], reference_stats[name]["mean"])
            torch_var_prev[name] = reference_stats[name]["var"]


@pytest.mark.parametrize("stem,size", [("imagenet", 16), ("cifar", 8)])
def test_resnet_trunk_matches_torch(stem, size):
    """Stem (7x7/2 conv + 3x3/2 max-pool, or 3x3/1 conv), two stages and pooling (spec §1.1)."""
    torch.manual_seed(3)
    ref = TorchResNet(stem, 8, (1, 1)).double()
    randomise_(ref, 3)
    model = ResNet(stem, width=8, stage_sizes=(1, 1))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, size, size, 3)).astype(np.float32)
    params, stats = torch_to_flax(ref, "resnet", model, x)
    ref.train()
    expected = ref(nchw(x)).detach().numpy()
    out, updates = model.apply(
        {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
    )
    assert_close(out, expected)
    assert_stats_match(params, updates["batch_stats"], ref, "resnet")
    ref.eval()
    eval_out = model.apply(
        {"params": params, "batch_stats": updates["batch_stats"]}, x, train=False
    )
    assert_close(eval_out, ref(nchw(x)).detach().numpy())


# ------------------------------------------------------------------------------------------------
# (b) The transformer aggregator.


def _aggregator_pair(width: int = 32):
    torch.manual_seed(4)
    ref = TorchAggregator(width, num_heads=4, num_layers=3, dropout=0.1).double()
    # Re-draw each layer's weights so the layers differ (a layer mix-up must fail the test).
    layers = ref.transformer_encoder.layers
    for i, layer in enumerate(layers):
        with torch.no_grad():
            for p in layer.parameters():
                if p.ndim == 2:
                    p.normal_(0.0, 1.0 / np.sqrt(p.shape[1]))
        randomise_(layer, 10 + i)
    randomise_(ref.norm, 20)
    with torch.no_grad():
        # Small residual streams into layer 0's norm1 and into the final LayerNorm (variance
        # ~1e-4), so that LayerNorm's eps (1e-5) visibly changes the output.
        layers[0].self_attn.out_proj.weight.mul_(0.01)
        layers[0].self_attn.out_proj.bias.mul_(0.01)
        layers[-1].norm2.weight.mul_(0.01)
        layers[-1].norm2.bias.mul_(0.01)
    tokens = 0.01 * np.random.default_rng(4).normal(size=(3, 4, width)).astype(np.float32)
    params, _ = torch_to_flax(ref, "aggregator", Aggregator(3, 4, 4, 0.0), tokens, train=False)
    return ref, params, tokens


def test_aggregator_matches_torch_in_train_mode_without_dropout():
    ref, params, tokens = _aggregator_pair()
    disable_dropout_(ref)  # p=0 everywhere, attention dropout included
    ref.train()
    expected = ref(torch.from_numpy(tokens).double()).detach().numpy()
    out = Aggregator(3, 4, 4, dropout_rate=0.0).apply({"params": params}, tokens, train=True)
    assert_close(out, expected)
    # Not a trivial match: the output depends on the tokens' context.
    assert np.abs(expected[0] - expected[1]).max() > 0.1


def test_aggregator_matches_torch_in_eval_mode():
    ref, params, tokens = _aggregator_pair()
    ref.eval()
    # Grad enabled and parameters requiring grad keep PyTorch off its fused fast path.
    assert torch.is_grad_enabled()
    expected = ref(torch.from_numpy(tokens).double()).detach().numpy()
    model = Aggregator(3, 4, 4, dropout_rate=0.1)
    out = model.apply({"params": params}, tokens, train=False)
    assert_close(out, expected)
    # Train mode with dropout 0.1 does differ (dropout is live in training).
    dropped = model.apply(
        {"params": params}, tokens, train=True, rngs={"dropout": jax.random.PRNGKey(0)}
    )
    assert np.abs(np.asarray(dropped) - expected).max() > 1e-2


# ------------------------------------------------------------------------------------------------
# (c) Initial distributions.


def _uniform_checks(ours: np.ndarray, bound: float, reference: np.ndarray, rel: float) -> None:
    """U(±bound): inside the bound, reaching near it, std bound/√3 and torch's std within rel."""
    ours = np.asarray(ours).ravel()
    assert np.abs(ours).max() <= bound * (1 + 1e-6)
    assert np.abs(ours).max() >= 0.9 * bound
    assert abs(ours.mean()) < 4 * bound / np.sqrt(3 * ours.size)
    np.testing.assert_allclose(ours.std(), bound / np.sqrt(3), rtol=rel)
    np.testing.assert_allclose(ours.std(), np.asarray(reference).std(), rtol=2 * rel)


def test_aggregator_init_matches_torch_defaults():
    width = 64
    params = Aggregator(3, 4, 4).init(jax.random.PRNGKey(5), jnp.zeros((1, 2, width)), train=False)[
        "params"
    ]
    torch.manual_seed(5)
    ref_layer = tnn.TransformerEncoderLayer(width, 4, 4 * width, batch_first=True)
    for i in range(3):
        layer = params[f"layer_{i}"]
        attn = layer["self_attn"]
        # Fused QKV: xavier-uniform over the whole (3E, E) matrix, fan_in + fan_out = 4E.
        _uniform_checks(
            attn["in_proj"]["Dense_0"]["kernel"],
            np.sqrt(6.0 / (width + 3 * width)),
            _np(ref_layer.self_attn.in_proj_weight),
            rel=0.03,
        )
        assert not np.any(np.asarray(attn["in_proj"]["Dense_0"]["bias"]))
        assert not np.any(np.asarray(attn["out_proj"]["Dense_0"]["bias"]))
        assert not np.any(_np(ref_layer.self_attn.in_proj_bias))
        assert not np.any(_np(ref_layer.self_attn.out_proj.bias))
        # out_proj and the FFN linears: PyTorch default Linear init, W and b ~ U(±1/√fan_in).
        for name, ref_linear, fan_in in [
            ("out_proj", ref_layer.self_attn.out_proj, width),
            ("linear1", ref_layer.linear1, width),
            ("linear2", ref_layer.linear2, 4 * width),
        ]:
            dense = (attn if name == "out_proj" else layer)[name]["Dense_0"]
            bound = 1.0 / np.sqrt(fan_in)
            _uniform_checks(dense["kernel"], bound, _np(ref_linear.weight), rel=0.03)
            if name != "out_proj":
                _uniform_checks(dense["bias"], bound, _np(ref_linear.bias), rel=0.15)
        for norm in ("norm1", "norm2"):
            assert np.all(np.asarray(layer[norm]["scale"]) == 1.0)
            assert not np.any(np.asarray(layer[norm]["bias"]))


def test_resnet_init_matches_torchvision():
    width = 32
    model = ResNet("cifar", width=width, stage_sizes=(1, 1))
    params = model.init(jax.random.PRNGKey(6), jnp.zeros((1, 8, 8, 3)))["params"]
    checked = 0
    for block_name, block in params.items():
        if not block_name.startswith("layer"):
            continue
        # Every conv but the CIFAR stem: kaiming_normal(fan_out, relu), an untruncated normal.
        # Stage 2 has in != out channels, so a fan_in rule would be off by √2 there.
        for conv_name in ("conv1", "conv2", "downsample_conv"):
            if conv_name not in block:
                continue
            kernel = np.asarray(block[conv_name]["kernel"])
            kh, kw, cin, cout = kernel.shape
            ref = torch.empty(cout, cin, kh, kw)
            tnn.init.kaiming_normal_(ref, mode="fan_out", nonlinearity="relu")
            std = np.sqrt(2.0 / (kh * kw * cout))
            np.testing.assert_allclose(kernel.std(), std, rtol=0.05, err_msg=conv_name)
            np.testing.assert_allclose(kernel.std(), ref.std().item(), rtol=0.08)
            assert abs(kernel.mean()) < 4 * std / np.sqrt(kernel.size)
            # A 2σ-truncated normal (Flax's "truncated_normal") would stop at 2σ.
            assert np.abs(kernel).max() > 3.0 * std
            checked += 1
        # zero_init_residual: the last BN of every block starts with γ = 0, the others with 1.
        assert not np.any(np.asarray(block["bn2"]["scale"]))
        assert np.all(np.asarray(block["bn1"]["scale"]) == 1.0)
        if "downsample_bn" in block:
            assert np.all(np.asarray(block["downsample_bn"]["scale"]) == 1.0)
        for bn in ("bn1", "bn2", "downsample_bn"):
            if bn in block:
                assert not np.any(np.asarray(block[bn]["bias"]))
    assert checked == 5
    # The CIFAR stem keeps PyTorch's default Conv2d init, U(±1/√27) (spec Q38).
    torch.manual_seed(6)
    ref_stem = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
    _uniform_checks(params["conv1"]["kernel"], 1.0 / np.sqrt(27), _np(ref_stem.weight), rel=0.08)


def _aggregator_layers_after_init(identical: bool) -> dict:
    model = tiny_model(num_layers=3, stage_sizes=(1,), pred_hidden=8)
    opt = optimizers.build_optimizer(
        "adam",
        schedules.learning_rate_schedule(
            "constant",
            base_lr=1e-3,
            initial_lr=1e-3,
            warmup_epochs=0,
            total_epochs=1,
            steps_per_epoch=1,
        ),
    )
    state = init_train_state(
        jax.random.PRNGKey(7),
        model,
        tiny_probes(model),
        opt,
        num_obs_views=2,
        image_shape=(IMAGE, IMAGE, 3),
        use_ema=False,
        identical_layer_init=identical,
    )
    return state.params["model"]["aggregator"]


def test_aggregator_layers_start_identical_only_when_asked():
    tied = _aggregator_layers_after_init(True)
    untied = _aggregator_layers_after_init(False)
    leaves = lambda tree: jax.tree_util.tree_leaves_with_path(tree)  # noqa: E731
    for i in (1, 2):
        for (path, a), (_, b) in zip(leaves(tied["layer_0"]), leaves(tied[f"layer_{i}"])):
            np.testing.assert_array_equal(a, b, err_msg=str(path))
        # Without tying, every randomly initialised leaf differs between layers.
        for (path, a), (_, b) in zip(leaves(untied["layer_0"]), leaves(untied[f"layer_{i}"])):
            if np.any(np.asarray(a) != np.asarray(a).ravel()[0]):  # not a constant init
                assert not np.array_equal(a, b), str(path)
    # Tying copies layer 0 of the same draw.
    jax.tree.map(np.testing.assert_array_equal, tied["layer_0"], untied["layer_0"])


# ------------------------------------------------------------------------------------------------
# (d) Action projection and predictor.


def _check_head(ref, kind: str, flax_module, inputs: list[np.ndarray]) -> None:
    """Train-mode forwards in sequence (outputs and running stats after each), then eval mode."""
    params, stats = torch_to_flax(ref, kind, flax_module, inputs[0])
    ref.train()
    for x in inputs:
        expected = ref(torch.from_numpy(x).double()).detach().numpy()
        out, updates = flax_module.apply(
            {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )
        stats = updates["batch_stats"]
        assert_close(out, expected)
        assert_stats_match(params, stats, ref, kind)
    ref.eval()
    expected = ref(torch.from_numpy(inputs[0]).double()).detach().numpy()
    out = flax_module.apply({"params": params, "batch_stats": stats}, inputs[0], train=False)
    assert_close(out, expected)
    train_out = flax_module.apply(
        {"params": params, "batch_stats": stats}, inputs[0], train=True, mutable=["batch_stats"]
    )[0]
    assert np.abs(np.asarray(train_out) - expected).max() > 1e-2


def test_action_projection_matches_torch():
    torch.manual_seed(8)
    ref = torch_action_projection(4, 16).double()
    rng = np.random.default_rng(8)
    # As in one official forward: the B prediction actions, then the B·S observation actions.
    inputs = [rng.normal(size=(n, 4)).astype(np.float32) + 0.3 for n in (6, 18)]
    _check_head(ref, "action_projection", ActionProjection(16), inputs)


@pytest.mark.parametrize("hidden", [32, 0])
def test_predictor_matches_torch(hidden):
    torch.manual_seed(9)
    ref = torch_predictor(24, hidden, 12).double()
    randomise_(ref, 9)
    rng = np.random.default_rng(9)
    inputs = [rng.normal(size=(8, 24)).astype(np.float32) + 0.3 for _ in range(2)]
    _check_head(ref, "predictor", Predictor(12, hidden), inputs)


# ------------------------------------------------------------------------------------------------
# (e) Loss.


def test_prediction_loss_matches_torch_cosine_similarity():
    rng = np.random.default_rng(10)
    pred = rng.normal(size=(8, 16)).astype(np.float32)
    target = rng.normal(size=(8, 16)).astype(np.float32)
    pred[1] = 0.0  # zero and sub-eps rows exercise the eps = 1e-8 clamp on each norm
    pred[2] *= 1e-10
    target[3] = 0.0
    p = torch.from_numpy(pred).double().requires_grad_(True)
    expected = 1.0 - tnn.CosineSimilarity(dim=1)(p, torch.from_numpy(target).double()).mean()
    expected.backward()
    loss, grad = jax.value_and_grad(prediction_loss)(jnp.asarray(pred), jnp.asarray(target))
    assert_close(loss, expected.item())
    rows = np.array([0, 3, 4, 5, 6, 7])  # sub-eps prediction rows: torch differentiates through
    assert_close(np.asarray(grad)[rows], p.grad.numpy()[rows])  # its in-place clamp; we do not
    assert 0.5 < float(loss) < 1.5  # random directions: cosines near 0
