"""Plan a TPU run without a TPU: compile the real step for a slice and report memory and speed.

  python -m seqjepa_jax.aot --config=configs/imagenet.py --topology=v5p:4x4x4 [--json]
  python -m seqjepa_jax.aot --config=configs/3diebench.py --topology=v5e:2x2 --max_batch
  python -m seqjepa_jax.aot --config=configs/cifar100.py --topology=v6e:2x4 \
      --config.model.compute_dtype=bfloat16 --config.train.batch_size=1024

Every `--config.<field>=value` override of `python -m seqjepa_jax.main` works here. The programs
are the main job's own, built by `compile_plan.py` for the slice's abstract devices (libtpu's
compile-only topology: `pip install -e ".[tpu]"`), so an impossible launch (a batch that does
not divide over the chips or hosts, a bad field) fails with the main job's error before any
compile. The report (`plan`): per-device HBM need against the chip's HBM, flops and bytes per
step, a roofline step time with images/s and the implied MFU (`roofline.py`), the collectives
of the compiled step and the compile times. `--max_batch` searches the largest per-chip batch
that fits (`largest_batch`). The chip figures are in `accelerators.py`. Why these numbers and
what they showed: docs/accelerators.md.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from seqjepa_jax import accelerators, compile_plan, methods, roofline

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined by `__main__` only: `main.py` owns `--config` in tests)."""
    config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/3diebench.py.")
    flags.DEFINE_string("topology", None, "TPU slice, e.g. v5e:2x2, v5p:2x2x1, v6e:2x4.")
    flags.DEFINE_bool("json", False, "Print the report as one JSON object.")
    flags.DEFINE_bool("max_batch", False, "Also search the largest per-chip batch that fits.")
    flags.DEFINE_bool("eval", True, "Also compile the evaluation forward (features).")
    flags.DEFINE_float("max_batch_tolerance", 0.05, "Stop when the bracket is this tight.")
    flags.mark_flags_as_required(["config", "topology"])


MiB = 2**20


def tree_bytes(tree: Any) -> int:
    """Bytes of every array leaf of a pytree of (abstract) arrays, as one device holds it."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shard = leaf.sharding.shard_shape(leaf.shape) if hasattr(leaf, "sharding") else leaf.shape
        total += int(np.prod(shard)) * np.dtype(leaf.dtype).itemsize
    return total


def _cost(compiled: Any) -> dict[str, float] | None:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if not cost:  # XLA:GPU's compile-only executables report none
        return None
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0))}


def hbm_peak(
    memory: dict[str, dict[str, int]], state_bytes: int, params_bytes: int, prefetch_bytes: int
) -> int:
    """Per-device HBM need of the run: the largest of its phases.

    - training: the step's own need (its arguments hold the state and the batch) plus the next
      batch that `pipeline.global_batch_iterator` has already put on the devices;
    - making views (image recipes): the view maker's need plus the resident state;
    - evaluation: the feature forward's need (its arguments hold params and BN statistics) plus
      the rest of the resident state, and the probe view maker's need plus the state.
    """
    phases = [memory["train_step"]["total"] + prefetch_bytes]
    if "view_maker" in memory:
        phases.append(memory["view_maker"]["total"] + state_bytes)
    if "eval_features" in memory:
        phases.append(memory["eval_features"]["total"] + state_bytes - params_bytes)
    if "eval_view_maker" in memory:
        phases.append(memory["eval_view_maker"]["total"] + state_bytes)
    return max(phases)


def plan(
    config: ml_collections.ConfigDict,
    topology: accelerators.Topology,
    *,
    with_eval: bool = True,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Compiles the main job's programs for `topology` and returns the report (module docstring)."""
    mesh = compile_plan.topology_mesh(topology) if mesh is None else mesh
    inputs, results = compile_plan.compile_programs(config, mesh, with_eval=with_eval)
    n = mesh.devices.size
    chip = topology.chip
    views = methods.training_views(config)
    report: dict[str, Any] = {
        "topology": topology.name,
        "chip": chip.name,
        "device_kind": mesh.devices.flat[0].device_kind,
        "n_devices": n,
        "n_hosts": compile_plan.process_count(mesh),
        "global_batch": config.train.batch_size,
        "per_device_batch": config.train.batch_size // n,
        "views_per_sequence": views,
        "compute_dtype": config.model.compute_dtype,
        "hbm_capacity_bytes": chip.hbm_bytes,
        "compile_seconds": {name: round(r.seconds, 2) for name, r in results.items()},
    }
    failed = {name: r for name, r in results.items() if r.compiled is None}
    if failed:
        name, result = next(iter(failed.items()))
        report.update(
            fits=False,
            hbm_bytes_per_device=result.out_of_memory_bytes,
            out_of_memory=f"{name}: {result.error}",
        )
        return report
    memory = {name: roofline.hbm_need(r.compiled.memory_analysis()) for name, r in results.items()}
    costs = {name: _cost(r.compiled) for name, r in results.items()}
    step_programs = [name for name in ("train_step", "view_maker") if name in results]
    texts = {name: results[name].compiled.as_text() for name in step_programs}
    collectives = []
    for name in step_programs:
        collectives += roofline.find_collectives(texts[name], n)
    summary = roofline.summarise_collectives(collectives, chip)
    state_bytes = tree_bytes(inputs.state)
    params_bytes = tree_bytes((inputs.state.params, inputs.state.batch_stats))
    fed = inputs.raw_batches[0] if inputs.raw_batches else inputs.train_batch
    need = hbm_peak(memory, state_bytes, params_bytes, tree_bytes(fed))
    report.update(
        fits=need <= chip.hbm_bytes,
        hbm_bytes_per_device=need,
        hbm_breakdown=memory,
        state_bytes_per_device=state_bytes,
        collectives=summary,
        matmul_dtypes=roofline.matmul_dtypes(texts["train_step"]),
    )
    if any(costs[name] is None for name in step_programs):
        report["roofline_step_seconds"] = None
        report["note"] = "no cost analysis from this compiler: memory and collectives only"
        return report
    flops = sum(costs[name]["flops"] for name in step_programs)
    bytes_accessed = sum(costs[name]["bytes"] for name in step_programs)
    estimate = roofline.roofline(
        flops_per_device=flops,
        bytes_per_device=bytes_accessed,
        collective_seconds_per_step=sum(entry["seconds"] for entry in summary.values()),
        chip=chip,
        num_devices=n,
        images_per_step=config.train.batch_size * views,
    )
    report.update(
        flops_per_device=flops,
        bytes_per_device=bytes_accessed,
        eval_flops_per_device=(costs.get("eval_features") or {}).get("flops"),
        roofline_step_seconds=estimate.step_seconds,
        compute_seconds=estimate.compute_seconds,
        memory_seconds=estimate.memory_seconds,
        collective_seconds=estimate.collective_seconds,
        bound=estimate.bound,
        images_per_second=estimate.images_per_second,
        images_per_second_per_chip=estimate.images_per_second_per_chip,
        sequences_per_second=estimate.images_per_second / views,
        mfu=estimate.mfu,
        mfu_model_flops="compiled (XLA cost_analysis of the TPU step and view maker)",
    )
    return report


def next_batch(
    points: dict[int, tuple[bool, int | None]], capacity: int, tolerance: float
) -> int | None:
    """The next per-chip batch to compile in the search for the largest that fits, or None.

    `points` maps tried batches to (fits, HBM bytes or None). HBM need is close to affine in the
    batch, so a line through the measured points predicts the largest fitting batch; it is tried
    when it lies strictly inside the bracket (largest fitting, smallest failing), else the
    bracket's midpoint (or a doubling / halving while one side is open). Done when the bracket
    is within `tolerance` of the largest fitting batch.
    """
    fitting = [b for b, (ok, _) in points.items() if ok]
    failing = [b for b, (ok, _) in points.items() if not ok]
    lo = max(fitting, default=0)
    hi = min(failing, default=None)
    if hi is not None and hi - lo <= max(1, int(tolerance * lo)):
        return None
    if hi is not None and hi <= 1:
        return None
    measured = sorted((b, used) for b, (_, used) in points.items() if used is not None)
    guess = None
    if len({b for b, _ in measured}) >= 2:
        slope, intercept = np.polyfit([b for b, _ in measured], [u for _, u in measured], 1)
        if slope > 0:
            guess = int((capacity - intercept) // slope)
            if hi is None and guess <= lo:
                guess = lo + max(1, int(tolerance * lo))  # a fitting point above the line
            if lo and guess >= lo and hi is None:
                guess = max(guess, lo + 1)
    upper = hi if hi is not None else float("inf")
    if guess is None or not lo < guess < upper or guess in points:
        if hi is None:
            guess = 2 * lo
        elif lo == 0:
            guess = hi // 2
        else:
            guess = (lo + hi) // 2
    return guess if guess not in points else None


def largest_batch(
    measure: Callable[[int], tuple[bool, int | None]],
    start: int,
    capacity: int,
    tolerance: float = 0.05,
    max_compiles: int = 10,
) -> tuple[int, dict[int, tuple[bool, int | None]]]:
    """(largest per-chip batch found to fit, every tried point) with `next_batch`'s search."""
    points: dict[int, tuple[bool, int | None]] = {}
    batch: int | None = start
    while batch is not None and batch >= 1 and len(points) < max_compiles:
        points[batch] = measure(batch)
        batch = next_batch(points, capacity, tolerance)
    return max((b for b, (ok, _) in points.items() if ok), default=0), points


def max_batch_search(
    config: ml_collections.ConfigDict, topology: accelerators.Topology, tolerance: float
) -> dict[str, Any]:
    """`largest_batch` over per-chip batches, each a train step (+ view maker) compile."""
    mesh = compile_plan.topology_mesh(topology)
    n = mesh.devices.size

    def measure(per_chip: int) -> tuple[bool, int | None]:
        trial = copy.deepcopy(config)
        trial.train.batch_size = per_chip * n
        report = plan(trial, topology, with_eval=False, mesh=mesh)
        print(
            f"  per-chip batch {per_chip}: {'fits' if report['fits'] else 'does not fit'}, "
            f"{_mib(report.get('hbm_bytes_per_device'))} MiB",
            file=sys.stderr,
            flush=True,
        )
        return bool(report["fits"]), report.get("hbm_bytes_per_device")

    start = max(1, config.train.batch_size // n)
    best, points = largest_batch(measure, start, topology.chip.hbm_bytes, tolerance)
    return {
        "max_per_device_batch": best,
        "max_global_batch": best * n,
        "tried": {
            str(b): {"fits": ok, "hbm_bytes": used} for b, (ok, used) in sorted(points.items())
        },
    }


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / MiB:,.0f}"


def format_report(report: dict[str, Any]) -> str:
    """The short human-readable report."""
    lines = [
        f"{report['topology']} ({report['n_devices']} x {report['device_kind']}, "
        f"{report['n_hosts']} host(s)); global batch {report['global_batch']} = "
        f"{report['per_device_batch']} per chip x {report['views_per_sequence']} views, "
        f"{report['compute_dtype']}",
        f"HBM per chip: {_mib(report.get('hbm_bytes_per_device'))} MiB of "
        f"{_mib(report['hbm_capacity_bytes'])} MiB -> "
        + ("fits" if report["fits"] else "DOES NOT FIT"),
    ]
    if "out_of_memory" in report:
        lines.append(f"  compiler: {report['out_of_memory']}")
    else:
        for name, parts in report["hbm_breakdown"].items():
            lines.append(
                f"  {name}: args {_mib(parts['arguments'])}, out {_mib(parts['outputs'])} "
                f"(donated {_mib(parts['aliased'])}), temp {_mib(parts['temporaries'])}, "
                f"code {_mib(parts['generated_code'])} MiB"
            )
        if report["roofline_step_seconds"] is None:
            lines.append(f"No roofline: {report['note']}")
        else:
            lines += _roofline_lines(report)
        lines.append(
            "Collectives per step: "
            + (
                ", ".join(
                    f"{kind} x{c['count']} ({c['bytes'] / MiB:.2f} MiB)"
                    for kind, c in report["collectives"].items()
                )
                or "none"
            )
        )
    lines.append(
        "Compile: " + ", ".join(f"{k} {v:.1f} s" for k, v in report["compile_seconds"].items())
    )
    if "max_batch" in report:
        mb = report["max_batch"]
        lines.append(
            f"Largest per-chip batch that fits: {mb['max_per_device_batch']} "
            f"(global {mb['max_global_batch']}); tried {list(mb['tried'])}"
        )
    return "\n".join(lines)


def _roofline_lines(report: dict[str, Any]) -> list[str]:
    return [
        f"Per chip and step: {report['flops_per_device'] / 1e9:,.1f} GFLOP, "
        f"{report['bytes_per_device'] / 1e9:,.2f} GB of HBM traffic",
        f"Roofline step: {report['roofline_step_seconds'] * 1e3:.2f} ms = max(compute "
        f"{report['compute_seconds'] * 1e3:.2f}, HBM {report['memory_seconds'] * 1e3:.2f}) "
        f"+ ICI {report['collective_seconds'] * 1e3:.3f} ms ({report['bound']}-bound)",
        f"Throughput: {report['images_per_second_per_chip']:,.0f} images/s per chip, "
        f"{report['images_per_second']:,.0f} per slice; implied MFU "
        f"{100 * report['mfu']:.1f} % ({report['mfu_model_flops']})",
    ]


def parse_flags(argv: list[str]) -> list[str]:
    """absl parsing after the main job's override checks (`config_overrides`)."""
    from seqjepa_jax.config_overrides import check_config_overrides

    try:
        check_config_overrides(argv)
    except ValueError as error:
        sys.stderr.write(f"FATAL Flags parsing error:\n{error}\n")
        sys.exit(1)
    return app.parse_flags_with_usage(argv)


def main(argv: list[str]) -> None:
    """Entry point: validate, compile, report (module docstring)."""
    del argv
    try:
        topology = accelerators.parse_topology(FLAGS.topology)
        report = plan(FLAGS.config, topology, with_eval=FLAGS.eval)
        if FLAGS.max_batch:
            report["max_batch"] = max_batch_search(
                FLAGS.config, topology, FLAGS.max_batch_tolerance
            )
    except ValueError as error:
        sys.stderr.write(f"Error: {error}\n")
        sys.exit(2)
    print(json.dumps(report) if FLAGS.json else format_report(report))


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
