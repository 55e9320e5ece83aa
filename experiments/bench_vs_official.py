"""Side-by-side training-step timing: this library's jitted step vs the official PyTorch code.

The official code is not part of this repository: pass a checkout of hafezgh/seq-jepa (its root
or its `seq-jepa/src`) with `--official_src`, and the interpreter of an environment with torch and
torchvision with `--torch_python`. Our side runs under `--jax_python` (default: this interpreter).
Run from the repository root:

  python experiments/bench_vs_official.py --official_src=OFFICIAL/seq-jepa \
      --torch_python=TORCH_VENV/bin/python --steps 10 --repeats 3 \
      --output experiments/results/bench_vs_official_cpu.jsonl

What is timed, per recipe (spec §5.3, both with M_tr = 3 observation views, V = 4):
- `3diebench`: B = 32, 128 px, ImageNet stem, d_a = 4 relative quaternions, 55 classes;
- `cifar100`: B = 64, 32 px, CIFAR stem (`--cifar-resnet`), d_a = 9 augmentation parameters,
  100 classes.

- torch (the official code, spec §4.1): `SeqJEPA_Transforms(img_size, ema=True, **kwargs)` with
  the kwargs, the two online probes and `torch.optim.Adam(lr=1e-3, weight_decay=0)` of
  `main_transformed_views.py`; one step is one iteration of `engine.train_one_epoch_3diebench`
  (3diebench: forward with `rel_latents`) or `train_one_epoch_aug` (cifar100: forward on the
  normalised parameters, probe target = parameter difference): zero_grad, forward, detached
  probes with CE and MSE, backward, Adam step, `update_moving_average()`, `loss.item()`.
  Mode `eager` runs it as is; mode `compile` wraps the model in `torch.compile` (default
  inductor; its first step includes compilation). `--torch_dtypes bfloat16` adds steps under
  `torch.autocast(bfloat16)` (not in the official code).
- jax: `experiments/bench_step.py`'s measurement (the same step as `train.py`, spec §4.1 step 7),
  run as a subprocess of that script, in each of `--jax_dtypes` (compute dtype; parameters, BN
  statistics and the loss stay float32), with `--xla_cpu_fast` (the YNN flag `main.py` sets)
  unless `--no_xla_cpu_fast`.

Every measurement runs in a fresh subprocess (so `peak_rss_mib` is its own), pinned to the same
`--threads` CPUs (default: all; torch.set_num_threads(threads) too), with the same random batch
every step. The measurements alternate: for each repeat, every (framework, mode, dtype) of a
recipe runs once, so that a slow spell of the machine hits all of them. Each prints one JSON line
with `RECORD_KEYS`: `first_step_s` is the first call including any compilation (jax: compile +
first execution), `step_s_median` the median of the `--steps` following steps. A ratio table
(median over repeats; speed-up = official eager time / this time) follows.

`--width`, `--stage_sizes` and `--image_size` and `--batch` are smoke-test options. Only
`--image_size` and `--batch` shrink the official side: its encoder is torchvision's ResNet-18,
whose width cannot be changed, so a smoke run's ratios mean nothing.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_step  # noqa: E402  (stdlib-only at import time, so the torch interpreter loads it)

RECIPES = bench_step.RECIPES
NUM_OBS = bench_step.NUM_OBS
DEFAULT_BATCH = {"3diebench": 32, "cifar100": 64}
RECORD_KEYS = (
    "framework",
    "mode",
    "recipe",
    "batch",
    "dtype",
    "image_size",
    "threads",
    "repeat",
    "step_s_median",
    "first_step_s",
    "peak_rss_mib",
    "device",
)


def official_src_dir(path: str) -> str:
    """The directory holding the official `models.py` (accepts the checkout root or src/)."""
    for candidate in (path, os.path.join(path, "src"), os.path.join(path, "seq-jepa", "src")):
        models = os.path.join(candidate, "models.py")
        if os.path.isfile(models):
            with open(models) as f:
                if "class SeqJEPA_Transforms" in f.read():
                    return os.path.abspath(candidate)
    raise FileNotFoundError(
        f"No official models.py with SeqJEPA_Transforms under {path!r}. Pass a checkout of "
        "github.com/hafezgh/seq-jepa (its root or seq-jepa/src) with --official_src."
    )


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


# ------------------------------------------------------------------------------------------------
# The official side (runs under --torch_python with `--worker`).


def _official_model(models, recipe: str, image_size: int, torch):
    """SeqJEPA_Transforms with the probes of main_transformed_views.py (spec §4.1, §5.3)."""
    spec = RECIPES[recipe]
    kwargs = dict(num_heads=4, n_channels=3, ema_decay=0.996, num_enc_layers=3,
                  num_classes=spec["num_classes"], act_cond=1, pred_hidden=1024,
                  backbone="resnet18", act_projdim=128, act_latentdim=spec["action_dim"],
                  cifar_resnet=spec["stem"] == "cifar", learn_act_emb=1)  # fmt: skip
    model = models.SeqJEPA_Transforms(image_size, True, **kwargs)
    nn = torch.nn
    model.online_linprobe = nn.Sequential(nn.Linear(model.emb_dim, spec["num_classes"]))
    model.online_equiprobe = nn.Sequential(
        nn.Linear(model.res_out_dim * 2, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
        nn.Linear(1024, spec["action_dim"]),
    )  # fmt: skip
    return model


def _official_batch(recipe: str, batch: int, image_size: int, device, torch) -> dict:
    """Random inputs of the shapes the official loaders yield (spec §6.1, §6.3)."""
    gen = torch.Generator().manual_seed(0)
    views = torch.randn(batch, NUM_OBS + 1, 3, image_size, image_size, generator=gen)
    labels = torch.randint(0, RECIPES[recipe]["num_classes"], (batch,), generator=gen)
    d_a = RECIPES[recipe]["action_dim"]
    if recipe == "3diebench":
        quats = torch.randn(batch, NUM_OBS + 1, d_a, generator=gen)
        latents = quats / quats.norm(dim=-1, keepdim=True)
        rel = torch.randn(batch, NUM_OBS, d_a, generator=gen)
    else:  # engine.py:51-53: parameters normalised over dim 1, target = view 1 - view 0
        latents = torch.nn.functional.normalize(
            torch.rand(batch, NUM_OBS + 1, d_a, generator=gen), p=2, dim=1
        )
        rel = latents[:, 1] - latents[:, 0]
    data = {"views": views, "latents": latents, "rel": rel, "labels": labels}
    return {key: value.to(device) for key, value in data.items()}


def measure_torch(
    official_src: str,
    recipe: str,
    batch: int,
    mode: str,
    dtype: str,
    steps: int,
    image_size: int,
    threads: int,
    device: str = "cpu",
) -> dict:
    """Times the official training iteration (see the module docstring); returns a record."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sys.path.insert(0, official_src_dir(official_src))
    import models  # the official src/models.py

    model = _official_model(models, recipe, image_size, torch).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001, weight_decay=0.0)
    forward = torch.compile(model) if mode == "compile" else model
    data = _official_batch(recipe, batch, image_size, device, torch)
    mse, ce = torch.nn.MSELoss(), torch.nn.CrossEntropyLoss()

    def step() -> float:
        optimizer.zero_grad()
        views, latents = data["views"], data["latents"]
        with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=dtype == "bfloat16"):
            if recipe == "3diebench":  # engine.py:183-185
                out = forward(views[:, :-1], views[:, -1], latents[:, :-1], latents[:, -1],
                              rel_latents=data["rel"])  # fmt: skip
                target_rel = data["rel"][:, 0]
            else:  # engine.py:57-58
                out = forward(views[:, :-1], views[:, -1], latents[:, :-1], latents[:, -1])
                target_rel = data["rel"]
            loss, agg_out, z1, z2 = out
            loss = loss + ce(model.online_linprobe(agg_out.detach()), data["labels"])
            pred_rel = model.online_equiprobe(torch.cat((z1.detach(), z2.detach()), dim=1))
            loss = loss + mse(pred_rel.float(), target_rel)
        loss.backward()
        optimizer.step()
        model.update_moving_average()
        return loss.item()  # synchronises (and the official loop reads it every step)

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    if loss != loss:
        raise FloatingPointError(f"Non-finite official loss {loss}.")
    name = torch.cuda.get_device_name() if device.startswith("cuda") else cpu_name()
    return {
        "framework": "torch",
        "mode": mode,
        "recipe": recipe,
        "batch": batch,
        "dtype": dtype,
        "image_size": image_size,
        "threads": threads,
        "step_s_median": round(statistics.median(times), 4),
        "first_step_s": round(first, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": name,
        "version": torch.__version__,
    }


# ------------------------------------------------------------------------------------------------
# The harness.


def _pinned(threads: int):
    cpus = sorted(os.sched_getaffinity(0))[:threads] if hasattr(os, "sched_getaffinity") else []

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    return pin


def run_torch(args: argparse.Namespace, recipe: str, batch: int, size: int, mode, dtype) -> dict:
    """One official measurement in a fresh `--torch_python` subprocess."""
    command = [
        args.torch_python, os.path.abspath(__file__), "--worker",
        f"--official_src={args.official_src}",
        f"--recipes={recipe}", f"--batch={batch}", f"--image_size={size}", f"--steps={args.steps}",
        f"--threads={args.threads}", f"--torch_modes={mode}", f"--torch_dtypes={dtype}",
        f"--torch_device={args.torch_device}",
    ]  # fmt: skip
    return _run(command, os.environ.copy(), args.threads)


def run_jax(args: argparse.Namespace, recipe: str, batch: int, size: int, dtype: str) -> dict:
    """One measurement of bench_step.py (our step) in a fresh `--jax_python` subprocess."""
    command = bench_step.measurement_command(
        recipe, batch, dtype, args.steps, width=args.width, stage_sizes=args.stage_sizes,
        image_size=size, python=args.jax_python,
    )  # fmt: skip
    record = _run(command, bench_step.subprocess_env(args.xla_cpu_fast), args.threads)
    device = record["device_kind"]
    return {
        "framework": "jax",
        "mode": "jit+ynn" if bench_step.FAST_XLA_FLAG in record["xla_flags"] else "jit",
        "recipe": recipe,
        "batch": batch,
        "dtype": dtype,
        "image_size": record["image_size"],
        "threads": args.threads,
        "step_s_median": record["step_s_median"],
        "first_step_s": round(record["compile_s"] + record["first_step_s"], 4),
        "peak_rss_mib": record["peak_rss_mib"],
        "device": cpu_name() if device.lower() == "cpu" else device,
        "width": record["width"],
        "compile_s": record["compile_s"],
    }


def _run(command: list[str], env: dict[str, str], threads: int) -> dict:
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, text=True, preexec_fn=_pinned(threads)
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or len(lines) != 1:
        raise RuntimeError(
            f"Measurement failed (exit {result.returncode}): {' '.join(command)}\n"
            f"stdout: {result.stdout[-2000:]}\n(its stderr is above)"
        )
    return json.loads(lines[0])


def plan(args: argparse.Namespace) -> list[tuple]:
    """(recipe, batch, image_size, framework, mode, dtype) per measurement, in run order:
    every configuration of a recipe once per repeat, alternating."""
    configs = [("torch", mode, dtype) for dtype in args.torch_dtypes for mode in args.torch_modes]
    configs += [("jax", "jit", dtype) for dtype in args.jax_dtypes]
    order = []
    for recipe in args.recipes:
        batch = args.batch or DEFAULT_BATCH[recipe]
        size = args.image_size or RECIPES[recipe]["image_size"]
        for _ in range(args.repeats):
            order += [(recipe, batch, size, *config) for config in configs]
    return order


def ratio_table(records: Sequence[dict]) -> str:
    """Median step time over repeats per (recipe, framework, mode, dtype), and the speed-up
    relative to the official eager float32 (and compile float32) step of the same recipe."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        key = (record["recipe"], record["batch"], record["framework"], record["mode"])
        groups.setdefault((*key, record["dtype"]), []).append(record)
    medians = {key: statistics.median(r["step_s_median"] for r in rs) for key, rs in groups.items()}
    header = f"{'recipe':<10} {'B':>3} {'framework':<6} {'mode':<8} {'dtype':<9} {'step s':>8} "
    header += f"{'first s':>8} {'RSS MiB':>8} {'x eager':>8} {'x compile':>9}"
    lines = [header, "-" * len(header)]
    for key, rs in groups.items():
        recipe, batch, framework, mode, dtype = key
        eager = medians.get((recipe, batch, "torch", "eager", "float32"))
        compiled = medians.get((recipe, batch, "torch", "compile", "float32"))
        first = statistics.median(r["first_step_s"] for r in rs)
        rss = max(r["peak_rss_mib"] for r in rs)
        ratios = [f"{ref / medians[key]:.2f}" if ref else "-" for ref in (eager, compiled)]
        lines.append(
            f"{recipe:<10} {batch:>3} {framework:<6} {mode:<8} {dtype:<9} {medians[key]:>8.4f} "
            f"{first:>8.2f} {rss:>8.0f} {ratios[0]:>8} {ratios[1]:>9}"
        )
    return "\n".join(lines)


def _split(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(",") if part)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--official_src", required=True, help="checkout of hafezgh/seq-jepa (root or src/)")
    add("--torch_python", default=sys.executable, help="interpreter with torch + torchvision")
    add("--jax_python", default=sys.executable, help="interpreter with this library")
    add("--recipes", type=_split, default=("3diebench", "cifar100"))
    add("--batch", type=int, default=None, help="override the recipes' batch (32 / 64)")
    add("--image_size", type=int, default=None, help="override the recipes' image size")
    add("--width", type=int, default=64, help="our ResNet width only (smoke tests)")
    add("--stage_sizes", type=bench_step._parse_stage_sizes, default=(2, 2, 2, 2))
    add("--steps", type=int, default=10, help="timed steps after the first")
    add("--repeats", type=int, default=3, help="alternating rounds per recipe")
    add("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPUs per measurement")
    add("--torch_modes", type=_split, default=("eager", "compile"))
    add("--torch_dtypes", type=_split, default=("float32",), help="bfloat16 = autocast")
    add("--torch_device", default="cpu", help="cpu or cuda")
    add("--jax_dtypes", type=_split, default=bench_step.DTYPES)
    add("--no_xla_cpu_fast", dest="xla_cpu_fast", action="store_false")
    add("--output", default=None, help="append the JSON lines to this file")
    add("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, allowed in (
        ("recipes", RECIPES),
        ("torch_modes", ("eager", "compile")),
        ("torch_dtypes", bench_step.DTYPES),
        ("jax_dtypes", bench_step.DTYPES),
    ):
        bad = [value for value in getattr(args, name) if value not in allowed]
        if bad:
            parser.error(f"--{name}: unknown {bad}; choose from {sorted(allowed)}.")
    if args.steps < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--steps, --repeats and --threads must be >= 1.")
    return args


def _check_torch_python(python: str, official_src: str) -> None:
    """Fails early, naming the fix, if `python` cannot import torch and the official models."""
    src = official_src_dir(official_src)
    code = f"import sys, torch; sys.path.insert(0, {src!r}); import models"
    probe = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if probe.returncode:
        raise RuntimeError(
            f"--torch_python={python} cannot import torch and the official models.py (it needs "
            f"torch and torchvision): {probe.stderr.strip()[-500:]}. Pass the python of a venv "
            "that has them."
        )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Runs the plan (or, with --worker, one official measurement) and prints the records."""
    args = parse_args(argv)
    if args.worker:
        record = measure_torch(
            args.official_src, args.recipes[0], args.batch, args.torch_modes[0],
            args.torch_dtypes[0], args.steps, args.image_size, args.threads, args.torch_device,
        )  # fmt: skip
        print(json.dumps(record), flush=True)
        return [record]
    official_src_dir(args.official_src)  # clear errors before any measurement
    if any(config[3] == "torch" for config in plan(args)):
        _check_torch_python(args.torch_python, args.official_src)
    records = []
    rounds: dict[str, int] = {}
    for recipe, batch, size, framework, mode, dtype in plan(args):
        key = f"{recipe}/{framework}/{mode}/{dtype}"
        rounds[key] = rounds.get(key, -1) + 1
        if framework == "torch":
            record = run_torch(args, recipe, batch, size, mode, dtype)
        else:
            record = run_jax(args, recipe, batch, size, dtype)
        record["repeat"] = rounds[key]
        record = {key: record[key] for key in RECORD_KEYS} | record
        print(json.dumps(record), flush=True)
        records.append(record)
        if args.output:
            os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
            with open(args.output, "a") as f:
                f.write(json.dumps(record) + "\n")
    print(ratio_table(records), flush=True)
    return records


if __name__ == "__main__":
    main()
