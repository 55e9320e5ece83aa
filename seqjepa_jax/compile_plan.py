"""The main job's programs, built for a TPU slice that is not attached and compiled ahead of time.

`compile_programs(config, topology)` does what `train.train_and_evaluate` does up to its first
step, on the abstract devices of `jax.experimental.topologies.get_topology_desc` instead of real
ones (MaxText's `train_compile.py` pattern): the same `sharding.make_mesh` over the slice's
devices, the same `validate_config` with the slice's device and host counts, the same model,
schedules, optimiser, abstract state (`train.abstract_state`), step (`make_train_step`,
`faults.skip_nonfinite_updates`, `jit_train_step`) and evaluation forward
(`features.make_feature_fn`). The batches are the data layer's own: their per-host shapes come
from the real pipelines (`pipeline.train_batches` / `eval_batches` element specs for rendered
views, one host batch of `image_pipeline` for image datasets) and are made global as
`sharding.global_batch` does (host-local leading axis x process count). Image recipes make their
views on the devices, so their view maker (`view_makers.train_and_probe_view_fns`) is compiled too.
Nothing is allocated on an accelerator and no data is read.

The schedules are built with `NOMINAL_STEPS_PER_EPOCH` (the dataset is not read): they only set
constants inside the step, not its cost.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from seqjepa_jax import faults, methods, sharding, train
from seqjepa_jax.accelerators import Topology
from seqjepa_jax.config_checks import validate_config
from seqjepa_jax.data import image_pipeline, kinds, pipeline, view_makers
from seqjepa_jax.data.datasets import build_view_maker
from seqjepa_jax.data.image_sources import ImageArrays
from seqjepa_jax.data.latents import NUM_LATENTS
from seqjepa_jax.data.sources import ViewSource
from seqjepa_jax.evaluation import features as features_lib
from seqjepa_jax.optimizers import build_optimizer
from seqjepa_jax.train_step import jit_train_step, make_train_step

NOMINAL_STEPS_PER_EPOCH = 1000
_USED_HBM = re.compile(r"Used\s+([\d.]+)([KMGT]?)\s+of\s+([\d.]+)([KMGT]?)\s+hbm", re.I)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


# Hopper SM (compute capability 9.0) limits for XLA:GPU's target description, from the CUDA C++
# Programming Guide's "Technical Specifications per Compute Capability" table
# (https://docs.nvidia.com/cuda/cuda-c-programming-guide/) and the H100 SXM's 132 SMs, 50 MB L2
# and 1.98 GHz boost clock (NVIDIA H100 Tensor Core GPU Architecture whitepaper).
_HOPPER_SM = """
gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132
  fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535
  block_dim_limit_z: 65535 memory_bandwidth: {bandwidth} l2_cache_size: 52428800
  clock_rate_ghz: 1.98 device_memory_size: {memory} shared_memory_per_block_optin: 232448
  cuda_compute_capability {{ major: 9 }} registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
runtime_version {{ major: 12 minor: 8 }}
device_description_str: "{kind}"
"""
# Deviceless XLA:GPU compiles cannot autotune Triton GEMM tiles (no GPU to time them): use the
# cuBLAS path, and skip the plugin's check of CUDA libraries that a CPU-only machine lacks.
GPU_AOT_XLA_FLAG = "--xla_gpu_enable_triton_gemm=false"


def _gpu_devices(topology: Topology) -> list:
    """Compile-only CUDA devices of `h100:N` / `h200:N` (jax's CUDA 12 plugin, no GPU needed)."""
    from jax.experimental import topologies

    flags = os.environ.get("XLA_FLAGS", "")
    if GPU_AOT_XLA_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {GPU_AOT_XLA_FLAG}".strip()
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    chip = topology.chip
    config = _HOPPER_SM.format(
        bandwidth=int(chip.hbm_bytes_per_s), memory=chip.hbm_bytes, kind=chip.device_kind
    )
    try:
        description = topologies.get_topology_desc(
            platform="cuda", target_config=config, topology=f"1x1x{topology.num_chips}"
        )
    except NotImplementedError as error:
        raise ValueError(
            "Compiling for a GPU without one needs jax's CUDA plugin: pip install -e '.[cuda]' "
            "(and run the planner in a fresh process, before anything else starts JAX)."
        ) from error
    return list(description.devices)


def topology_mesh(topology: Topology) -> jax.sharding.Mesh:
    """`sharding.make_mesh` over the compile-only devices of `topology` (libtpu, or jax's CUDA
    plugin for the GPUs)."""
    from jax.experimental import topologies

    if topology.chip.platform == "cuda":
        return sharding.make_mesh(_gpu_devices(topology))

    # libtpu guards a real TPU with a machine-wide lock file; compile-only topologies touch no
    # TPU, so several planners (a grid, the tests) may load it at once.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        description = topologies.get_topology_desc(
            platform="tpu",
            topology_name=topology.name,
            chip_config_name=topology.chip.chip_config_name,
            chips_per_host_bounds=topology.chips_per_host_bounds,
        )
    except RuntimeError as error:
        if "not installed" in str(error):
            raise ValueError(
                "Compiling for a TPU needs libtpu: pip install -e '.[tpu]' (or '.[test]')."
            ) from error
        raise ValueError(f"--topology={topology.name}: libtpu rejected it: {error}") from error
    devices = list(description.devices)
    if len(devices) != topology.num_chips:
        raise ValueError(
            f"--topology={topology.name}: libtpu made {len(devices)} devices for "
            f"{topology.num_chips} chips."
        )
    return sharding.make_mesh(devices)


def process_count(mesh: jax.sharding.Mesh) -> int:
    """Hosts (JAX processes) of a mesh: distinct process indices of its devices."""
    return len({device.process_index for device in mesh.devices.flat})


class _ShapeOnlySource(ViewSource):
    """A view source with the config's geometry whose views are zeros: enough for tf.data to
    infer the pipeline's element spec without reading or rendering anything."""

    def __init__(self, num_objects: int, views_per_object: int, image_size: int) -> None:
        self.num_objects = num_objects
        self.views_per_object = views_per_object
        self.view_ids = np.arange(views_per_object, dtype=np.int32)
        self.labels = np.zeros(num_objects, np.int32)
        self.object_ids = np.arange(num_objects, dtype=np.int32)
        self.image_shape = (image_size, image_size)

    def load_views(self, object_index: tf.Tensor, view_indices: tf.Tensor) -> tuple:
        """Zeros of the stored shapes (see the class docstring)."""
        v = tf.shape(view_indices)[0]
        images = tf.zeros(tf.stack([v, *self.image_shape, 3]), tf.uint8)
        return images, tf.zeros(tf.stack([v, NUM_LATENTS]), tf.float32)


def _global(local: dict[str, Any], mesh: jax.sharding.Mesh, processes: int) -> dict:
    """Host-local shapes -> the global batch-sharded arrays `sharding.global_batch` makes."""
    spec = sharding.batch_sharded(mesh)
    return {
        key: jax.ShapeDtypeStruct(
            (int(value.shape[0]) * processes, *map(int, value.shape[1:])),
            np.dtype(getattr(value.dtype, "as_numpy_dtype", value.dtype)),
            sharding=spec,
        )
        for key, value in local.items()
    }


def _view_source_batches(config: ml_collections.ConfigDict, processes: int) -> tuple[dict, dict]:
    """Host-local (train, eval) element specs of the rendered-views pipeline."""
    data = config.data
    common = {
        "latent_type": data.latent_type,
        "seed": config.seed,
        "image_size": data.image_size,
        "mean": data.mean,
        "std": data.std,
        "process_index": 0,
        "process_count": processes,
    }
    size = max(config.train.batch_size, config.eval.batch_size)
    source = _ShapeOnlySource(size, data.views_per_object, data.image_size)
    train_ds = pipeline.train_batches(
        source,
        num_views=methods.training_views(config),
        global_batch_size=config.train.batch_size,
        **common,
    )
    eval_ds = pipeline.eval_batches(
        source, num_views=config.eval.num_views, global_batch_size=config.eval.batch_size, **common
    )
    return dict(train_ds.element_spec), dict(eval_ds.element_spec)


def _image_raw_batches(config: ml_collections.ConfigDict, processes: int) -> tuple[dict, dict]:
    """Host-local (train, eval) raw image batches of `image_pipeline` (source images, ids)."""
    saccade = config.data.saccades
    # Saccades look at source_size images; augmentation recipes' sources have the view size.
    saccades = kinds.dataset_kind(config.data.name) == "saccade"
    side = saccade.source_size if saccades else config.data.image_size
    n = max(config.train.batch_size, config.eval.batch_size)
    images = np.broadcast_to(np.zeros((1, side, side, 3), np.uint8), (n, side, side, 3))
    arrays = ImageArrays(images, np.zeros(n, np.int32), "shape-only")
    saliency = None
    if saccade.saliency_dir and saccade.use_saliency:
        saliency = np.broadcast_to(np.zeros((1, side, side), np.float32), (n, side, side))
    layout = {"process_index": 0, "process_count": processes, "saliency": saliency}
    train_raw = next(
        image_pipeline.train_image_batches(
            arrays, global_batch_size=config.train.batch_size, seed=config.seed, **layout
        )
    )
    eval_raw = next(
        image_pipeline.eval_image_batches(
            arrays, global_batch_size=config.eval.batch_size, **layout
        )
    )
    return train_raw, eval_raw


@dataclasses.dataclass
class Inputs:
    """Abstract inputs of the main job's device programs on one mesh."""

    state: Any
    train_batch: dict
    eval_batch: dict
    view_fns: tuple | None = None  # (train view fn, probe view fn) of image recipes
    raw_batches: tuple | None = None  # their abstract (train, eval) host batches


def build_inputs(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> tuple:
    """(Inputs, model, probes, optimizer, schedules) as `train.train_and_evaluate` builds them."""
    processes = process_count(mesh)
    validate_config(config, device_count=mesh.devices.size, process_count=processes)
    model, probes = train.build_model(config)
    learning_rate, ema_decay = train.build_schedules(config, NOMINAL_STEPS_PER_EPOCH)
    optimizer = build_optimizer(config.train.optimizer, learning_rate, config.train.weight_decay)
    state = train.abstract_state(config, model, probes, optimizer, mesh)
    if kinds.dataset_kind(config.data.name) == "views":
        local_train, local_eval = _view_source_batches(config, processes)
        batches = [_global(local, mesh, processes) for local in (local_train, local_eval)]
        inputs = Inputs(state, batches[0], batches[1])
    else:
        local_train, local_eval = _image_raw_batches(config, processes)
        raw = (_global(local_train, mesh, processes), _global(local_eval, mesh, processes))
        view_fns = view_makers.train_and_probe_view_fns(
            build_view_maker(config), mesh, config.eval.num_views
        )
        batches = [
            {
                k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding.batch_sharded(mesh))
                for k, v in jax.eval_shape(fn, r).items()
            }
            for fn, r in zip(view_fns, raw, strict=True)
        ]
        inputs = Inputs(state, batches[0], batches[1], tuple(view_fns), raw)
    return inputs, model, probes, optimizer, (learning_rate, ema_decay)


@dataclasses.dataclass
class CompileResult:
    """One compiled program: its executable (None if it ran out of HBM), timing and failure."""

    compiled: Any
    seconds: float
    out_of_memory_bytes: int | None = None
    error: str | None = None


def _compile(lowered_fn: Any, *args: Any) -> CompileResult:
    """Lower and compile; an out-of-HBM compile error becomes a result, not an exception."""
    start = time.perf_counter()
    try:
        compiled = lowered_fn.lower(*args).compile()
    except Exception as error:  # XLA:TPU reports "Ran out of memory in memory space hbm"
        message = str(error)
        used = _USED_HBM.search(message)
        if "RESOURCE_EXHAUSTED" not in message and not used:
            raise
        size = None
        if used:
            size = int(float(used.group(1)) * _UNITS[used.group(2).upper()])
        first = message.strip().splitlines()[0][:300]
        return CompileResult(None, time.perf_counter() - start, size, first)
    return CompileResult(compiled, time.perf_counter() - start)


def compile_programs(
    config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, with_eval: bool = True
) -> tuple[Inputs, dict[str, CompileResult]]:
    """Compiles the train step, the view maker (image recipes) and the evaluation forward."""
    inputs, model, probes, optimizer, (learning_rate, ema_decay) = build_inputs(config, mesh)
    step = make_train_step(model, probes, optimizer, learning_rate, ema_decay)
    if config.train.on_nonfinite == "skip":
        step = faults.skip_nonfinite_updates(step)
    results = {"train_step": _compile(jit_train_step(step, mesh), inputs.state, inputs.train_batch)}
    if inputs.view_fns is not None:
        results["view_maker"] = _compile(inputs.view_fns[0], inputs.raw_batches[0])
    if with_eval:
        feature_fn = features_lib.config_feature_fn(config, model, probes)
        args = (inputs.state.params, inputs.state.batch_stats, inputs.eval_batch)
        if inputs.view_fns is not None:
            results["eval_view_maker"] = _compile(inputs.view_fns[1], inputs.raw_batches[1])
        results["eval_features"] = _compile(feature_fn, *args)
    return inputs, results
