"""Hand-written VJPs of the ResNet's max-pool and training BatchNorm against independent references.

Both layers carry a custom VJP for speed (docs/benchmarks.md); these tests pin their gradients to
PyTorch's `max_pool2d` backward and to autodiff of the textbook BatchNorm formula (spec §1.1,
§10.1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from seqjepa_jax.models.layers import batch_norm_train
from seqjepa_jax.models.resnet import max_pool_3x3_stride2


def _pool_case(shape: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(sum(shape))
    # After a ReLU: many exact ties at zero, plus a positive tie inside one window.
    x = np.maximum(rng.standard_normal(shape), 0.0).astype(np.float32)
    x[0, 1, 1, 0] = x[0, 1, 2, 0] = 5.0
    out_h, out_w = (shape[1] - 1) // 2 + 1, (shape[2] - 1) // 2 + 1
    grad = rng.standard_normal((shape[0], out_h, out_w, shape[3])).astype(np.float32)
    return x, grad


@pytest.mark.parametrize("shape", [(2, 9, 10, 3), (3, 8, 8, 2), (1, 16, 13, 4)])
def test_max_pool_value_and_gradient_match_torch(shape):
    x, grad = _pool_case(shape)
    value, vjp = jax.vjp(max_pool_3x3_stride2, jnp.asarray(x))
    (grad_x,) = vjp(jnp.asarray(grad))

    torch_x = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_(True)
    torch_value = torch.nn.functional.max_pool2d(torch_x, 3, 2, 1)
    torch_value.backward(torch.tensor(grad).permute(0, 3, 1, 2))
    np.testing.assert_array_equal(value, torch_value.detach().permute(0, 2, 3, 1).numpy())
    # Ties go to the first maximum in row-major window order, as in PyTorch.
    np.testing.assert_allclose(grad_x, torch_x.grad.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_max_pool_gradient_sends_a_tie_to_the_first_maximum_only():
    x = np.zeros((1, 3, 3, 1), np.float32)
    x[0, 1, 1, 0] = x[0, 1, 2, 0] = 1.0  # both in output (0, 0)'s window and (0, 1)'s
    (grad_x,) = jax.vjp(max_pool_3x3_stride2, jnp.asarray(x))[1](jnp.ones((1, 2, 2, 1)))
    expected = np.zeros((3, 3), np.float32)
    # Output (0,0) (window rows 0..1, cols 0..1 of the input) picks (1,1); output (0,1) (cols 1..2)
    # picks (1,1) too, its first maximum; outputs (1,0) and (1,1) likewise pick (1,1).
    expected[1, 1] = 4.0
    np.testing.assert_array_equal(np.asarray(grad_x)[0, :, :, 0], expected)


def _textbook_batch_norm(x, scale, bias, epsilon=1e-5):
    x = x.astype(jnp.float32)
    mean = x.mean(axis=(0, 1, 2))
    var = ((x - mean) ** 2).mean(axis=(0, 1, 2))
    return (x - mean) / jnp.sqrt(var + epsilon) * scale + bias, mean, var


def test_batch_norm_vjp_matches_autodiff_of_the_formula():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 5, 6, 7)) * 3.0 + 1.0, jnp.float32)
    scale = jnp.asarray(rng.standard_normal(7), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(7), jnp.float32)
    # Cotangents for all three outputs: y, and the mean and variance (running statistics).
    cotangents = tuple(
        jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in (x.shape, (7,), (7,))
    )
    expected_out, expected_vjp = jax.vjp(_textbook_batch_norm, x, scale, bias)
    out, vjp = jax.vjp(lambda *a: batch_norm_train(*a, 1e-5), x, scale, bias)
    for got, want in zip(out, expected_out, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for got, want in zip(vjp(cotangents), expected_vjp(cotangents), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_batch_norm_gradient_keeps_the_input_dtype():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((8, 2, 2, 3)), jnp.bfloat16)
    ones, zeros = jnp.ones(3), jnp.zeros(3)
    (y, mean, var), vjp = jax.vjp(lambda v: batch_norm_train(v, ones, zeros, 1e-5), x)
    assert y.dtype == mean.dtype == var.dtype == jnp.float32
    (grad_x,) = vjp((jnp.ones_like(y), jnp.zeros_like(mean), jnp.zeros_like(var)))
    assert grad_x.dtype == jnp.bfloat16
    # d/dx of sum(normalised x) is zero: the output's sum is fixed at 0 by the centring.
    np.testing.assert_allclose(np.asarray(grad_x, np.float32), 0.0, atol=1e-2)
