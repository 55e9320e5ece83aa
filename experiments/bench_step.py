"""Times the jitted training step of seq-JEPA and of every baseline at the official sizes.

Run from the repository root:

  python experiments/bench_step.py --steps 5 --output experiments/results/bench_step_cpu.jsonl
  python experiments/bench_step.py --steps 5 --xla_cpu_fast \
      --output experiments/results/bench_step_cpu.jsonl
  python experiments/bench_step.py --recipe 3diebench --batch 128 --dtype bfloat16  # one run
  python experiments/bench_step.py --recipe 3diebench --batch 32 --method all \
      --output experiments/results/bench_methods_cpu.jsonl  # every method, same recipe

What it measures: one full training step as `train.py` runs it (`make_train_step` +
`jit_train_step` on a `make_mesh()` mesh): the EMA target encoder on the target view, the online
ResNet-18 on the M_tr = 3 observation views, the action projection, the 3-layer 4-head aggregator,
the predictor 768→1024→512, the two online probes, Adam and the EMA update (spec §1-§2, §4.1).
Inputs are random arrays of the right shapes (V = 4 views, the same batch every step), so the
input pipeline is not included. `--method NAME` times a baseline's step instead (spec §8: its
views per sequence, 2 or 3, its projectors and loss, its EMA target if it has one), on the same
recipe; `--method all` times every method that trains on transformed views, each in its own
subprocess. Recipes (spec §5.3):

- `3diebench`: 128 px, ImageNet stem, d_a = 4 (rotation quaternions), 55 classes;
- `cifar100`: 32 px, CIFAR stem, d_a = 9 (augmentation parameters), 100 classes.

`--dtype` is the model's compute dtype (parameters, BN statistics, LayerNorms and the loss stay
float32). Each measurement prints one JSON line with the keys of `RECORD_KEYS`: `compile_s` is the
time of `.lower().compile()`; after one untimed warm-up step, `--steps` steps are timed one by one,
each blocking on the new state and metrics (`jax.block_until_ready`); `images_per_s` is
batch · V / median step time; `peak_rss_mib` is the process's peak resident memory
(`resource.getrusage`). Without `--recipe` the default set (`DEFAULT_MEASUREMENTS`: 3diebench at
batch 32 and cifar100 at batch 64, each in float32 and bfloat16) runs, each measurement in a fresh
subprocess so that the peak RSS is its own. `--xla_cpu_fast` runs the measurement(s) with
`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=reduce` (first_probe_findings.md: ~1.8x faster
on the project's CPU). `--width`, `--stage_sizes` and `--image_size` shrink the encoder for smoke
tests; the recorded measurements use the official sizes. `first_step_s` is the first execution
after compilation; `device_kind` names the device (e.g. the CPU or GPU model).

Regression check (docs/benchmarks.md), before merging a change to the model or the step:

  python experiments/bench_step.py --check experiments/results/bench_step_cpu.jsonl --margin 0.15

re-runs each distinct measurement of the baseline file (the newest record per `match_key`:
recipe, batch, dtype, device count, XLA_FLAGS and encoder size; each in a fresh subprocess with
the baseline's own XLA_FLAGS), prints a table of baseline vs current median step time and exits
1 if any is slower by more than the margin, 2 if a measurement has no baseline on this
machine's device count. Compare on the machine that recorded the baseline, with nothing else
running: wall time is only comparable there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

RECIPES = {
    "3diebench": {"image_size": 128, "stem": "imagenet", "action_dim": 4, "num_classes": 55},
    "cifar100": {"image_size": 32, "stem": "cifar", "action_dim": 9, "num_classes": 100},
}
DTYPES = ("float32", "bfloat16")
DEFAULT_MEASUREMENTS = (
    ("3diebench", 32, "float32"),
    ("3diebench", 32, "bfloat16"),
    ("cifar100", 64, "float32"),
    ("cifar100", 64, "bfloat16"),
)
RECORD_KEYS = (
    "recipe",
    "method",
    "batch",
    "dtype",
    "devices",
    "device_kind",
    "width",
    "stage_sizes",
    "image_size",
    "compile_s",
    "first_step_s",
    "step_s_median",
    "step_s_min",
    "step_s_max",
    "images_per_s",
    "peak_rss_mib",
    "xla_flags",
)
FAST_XLA_FLAG = "--xla_cpu_experimental_ynn_fusion_type=reduce"
NUM_OBS = 3  # M_tr (official --seq-len 3), so V = 4 views per sample.


def build_step(
    recipe: str,
    batch: int,
    dtype: str,
    *,
    width: int = 64,
    stage_sizes: Sequence[int] = (2, 2, 2, 2),
    image_size: int | None = None,
    seed: int = 0,
    method: str = "seqjepa",
) -> tuple:
    """(jitted step, train state, device batch) of a recipe, built as train.py builds them.

    JAX is imported here, so that a command-line run can set XLA_FLAGS before it is loaded.
    """
    import jax
    import numpy as np

    from seqjepa_jax import methods, train
    from seqjepa_jax.config_checks import validate_config
    from seqjepa_jax.config_defaults import base_config
    from seqjepa_jax.sharding import batch_sharded, make_mesh
    from seqjepa_jax.train_step import jit_train_step, make_train_step

    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}.")
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of {DTYPES}.")
    spec = RECIPES[recipe]
    # The official recipe (config_defaults: spec §5.3), built by the same functions as train.py.
    config = base_config()
    config.seed = seed
    config.method = method
    config.data.num_classes = spec["num_classes"]
    config.data.image_size = size = image_size or spec["image_size"]
    config.model.stem = spec["stem"]
    config.model.width = width
    config.model.stage_sizes = tuple(stage_sizes)
    config.model.compute_dtype = dtype
    # Official augmentation path: the last observation's action row is zero before projection
    # (spec §2.2 step 3, Q29); the 3DIEBench path projects the real relative action.
    config.model.zero_last_action_before_projection = recipe == "cifar100"
    config.train.seq_len = NUM_OBS
    config.train.batch_size = batch
    mesh = make_mesh()
    validate_config(config, device_count=mesh.devices.size)
    model, probes = train.build_model(config)
    # The action width of the recipe (d_a 9 = crop 4 + jitter 4 + blur 1 for CIFAR-100, §6.3).
    model = model.clone(action_dim=spec["action_dim"])
    probes = probes.clone(action_dim=spec["action_dim"])
    # The official schedules (spec §4.1, §1.2); their values do not change the step's cost.
    learning_rate, ema_decay = train.build_schedules(config, steps_per_epoch=100)
    optimizer = train.build_optimizer("adam", learning_rate)
    state = train.create_state(config, model, probes, optimizer, mesh)
    rng = np.random.default_rng(seed)
    views = methods.training_views(config)
    host_batch = {
        "views": rng.normal(size=(batch, views, size, size, 3)).astype(np.float32),
        "actions": rng.normal(size=(batch, views - 1, model.action_dim)).astype(np.float32),
        "label": rng.integers(0, spec["num_classes"], size=batch).astype(np.int32),
    }
    device_batch = jax.device_put(host_batch, batch_sharded(mesh))
    step_fn = jit_train_step(
        make_train_step(model, probes, optimizer, learning_rate, ema_decay), mesh
    )
    return step_fn, state, device_batch


def measure(
    recipe: str,
    batch: int,
    dtype: str,
    steps: int = 5,
    *,
    width: int = 64,
    stage_sizes: Sequence[int] = (2, 2, 2, 2),
    image_size: int | None = None,
    seed: int = 0,
    method: str = "seqjepa",
) -> dict:
    """Compiles and times the training step once; returns the JSON record (see RECORD_KEYS)."""
    import jax
    import numpy as np

    if steps < 1:
        raise ValueError(f"Need at least one timed step, got steps={steps}.")
    step_fn, state, device_batch = build_step(
        recipe,
        batch,
        dtype,
        width=width,
        stage_sizes=stage_sizes,
        image_size=image_size,
        seed=seed,
        method=method,
    )
    views, size = device_batch["views"].shape[1:3]
    start = time.perf_counter()
    compiled = step_fn.lower(state, device_batch).compile()
    compile_s = time.perf_counter() - start

    start = time.perf_counter()
    state, metrics = compiled(state, device_batch)  # warm-up (first execution), not in the median
    jax.block_until_ready((state, metrics))
    first_step_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, device_batch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
    if not np.isfinite(float(metrics["loss"])):
        raise FloatingPointError(f"Non-finite loss {float(metrics['loss'])} in the benchmark.")

    median = statistics.median(times)
    return {
        "recipe": recipe,
        "method": method,
        "batch": batch,
        "dtype": dtype,
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "width": width,
        "stage_sizes": list(stage_sizes),
        "image_size": size,
        "compile_s": round(compile_s, 3),
        "first_step_s": round(first_step_s, 4),
        "step_s_median": round(median, 4),
        "step_s_min": round(min(times), 4),
        "step_s_max": round(max(times), 4),
        "images_per_s": round(batch * views / median, 2),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def subprocess_env(xla_cpu_fast: bool, xla_flags: str | None = None) -> dict[str, str]:
    """This process's environment for a measurement subprocess.

    `xla_flags`, if given, replaces XLA_FLAGS (a `--check` rerun uses the baseline's flags
    exactly); the fast XLA:CPU flag is then appended if asked and not already there.
    """
    env = dict(os.environ)
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    if xla_cpu_fast and FAST_XLA_FLAG not in env.get("XLA_FLAGS", ""):
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_XLA_FLAG}".strip()
    return env


def measurement_command(
    recipe: str,
    batch: int,
    dtype: str,
    steps: int,
    *,
    width: int = 64,
    stage_sizes: Sequence[int] = (2, 2, 2, 2),
    image_size: int | None = None,
    seed: int = 0,
    python: str | None = None,
    method: str = "seqjepa",
) -> list[str]:
    """The command line that runs one measurement of this script (with `python`, default ours)."""
    command = [
        python or sys.executable,
        os.path.abspath(__file__),
        f"--recipe={recipe}",
        f"--batch={batch}",
        f"--dtype={dtype}",
        f"--steps={steps}",
        f"--width={width}",
        f"--stage_sizes={','.join(map(str, stage_sizes))}",
        f"--seed={seed}",
        f"--method={method}",
    ]
    if image_size:
        command.append(f"--image_size={image_size}")
    return command


def run_json_command(command: Sequence[str], env: dict[str, str] | None = None) -> dict:
    """Runs a measurement subprocess and returns the one JSON record it prints on stdout."""
    result = subprocess.run(list(command), env=env, stdout=subprocess.PIPE, check=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if len(lines) != 1:
        raise RuntimeError(f"Expected one JSON line from {command}, got: {result.stdout!r}")
    return json.loads(lines[0])


def _measure_in_subprocess(
    args: argparse.Namespace,
    recipe: str,
    batch: int,
    dtype: str,
    *,
    xla_flags: str | None = None,
    width: int | None = None,
    stage_sizes: Sequence[int] | None = None,
    image_size: int | None = None,
    method: str | None = None,
) -> dict:
    command = measurement_command(
        recipe,
        batch,
        dtype,
        args.steps,
        width=width or args.width,
        stage_sizes=stage_sizes or args.stage_sizes,
        image_size=image_size or args.image_size,
        seed=args.seed,
        method=method or args.method,
    )
    # A --check rerun takes the baseline's XLA_FLAGS as they are.
    env = subprocess_env(args.xla_cpu_fast and xla_flags is None, xla_flags)
    return run_json_command(command, env)


def _parse_stage_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=None,
        help="one measurement of this recipe (default: DEFAULT_MEASUREMENTS)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="global batch (default: 32 for 3diebench, 64 for cifar100)",
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="model compute dtype (with --recipe)"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
    parser.add_argument(
        "--xla_cpu_fast", action="store_true", help=f"run with XLA_FLAGS={FAST_XLA_FLAG}"
    )
    parser.add_argument("--width", type=int, default=64, help="ResNet first-stage width")
    parser.add_argument(
        "--stage_sizes",
        type=_parse_stage_sizes,
        default=(2, 2, 2, 2),
        help="BasicBlocks per stage, comma-separated",
    )
    parser.add_argument(
        "--image_size", type=int, default=None, help="override the recipe's image size"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--method",
        default="seqjepa",
        help="config.method to time (seqjepa or a baseline of spec §8), or 'all' (with --recipe)",
    )
    parser.add_argument("--output", default=None, help="append the JSON lines to this file")
    parser.add_argument(
        "--check",
        default=None,
        metavar="FILE",
        help="re-run the measurements recorded in FILE (a jsonl baseline) and exit 1 if any "
        "median step is slower than its baseline by more than --margin",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=0.15,
        help="allowed relative slow-down for --check",
    )
    args = parser.parse_args(argv)
    if args.check and args.recipe:
        parser.error("--check re-runs the baseline's measurements; do not combine with --recipe.")
    choices = (*transformed_view_methods(), "all")
    if args.method not in choices:
        parser.error(f"--method={args.method!r}; choose one of {choices}.")
    if args.method == "all" and not args.recipe:
        parser.error("--method=all times every method on one recipe: give --recipe.")
    return args


def transformed_view_methods() -> tuple[str, ...]:
    """The methods the benchmark's recipes (3DIEBench, CIFAR-100 sizes) can time."""
    from seqjepa_jax.methods import METHODS

    return tuple(name for name, info in METHODS.items() if "views" in info.data_kinds)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Runs the requested measurement(s); prints (and optionally appends) one JSON line each.

    With --check, exits with `check_exit_code` after printing the comparison table.
    """
    args = parse_args(argv)
    code = 0
    if args.check:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_check  # the regression check (it imports this module)

        records, code = bench_check.run_check(args)
    elif args.recipe is None:
        records = []
        for recipe, batch, dtype in DEFAULT_MEASUREMENTS:
            records.append(_measure_in_subprocess(args, recipe, batch, dtype))
            print(json.dumps(records[-1]), flush=True)
    elif args.method == "all":
        batch = args.batch or (32 if args.recipe == "3diebench" else 64)
        records = []
        for method in transformed_view_methods():
            records.append(
                _measure_in_subprocess(args, args.recipe, batch, args.dtype, method=method)
            )
            print(json.dumps(records[-1]), flush=True)
    else:
        batch = args.batch or (32 if args.recipe == "3diebench" else 64)
        if args.xla_cpu_fast and FAST_XLA_FLAG not in os.environ.get("XLA_FLAGS", ""):
            # XLA reads its flags when JAX starts: measure in a process that starts with them.
            record = _measure_in_subprocess(args, args.recipe, batch, args.dtype)
        else:
            record = measure(
                args.recipe,
                batch,
                args.dtype,
                args.steps,
                width=args.width,
                stage_sizes=args.stage_sizes,
                image_size=args.image_size,
                seed=args.seed,
                method=args.method,
            )
        print(json.dumps(record), flush=True)
        records = [record]
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "a") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)
    if code:
        raise SystemExit(code)
    return records


if __name__ == "__main__":
    main()
