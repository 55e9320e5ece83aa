"""Independent NumPy/PIL/colorsys/SciPy references for the augmentation tests (spec §6.3).

Written from the torchvision/PIL semantics, not from the JAX code under test: PIL does the
crop-resize, colorsys the hue, SciPy the reflect-padded blur, and plain Python loops the
RandomResizedCrop sampling.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image
from scipy import ndimage

PIL_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


def pil_resized_crop_float(image: np.ndarray, box, out_hw, method: str) -> np.ndarray:
    """torchvision resized_crop on PIL: crop then resize, one float 'F' image per channel."""
    i, j, h, w = (int(v) for v in box)
    out_h, out_w = out_hw
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), "F")
            .crop((j, i, j + w, i + h))
            .resize((out_w, out_h), PIL_FILTERS[method])
        )
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1).astype(np.float64)


def luma(image: np.ndarray) -> np.ndarray:
    return 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]


def brightness(x: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(factor * x, 0, 1)


def contrast(x: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(factor * x + (1 - factor) * luma(x).mean(), 0, 1)


def saturation(x: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(factor * x + (1 - factor) * luma(x)[..., None], 0, 1)


def hue(x: np.ndarray, shift: float) -> np.ndarray:
    out = np.empty(x.shape)
    for index in np.ndindex(x.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*x[index].astype(np.float64))
        out[index] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    return out


def gaussian_blur(x: np.ndarray, sigma: float, size: int) -> np.ndarray:
    taps = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    # scipy "mirror" (d c b | a b c d | c b a) is torch/numpy "reflect".
    out = ndimage.correlate1d(x.astype(np.float64), kernel, axis=0, mode="mirror")
    return ndimage.correlate1d(out, kernel, axis=1, mode="mirror")


def get_crop_params(rng: np.random.Generator, height: int, width: int, scale, ratio):
    """torchvision RandomResizedCrop.get_params, with a NumPy generator."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def view(image01: np.ndarray, params: dict, kernel_size: int, out_size: int, method: str):
    """The official ParamCompose chain in float64: returns (view, pre-solarize view)."""
    box = [params[k] for k in ("crop_i", "crop_j", "crop_h", "crop_w")]
    x = pil_resized_crop_float(image01, box, (out_size, out_size), method)
    if params["flip"]:
        x = x[:, ::-1]
    x = np.clip(x, 0, 1)
    if params["jitter"]:
        ops = [
            (brightness, "brightness"),
            (contrast, "contrast"),
            (saturation, "saturation"),
            (hue, "hue"),
        ]
        for op_index in params["order"]:
            op, name = ops[int(op_index)]
            x = op(x, float(params[name]))
    if params["gray"]:
        x = np.repeat(luma(x)[..., None], 3, axis=-1)
    if params["blur"]:
        x = gaussian_blur(x, float(params["blur_sigma"]), kernel_size)
    before_solarize = x
    if params["solarize"]:
        x = np.where(x >= 128 / 255, 1 - x, x)
    return x, before_solarize
