"""ResNet encoders (NHWC) with torchvision's ResNet-18 architecture and initialisation.

Spec §1.1: BasicBlocks [2, 2, 2, 2], widths [64, 128, 256, 512], stage strides [1, 2, 2, 2],
bias-free convs, a 1x1-conv + BN shortcut where the stride or width changes, global average
pooling, no fc.
Two stems: the ImageNet stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and the CIFAR stem of
`--cifar-resnet` (3x3/1 conv, no max-pool) whose conv keeps PyTorch's default uniform init
(spec Q38) while every other conv is kaiming-normal(fan_out). `zero_init_residual=True` zeroes the
scale of each block's last BN.

`width` and `stage_sizes` give smaller variants of the same network for CPU runs and tests; the
defaults are ResNet-18 (11,176,512 parameters with the ImageNet stem, 11,168,832 with the CIFAR
stem).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqjepa_jax.models.layers import (
    BatchNorm,
    torch_default_kernel_init,
    torch_kaiming_normal_fan_out,
)

STEMS = ("imagenet", "cifar")


def _pool_windows(x: jax.Array) -> list[jax.Array]:
    """The 9 strided (3x3, stride 2, padding 1) windows of NHWC `x`, in row-major tap order."""
    _, h, w, c = x.shape
    out_h, out_w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    return [
        jax.lax.slice(
            padded,
            (0, dy, dx, 0),
            (x.shape[0], dy + 2 * (out_h - 1) + 1, dx + 2 * (out_w - 1) + 1, c),
            (1, 2, 2, 1),
        )
        for dy in range(3)
        for dx in range(3)
    ]


def _pool_max_and_argmax(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Window maxima and the tap (0..8) of the first maximum, PyTorch's tie rule (strict >)."""
    windows = _pool_windows(x)
    result, index = windows[0], jnp.zeros(windows[0].shape, jnp.int8)
    for tap, window in enumerate(windows[1:], start=1):
        better = window > result
        result = jnp.where(better, window, result)
        index = jnp.where(better, jnp.int8(tap), index)
    return result, index


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool(x: jax.Array, height: int, width: int) -> jax.Array:
    del height, width  # only the backward pass needs the input size
    return _pool_max_and_argmax(x)[0]


def _max_pool_forward(x: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array]:
    del height, width
    return _pool_max_and_argmax(x)  # (output, residual for the backward pass)


def _max_pool_backward(
    height: int, width: int, index: jax.Array, grad: jax.Array
) -> tuple[jax.Array]:
    # Each output's gradient goes to its window's first maximum (PyTorch's MaxPool2d backward):
    # tap (dy, dx) of output (i, j) is padded-input pixel (2i + dy, 2j + dx), so scattering a
    # tap's gradients is a pad with interior 1 and low padding (dy, dx). Summing the 9 pads is
    # one elementwise fusion, instead of differentiating the chain of 8 maxima (which keeps
    # every intermediate maximum alive for the backward pass).
    out_h, out_w = grad.shape[1], grad.shape[2]
    zero = jnp.zeros((), grad.dtype)
    total = None
    for tap in range(9):
        dy, dx = divmod(tap, 3)
        routed = jnp.where(index == tap, grad, zero)
        placed = jax.lax.pad(
            routed,
            zero,
            (
                (0, 0, 0),
                (dy, height + 2 - dy - (2 * (out_h - 1) + 1), 1),
                (dx, width + 2 - dx - (2 * (out_w - 1) + 1), 1),
                (0, 0, 0),
            ),
        )
        total = placed if total is None else total + placed
    return (total[:, 1 : height + 1, 1 : width + 1, :],)


_max_pool.defvjp(_max_pool_forward, _max_pool_backward)


def max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
    """3x3 max-pool, stride 2, padding 1 (PyTorch `MaxPool2d(3, 2, 1)`), on NHWC input.

    The forward pass is a max over the 9 strided slices of the -inf-padded input (identical to
    `nn.max_pool`). The gradient is PyTorch's: all of an output's gradient goes to the first
    maximum of its window in row-major order. It is a custom VJP that keeps only an int8 tap
    index per output: on XLA:CPU autodiff of `nn.max_pool` (select-and-scatter) and of the chain
    of maxima were the slowest parts of the stem (first_probe_findings.md; the profile in
    docs/benchmarks.md).
    """
    return _max_pool(x, x.shape[1], x.shape[2])


class BasicBlock(nn.Module):
    """torchvision BasicBlock: conv3x3-BN-ReLU-conv3x3-BN (+ shortcut), ReLU."""

    features: int
    strides: int
    train: bool
    unbiased_running_var: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = _conv_factory(self.dtype)
        norm = _norm_factory(self.train, self.unbiased_running_var, self.dtype)
        residual = x
        y = conv(self.features, (3, 3), self.strides, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(self.features, (3, 3), 1, name="conv2")(y)
        y = norm(name="bn2", scale_init=nn.initializers.zeros)(y)  # zero_init_residual
        if self.strides != 1 or x.shape[-1] != self.features:
            residual = conv(self.features, (1, 1), self.strides, name="downsample_conv")(x)
            residual = norm(name="downsample_bn")(residual)
        return nn.relu(y + residual)


def _conv_factory(dtype: Any) -> Any:
    def make(
        features: int,
        kernel: tuple[int, int],
        strides: int,
        name: str,
        kernel_init: Any = torch_kaiming_normal_fan_out,
    ) -> nn.Conv:
        pad = kernel[0] // 2
        return nn.Conv(
            features,
            kernel,
            strides=(strides, strides),
            padding=((pad, pad), (pad, pad)),
            use_bias=False,
            kernel_init=kernel_init,
            dtype=dtype,
            param_dtype=jnp.float32,
            name=name,
        )

    return make


def _norm_factory(train: bool, unbiased_running_var: bool, dtype: Any) -> Any:
    def make(name: str, scale_init: Any = nn.initializers.ones) -> BatchNorm:
        return BatchNorm(
            use_running_average=not train,
            scale_init=scale_init,
            unbiased_running_var=unbiased_running_var,
            dtype=dtype,
            name=name,
        )

    return make


class ResNet(nn.Module):
    """A torchvision-style ResNet trunk returning globally pooled features.

    Attributes:
      stem: "imagenet" (7x7/2 conv + max-pool) or "cifar" (3x3/1 conv, no max-pool).
      width: channels of the first stage (64 for ResNet-18); stage i has width * 2**i.
      stage_sizes: BasicBlocks per stage ((2, 2, 2, 2) for ResNet-18).
      unbiased_running_var: PyTorch's running-variance update (spec §10.1).
      dtype: compute dtype; parameters and BN statistics stay float32.
    """

    stem: str = "imagenet"
    width: int = 64
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    unbiased_running_var: bool = True
    dtype: Any = jnp.float32

    @property
    def features(self) -> int:
        """Width of the pooled output (512 for ResNet-18)."""
        return self.width * 2 ** (len(self.stage_sizes) - 1)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        """Encodes NHWC images (N, H, W, C) into (N, features) float32 vectors."""
        if self.stem not in STEMS:
            raise ValueError(f"ResNet stem must be one of {STEMS}, got {self.stem!r}.")
        conv = _conv_factory(self.dtype)
        norm = _norm_factory(train, self.unbiased_running_var, self.dtype)
        x = x.astype(self.dtype)
        if self.stem == "imagenet":
            x = conv(self.width, (7, 7), 2, name="conv1")(x)
            x = nn.relu(norm(name="bn1")(x))
            x = max_pool_3x3_stride2(x)
        else:
            # Spec Q38: the replacement CIFAR conv keeps PyTorch's default Conv2d init.
            x = conv(self.width, (3, 3), 1, name="conv1", kernel_init=torch_default_kernel_init)(x)
            x = nn.relu(norm(name="bn1")(x))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for block in range(num_blocks):
                x = BasicBlock(
                    features=self.width * 2**stage,
                    strides=2 if (stage > 0 and block == 0) else 1,
                    train=train,
                    unbiased_running_var=self.unbiased_running_var,
                    dtype=self.dtype,
                    name=f"layer{stage + 1}_{block}",
                )(x)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
