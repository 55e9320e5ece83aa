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

`host_<recipe>` (every recipe of `HOST_RECIPES`) times the host's share of that recipe's training
input on ONE core (`measure_host`; tf.data on a one-thread private pool), so that the cores a
chip needs follow from the chip's rate (docs/accelerators.md):

  python experiments/bench_input.py --measure=host_3diebench --batch=64 --steps=5

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


HOST_RECIPES = {
    "default": ("default.py", None),
    "default_gpu": ("default.py", "gpu"),
    "3diebench": ("3diebench.py", None),
    "cifar100": ("cifar100.py", None),
    "tinyimagenet": ("tinyimagenet.py", None),
    "stl10": ("stl10.py", None),
    "imagenet": ("imagenet.py", None),
}
THREEDIEBENCH_STORED_SIDE = 256  # the release's renders (seqjepa_jax/data/threediebench.py)
IMAGENET_JPEG_HW = (375, 500)  # a typical ILSVRC-2012 training image


def _one_core(dataset):  # noqa: ANN001, ANN202
    """The dataset on one host core: a private one-thread pool, no intra-op parallelism."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def _smooth_images(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """Random smooth uint8 images (low-resolution noise upsampled), JPEG-sized like photos."""
    from PIL import Image

    coarse = rng.integers(0, 256, (count, height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    return np.stack(
        [np.asarray(Image.fromarray(c).resize((width, height), Image.BILINEAR)) for c in coarse]
    )


def _view_source(config, args, rng: np.random.Generator, workdir: str):  # noqa: ANN001, ANN202
    """A source like the recipe's: in-memory renders (procedural) or a JPEG tree (3DIEBench)."""
    from seqjepa_jax.data import procedural, threediebench
    from seqjepa_jax.data.sources import ArraySource

    n, v = 2 * args.batch, 8
    side = (
        config.data.procedural.render_size
        if config.data.name == "procedural"
        else THREEDIEBENCH_STORED_SIDE
    )
    arrays = procedural.ViewArrays(
        images=_smooth_images(rng, n * v, side, side).reshape(n, v, side, side, 3),
        latents=rng.normal(size=(n, v, 7)).astype(np.float32),
        labels=rng.integers(0, 10, n).astype(np.int32),
        object_ids=np.arange(n, dtype=np.int32),
    )
    if config.data.name == "procedural":
        return ArraySource(arrays)
    threediebench.write_3diebench_tree(arrays, workdir, "train")
    return threediebench.ThreeDIEBenchSource(workdir, "train", views_per_object=v)


def _imagenet_batches(config, args, rng: np.random.Generator):  # noqa: ANN001, ANN202
    """Host batches of `data/imagenet.py` (JPEG decode, random resized crop, 224 px) on
    synthetic JPEGs of a typical ImageNet size."""
    import io

    import tensorflow as tf
    from PIL import Image

    from seqjepa_jax.data import imagenet

    encoded = []
    for image in _smooth_images(rng, 32, *IMAGENET_JPEG_HW):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    records = tf.data.Dataset.from_tensor_slices(
        {
            "image": encoded,
            "label": np.arange(32, dtype=np.int64),
            "file_name": [f"n0000000_{i}.JPEG" for i in range(32)],
        }
    ).repeat()
    fn = imagenet._element_fn(config.seed, True, config.data.saccades.source_size, None)
    dataset = records.map(lambda ex: fn(0, ex)).batch(args.batch, drop_remainder=True)
    return _one_core(dataset).as_numpy_iterator()


def measure_host(args: argparse.Namespace, recipe: str) -> dict:
    """The host's share of one recipe's training input, on one core (`views_per_s` per core).

    Rendered views (default, default_gpu: in memory; 3diebench: a JPEG tree of 256-px renders
    resized to 128 px) go through `pipeline.train_batches`; ImageNet's host decodes and crops
    JPEGs (`data/imagenet.py`); CIFAR-100, TinyImageNet and STL-10 only gather source images
    (`image_pipeline.train_image_batches`), their views being made on the accelerator. V views
    per sequence count for every sequence the host feeds, so the rates compare across recipes.
    """
    import tempfile

    from seqjepa_jax.compile_plan import training_views
    from seqjepa_jax.config_defaults import load_config_file
    from seqjepa_jax.data import image_pipeline, kinds, pipeline
    from seqjepa_jax.data.image_sources import ImageArrays

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "configs")
    name, variant = HOST_RECIPES[recipe]
    config = load_config_file(os.path.join(root, name), variant)
    views = training_views(config)
    rng = np.random.default_rng(args.seed)
    kind = kinds.dataset_kind(config.data.name)
    with tempfile.TemporaryDirectory() as workdir:
        if kind == "views":
            dataset = pipeline.train_batches(
                _view_source(config, args, rng, workdir),
                num_views=views,
                global_batch_size=args.batch,
                latent_type=config.data.latent_type,
                seed=config.seed,
                image_size=config.data.image_size,
                mean=config.data.mean,
                std=config.data.std,
                process_index=0,
                process_count=1,
            )
            batches = _one_core(dataset).as_numpy_iterator()
        elif recipe == "imagenet":
            batches = _imagenet_batches(config, args, rng)
        else:
            side = config.data.saccades.source_size if kind == "saccade" else config.data.image_size
            images = rng.integers(0, 256, (4 * args.batch, side, side, 3), dtype=np.uint8)
            arrays = ImageArrays(images, np.zeros(4 * args.batch, np.int32), f"random/{recipe}")
            batches = image_pipeline.train_image_batches(
                arrays, global_batch_size=args.batch, seed=config.seed
            )
        times = _time_steps(lambda step: next(batches), args.steps)
    record = _pipeline_record(f"host_{recipe}", args, views, 0.0, times)
    record.update(image_size=None, out_size=config.data.image_size, host_cores=1)
    return record


MEASUREMENTS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "augment": measure_augment,
    "cifar100_pipeline": lambda args: measure_recipe_pipeline(args, "cifar100"),
    "stl10_pipeline": lambda args: measure_recipe_pipeline(args, "stl10"),
    **{
        f"host_{recipe}": (lambda args, recipe=recipe: measure_host(args, recipe))
        for recipe in HOST_RECIPES
    },
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
