"""Times the on-device saccade sampler (seqjepa_jax.data.saccades.saccade_batch).

Run from the repository root:

  python experiments/bench_saccades_input.py                       # STL-10 shapes, all variants
  python experiments/bench_saccades_input.py --batch 8 --steps 2   # smoke run

What it measures: one jitted call of ``saccade_batch`` at the official STL-10 PLS shapes (spec
§6.4.2: B images of 96 x 96, 5 saccades, 32 px fovea, IoR radius 16, uint8 round trip and STL-10
normalisation): fixation sampling, glimpse extraction and the pixel pipeline. Images and maps are
random arrays already on the device, so host I/O and transfers are not included. Variants:

- ``file``: a given saliency map per image (the released DeepGaze maps, spec §6.4.1);
- ``spectral``: the map is computed in the same jitted call by ``spectral_residual_saliency``;
- ``uniform``: ``use_saliency=False``.

After one untimed call (compilation), ``--steps`` calls are timed one by one, each blocking on its
outputs; the median gives ``sequences_per_s`` = B / t and ``glimpses_per_s`` = B * V / t. Each
variant prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from seqjepa_jax.data import saccades
from seqjepa_jax.data.saliency import spectral_residual_saliency

VARIANTS = ("file", "spectral", "uniform")


def bench_saccade_batch(
    variant: str = "file",
    batch: int = 256,
    image_size: int = 96,
    num_saccades: int = 5,
    fovea_size: int = 32,
    steps: int = 5,
    seed: int = 0,
) -> dict[str, object]:
    """One measurement of ``saccade_batch`` at the given shapes; returns a JSON-able record."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    image_key, map_key, key = jax.random.split(jax.random.key(seed), 3)
    images = jax.random.uniform(image_key, (batch, image_size, image_size, 3))
    maps = jax.random.uniform(map_key, (batch, image_size, image_size), minval=0.1)
    maps = maps / jnp.sum(maps, axis=(1, 2), keepdims=True)
    options = {
        "num_saccades": num_saccades,
        "fovea_size": fovea_size,
        "quantize_uint8": True,
        "mean": saccades.STL10_MEAN,
        "std": saccades.STL10_STD,
        "use_saliency": variant != "uniform",
    }

    @jax.jit
    def step(
        step_key: jax.Array, images: jax.Array, maps: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        saliency = maps
        if variant == "spectral":
            saliency = jax.vmap(spectral_residual_saliency)(images)
        elif variant == "uniform":
            saliency = None
        return saccades.saccade_batch(
            jax.random.split(step_key, batch), images, saliency, **options
        )

    start = time.perf_counter()
    jax.block_until_ready(step(jax.random.fold_in(key, 1_000_000), images, maps))
    compile_s = time.perf_counter() - start
    times = []
    for i in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step(jax.random.fold_in(key, i), images, maps))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "variant": variant,
        "backend": jax.default_backend(),
        "batch": batch,
        "image_size": image_size,
        "num_saccades": num_saccades,
        "fovea_size": fovea_size,
        "compile_and_first_s": round(compile_s, 3),
        "median_s": round(median, 5),
        "sequences_per_s": round(batch / median, 1),
        "glimpses_per_s": round(batch * num_saccades / median, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, action="append")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--num_saccades", type=int, default=5)
    parser.add_argument("--fovea_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    for variant in args.variant or VARIANTS:
        record = bench_saccade_batch(
            variant,
            batch=args.batch,
            image_size=args.image_size,
            num_saccades=args.num_saccades,
            fovea_size=args.fovea_size,
            steps=args.steps,
        )
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
