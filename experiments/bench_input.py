"""Times the input side of training: the jitted augmentations and the recipes' input pipelines.

Run from the repository root:

  python experiments/bench_input.py --output experiments/results/bench_input_cpu.jsonl
  python experiments/bench_input.py --measure augment --batch 64 --steps 5   # one quick run

`augment` (the CIFAR-100 recipe, spec §5.3 and §6.3): B uint8 sources of `--image_size` px
(32), V = M_tr + 1 = 4 views each (M_tr = 3 observations with the official observation spec, the
target with the target spec), rendered at `--out_size` px (32) and normalised with the CIFAR-100
constants. One timed step is what the training loop would run per batch: derive one key per
example from (seed, step, global index) (`view_makers.example_keys`), then `augment.augment_batch`;
the step number changes every step, so every step draws new augmentations. Random source images
(a fixed batch) stand in for CIFAR-100, whose decode is not part of this stage.

Each measurement prints one JSON line with the keys of `RECORD_KEYS`: `compile_s` is the time of
`.lower().compile()`; after one untimed warm-up step, `--steps` steps are timed one by one, each
blocking on its outputs; `sequences_per_s` is B / median step time and `views_per_s` is
B · V / median step time.

`cifar100_pipeline` and `stl10_pipeline` time the whole training input path of those recipes
(`measure_recipe_pipeline`): host gather of the source images, transfer, and the jitted view maker
(augmentations, or saliency + fixations + 5 glimpses of 32 px from 96 px images).

  python experiments/bench_input.py --measure=stl10_pipeline --batch=512 --saliency=file

Extending: add a function `measure_<stage>(args) -> dict` that returns a record with
`RECORD_KEYS` (use `_timing_record`) and register it in `MEASUREMENTS`; `--measure all` runs every
registered stage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from seqjepa_jax.data import augment, view_makers

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)  # spec §6.3 normalisation constants
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
RECORD_KEYS = (
    "stage",
    "batch",
    "views",
    "image_size",
    "out_size",
    "backend",
    "devices",
    "compile_s",
    "step_s_median",
    "step_s_min",
    "step_s_max",
    "sequences_per_s",
    "views_per_s",
    "xla_flags",
)


def _timing_record(
    stage: str,
    args: argparse.Namespace,
    compile_s: float,
    times: Sequence[float],
) -> dict:
    """The JSON record of one measurement (RECORD_KEYS) from its compile and step times."""
    median = statistics.median(times)
    views = args.num_obs + 1
    return {
        "stage": stage,
        "batch": args.batch,
        "views": views,
        "image_size": args.image_size,
        "out_size": args.out_size,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "compile_s": round(compile_s, 3),
        "step_s_median": round(median, 5),
        "step_s_min": round(min(times), 5),
        "step_s_max": round(max(times), 5),
        "sequences_per_s": round(args.batch / median, 1),
        "views_per_s": round(args.batch * views / median, 1),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _time_steps(run_step: Callable[[int], object], steps: int) -> list[float]:
    """One untimed warm-up, then `steps` timed calls, each blocking on its outputs."""
    jax.block_until_ready(run_step(0))
    times = []
    for step in range(1, steps + 1):
        start = time.perf_counter()
        jax.block_until_ready(run_step(step))
        times.append(time.perf_counter() - start)
    return times


def measure_augment(args: argparse.Namespace) -> dict:
    """Official CIFAR-100 view generation (spec §6.3) on random uint8 sources."""
    obs_spec, target_spec = augment.official_view_specs(args.out_size)
    num_views = args.num_obs + 1
    rng = np.random.default_rng(args.seed)
    shape = (args.batch, args.image_size, args.image_size, 3)
    images = jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8))
    indices = jnp.arange(args.batch)

    @jax.jit
    def augment_step(step: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        keys = view_makers.example_keys(args.seed, 0, step, indices)
        return augment.augment_batch(
            keys,
            images,
            num_views,
            obs_spec,
            target_spec,
            args.out_size,
            CIFAR100_MEAN,
            CIFAR100_STD,
        )

    start = time.perf_counter()
    compiled = augment_step.lower(jnp.int32(0), images).compile()
    compile_s = time.perf_counter() - start
    times = _time_steps(lambda step: compiled(jnp.int32(step), images), args.steps)
    views, params = compiled(jnp.int32(0), images)
    if views.shape != (args.batch, num_views, args.out_size, args.out_size, 3):
        raise RuntimeError(f"Unexpected views shape {views.shape}.")
    if params.shape != (args.batch, num_views, augment.num_params(obs_spec)):
        raise RuntimeError(f"Unexpected params shape {params.shape}.")
    return _timing_record("augment", args, compile_s, times)


def _pipeline_record(stage: str, args: argparse.Namespace, views: int, compile_s, times) -> dict:
    record = _timing_record(stage, args, compile_s, times)
    median = statistics.median(times)
    record.update(views=views, views_per_s=round(args.batch * views / median, 1))
    return record


def measure_recipe_pipeline(args: argparse.Namespace, recipe: str) -> dict:
    """The whole training input path of a recipe, as `train.train_and_evaluate` runs it.

    `RunData.train_batches` of `ImageData` (`seqjepa_jax/data/datasets.py`) over random uint8
    sources held in memory like a loaded split: the host gathers the batch by index, transfers it,
    and the jitted view maker makes the views on the device (augmentations for cifar100; saliency,
    fixations with inhibition of return and glimpses for stl10, with the built-in spectral-residual
    saliency unless `--saliency=file` gives random maps, or `none` for uniform fixations). Each
    timed step is one `next()` blocked on the batch. Compile time is that of the first batch.
    """
    from seqjepa_jax.config_defaults import load_config_file
    from seqjepa_jax.data.datasets import ImageData
    from seqjepa_jax.data.image_sources import ImageArrays
    from seqjepa_jax.sharding import make_mesh

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs")
    config = load_config_file(os.path.join(root, f"{recipe}.py"))
    config.train.batch_size = args.batch
    side = args.image_size if recipe == "cifar100" else config.data.saccades.source_size
    if recipe == "stl10":
        config.data.saccades.use_saliency = args.saliency != "none"
    rng = np.random.default_rng(args.seed)
    count = args.batch * 4
    images = rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)
    arrays = ImageArrays(images, rng.integers(0, 10, count).astype(np.int32), f"random/{recipe}")
    saliency = None
    if recipe == "stl10" and args.saliency == "file":
        maps = rng.random((count, side, side)).astype(np.float32)
        saliency = maps / maps.sum(axis=(1, 2), keepdims=True)
    splits = {"ssl": arrays, "probe_train": arrays, "eval": arrays}
    data = ImageData(config, make_mesh(), splits, dict.fromkeys(splits, saliency))
    stream = data.train_batches(0)
    start = time.perf_counter()
    first = jax.block_until_ready(next(stream))
    compile_s = time.perf_counter() - start
    times = _time_steps(lambda step: next(stream), args.steps)
    views = config.train.seq_len + 1
    if first["views"].shape[:2] != (args.batch, views):
        raise RuntimeError(f"Unexpected views shape {first['views'].shape}.")
    stage = recipe if recipe == "cifar100" else f"stl10_{args.saliency}_saliency"
    return _pipeline_record(f"{stage}_pipeline", args, views, compile_s, times)


MEASUREMENTS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "augment": measure_augment,
    "cifar100_pipeline": lambda args: measure_recipe_pipeline(args, "cifar100"),
    "stl10_pipeline": lambda args: measure_recipe_pipeline(args, "stl10"),
}
"""Input stages this script can time."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--measure",
        choices=sorted(MEASUREMENTS) + ["all"],
        default="all",
        help="which input stage to time",
    )
    parser.add_argument("--batch", type=int, default=256, help="sequences per step")
    parser.add_argument("--num_obs", type=int, default=3, help="M_tr; V = M_tr + 1 views")
    parser.add_argument("--image_size", type=int, default=32, help="source image side (px)")
    parser.add_argument("--out_size", type=int, default=32, help="view side (px)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps after one warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--saliency",
        choices=("builtin", "file", "none"),
        default="builtin",
        help="stl10_pipeline: built-in spectral residual, given maps, or uniform fixations",
    )
    parser.add_argument("--output", default=None, help="append the JSON lines to this file")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.num_obs < 1:
        parser.error("--batch, --steps and --num_obs must be >= 1.")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Runs the requested measurement(s); prints (and optionally appends) one JSON line each."""
    args = parse_args(argv)
    stages = sorted(MEASUREMENTS) if args.measure == "all" else [args.measure]
    records = []
    for stage in stages:
        record = MEASUREMENTS[stage](args)
        print(json.dumps(record), flush=True)
        records.append(record)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "a") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)
    return records


if __name__ == "__main__":
    main()
