"""Building blocks with PyTorch's numerics: initialisers, a `Linear`, and BatchNorm.

The official seq-JEPA code is PyTorch; porting it with Flax defaults silently changes numbers
(spec §10). This module holds the few places where that matters, so every model file uses the
same definitions:

- `nn.Linear` default init: W ~ U(±1/√fan_in) (kaiming_uniform with a=√5) and b ~ U(±1/√fan_in).
- torchvision ResNet convs: kaiming_normal(fan_out, relu), an untruncated normal (JAX's
  "normal" distribution; "truncated_normal" would shrink the tails).
- `BatchNorm`: PyTorch momentum 0.1 (Flax 0.9), eps 1e-5, normalise with the biased batch
  variance, but update the running variance with the *unbiased* one (n/(n-1)), spec §10.1.
  Under `jax.jit` on a global sharded array the batch moments are global-batch (SyncBN) moments:
  no `axis_name` is needed (DESIGN.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]

# W ~ U(±1/√fan_in): variance_scaling with scale 1/3 and a uniform distribution gives the bound
# sqrt(3 * (1/3) / fan_in) = 1/√fan_in, which is PyTorch's kaiming_uniform(a=√5).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

# torchvision ResNet: kaiming_normal_(mode="fan_out", nonlinearity="relu"), std = sqrt(2/fan_out).
torch_kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

# nn.MultiheadAttention: xavier_uniform over the fused (3E, E) in-projection matrix.
xavier_uniform = nn.initializers.xavier_uniform()


def torch_default_bias_init(fan_in: int) -> Initializer:
    """PyTorch's default Linear bias init, U(±1/√fan_in), which depends on the layer's fan-in."""
    bound = 1.0 / max(fan_in, 1) ** 0.5

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Linear(nn.Module):
    """A dense layer initialised like `torch.nn.Linear` unless told otherwise.

    Attributes:
      features: output width.
      use_bias: whether to add a bias.
      kernel_init: kernel initialiser (default: PyTorch's U(±1/√fan_in)).
      zero_bias: initialise the bias to zero instead of U(±1/√fan_in).
      dtype: compute dtype (params stay float32).
    """

    features: int
    use_bias: bool = True
    kernel_init: Initializer = torch_default_kernel_init
    zero_bias: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        bias_init = nn.initializers.zeros if self.zero_bias else torch_default_bias_init(fan_in)
        return nn.Dense(
            self.features,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            bias_init=bias_init,
            dtype=self.dtype,
            param_dtype=jnp.float32,
        )(x)


class BatchNorm(nn.Module):
    """BatchNorm with PyTorch semantics (spec §10.1).

    Statistics are computed in float32 over every axis but the last. In training the input is
    normalised with the biased batch variance; the running variance is updated with the unbiased
    variance when `unbiased_running_var` (PyTorch's behaviour, the default here) or the biased one
    (Flax's behaviour). `momentum` is PyTorch's convention: running = (1 - m) running + m batch.

    Attributes:
      use_running_average: evaluate with the running statistics (PyTorch `eval()` mode).
      affine: learn a scale and a shift (PyTorch `affine=True`).
      scale_init: initialiser for the scale (zeros for the zero-γ residual init).
      momentum: PyTorch momentum (0.1 ⇔ Flax momentum 0.9).
      epsilon: added to the variance (PyTorch 1e-5).
      unbiased_running_var: update the running variance with n/(n-1) times the batch variance.
      dtype: output dtype.
    """

    use_running_average: bool = False
    affine: bool = True
    scale_init: Initializer = nn.initializers.ones
    momentum: float = 0.1
    epsilon: float = 1e-5
    unbiased_running_var: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        features = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        if self.affine:
            scale = self.param("scale", self.scale_init, (features,), jnp.float32)
            bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        else:
            scale, bias = jnp.ones((features,), jnp.float32), jnp.zeros((features,), jnp.float32)
        if use_running_average:
            rstd = jax.lax.rsqrt(ra_var.value + self.epsilon)
            y = _normalise(x.astype(jnp.float32), ra_mean.value, rstd, scale, bias)
            return y.astype(self.dtype)
        y, mean, var = batch_norm_train(x, scale, bias, self.epsilon)
        if not self.is_initializing():
            n = x.size // features
            running_var_update = var * (n / max(n - 1, 1)) if self.unbiased_running_var else var
            ra_mean.value = (1.0 - self.momentum) * ra_mean.value + self.momentum * mean
            ra_var.value = (1.0 - self.momentum) * ra_var.value + (
                self.momentum * running_var_update
            )
        return y.astype(self.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode BatchNorm over every axis but the last: (y, batch mean, biased variance).

    Statistics and `y` are float32 whatever the dtype of `x`; the variance is two-pass
    (numerically safer than E[x²] - E[x]² for large activations). The VJP is the closed form
    dx = γ·rstd·(g - mean(g) - x̂·mean(g·x̂)) (plus the terms of the mean and variance
    outputs): two reductions and one elementwise pass, where autodiff of the forward formula
    makes XLA:CPU run several more passes over every activation (docs/benchmarks.md).
    """
    return _batch_norm_forward(x, scale, bias, epsilon)[0]


def _normalise(
    x32: jax.Array, mean: jax.Array, rstd: jax.Array, scale: jax.Array, bias: jax.Array
) -> jax.Array:
    """(x - mean) · rstd · γ + β, in this order in training and evaluation alike."""
    return (x32 - mean) * rstd * scale + bias


def _batch_norm_forward(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[tuple[jax.Array, jax.Array, jax.Array], tuple]:
    axes = tuple(range(x.ndim - 1))
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=axes)
    var = jnp.mean(jnp.square(x32 - mean), axis=axes)
    rstd = jax.lax.rsqrt(var + epsilon)
    return (_normalise(x32, mean, rstd, scale, bias), mean, var), (x, mean, rstd, scale)


def _batch_norm_backward(epsilon: float, residuals: tuple, cotangents: tuple) -> tuple:
    del epsilon
    x, mean, rstd, scale = residuals
    grad_y, grad_mean, grad_var = cotangents
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    centred = x.astype(jnp.float32) - mean
    normalised = centred * rstd
    grad_bias = jnp.sum(grad_y, axis=axes)
    grad_scale = jnp.sum(grad_y * normalised, axis=axes)
    grad_x = (scale * rstd / n) * (n * grad_y - grad_bias - normalised * grad_scale)
    # The mean and variance outputs feed only the running statistics, so these cotangents are
    # zero in training; they are kept for a correct VJP.
    grad_x = grad_x + grad_mean / n + centred * (2.0 * grad_var / n)
    return grad_x.astype(x.dtype), grad_scale, grad_bias


batch_norm_train.defvjp(_batch_norm_forward, _batch_norm_backward)
