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


def max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
    """3x3 max-pool, stride 2, padding 1 (PyTorch `MaxPool2d(3, 2, 1)`), on NHWC input.

    Written as a max over 9 strided slices of the -inf-padded input: numerically identical to
    `nn.max_pool`, but its gradient is much faster on XLA:CPU (first_probe_findings.md).
    """
    _, h, w, _ = x.shape
    out_h, out_w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    result = None
    for dy in range(3):
        for dx in range(3):
            window = jax.lax.slice(
                padded,
                (0, dy, dx, 0),
                (padded.shape[0], dy + 2 * (out_h - 1) + 1, dx + 2 * (out_w - 1) + 1, x.shape[3]),
                (1, 2, 2, 1),
            )
            result = window if result is None else jnp.maximum(result, window)
    return result


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
