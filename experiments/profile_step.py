"""Where the training step's time goes: a jax.profiler trace of the step, summarised per op kind.

  python experiments/profile_step.py --recipe 3diebench --batch 32 --xla_cpu_fast [--steps 2] \
      [--trace_dir DIR]

Builds the step exactly as experiments/bench_step.py does (`bench_step.build_step`), compiles it,
runs two untraced warm-up steps, traces `--steps` steps with `jax.profiler.trace` and reads the
trace back with `jax.profiler.ProfileData`. It prints one JSON object:

- `step_s`: wall time per step while tracing (a little above `bench_step.py`'s median);
- `worker_threads`: the runtime's worker threads seen in the trace (XLA:CPU: one per core);
- `categories`: per op kind, thread-milliseconds per step and executions per step, largest first.
  An op kind is the name of a thunk without its numeric suffix (`transpose_copy_fusion.29` and
  `.33` are both `transpose_copy_fusion`), so the BatchNorm centring, the transposes around the
  weight-gradient convolutions, the YNN reductions and the Adam updates each get one line;
- `attributed_thread_s`: the sum of `categories`; `unattributed_thread_s` = worker_threads ·
  step_s - attributed. On XLA:CPU a convolution or dot's work runs inside Eigen's thread pool
  without trace events of its own, so this is mostly convolution time.

Use it with `hlo_op_counts.py` (what the compiled step contains) to decide what to optimise;
docs/benchmarks.md records the breakdown of the official-size steps.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_step  # noqa: E402

# Trace events that wrap or wait for other work (their time is already in the thunks they run).
_WRAPPERS = ("ThunkExecutor::", "$", "PjitFunction", "CommonPjRt", "ParseArguments")
_SUFFIX = re.compile(r"\.\d+$")


def summarise(events: Iterable[tuple[str, str, int]], steps: int, step_s: float) -> dict:
    """Per-op-kind thread time from (thread name, event name, duration ns) trace events.

    Only the runtime's threads count (the Python thread only waits); wrapper events are skipped
    so that no time is counted twice. Worker threads are XLA:CPU's Eigen pool threads
    (`tf_XLAEigen/...`), or every thread with a thunk on a backend without them.
    """
    thread_ns: collections.Counter = collections.Counter()
    executions: collections.Counter = collections.Counter()
    workers = set()
    for thread, name, duration_ns in events:
        if thread == "python" or name.startswith(_WRAPPERS):
            continue
        kind = _SUFFIX.sub("", name)
        thread_ns[kind] += duration_ns
        executions[kind] += 1
        workers.add(thread)
    categories = {
        kind: {
            "thread_ms_per_step": round(ns / steps / 1e6, 1),
            "per_step": executions[kind] // steps,
        }
        for kind, ns in thread_ns.most_common()
    }
    attributed = sum(thread_ns.values()) / steps / 1e9
    eigen = {thread for thread in workers if thread.startswith("tf_XLAEigen")}
    num_workers = max(len(eigen or workers), 1)
    return {
        "step_s": round(step_s, 4),
        "worker_threads": num_workers,
        "attributed_thread_s": round(attributed, 3),
        "unattributed_thread_s": round(num_workers * step_s - attributed, 3),
        "categories": categories,
    }


def trace_events(trace_dir: str) -> list[tuple[str, str, int]]:
    """(thread name, event name, duration ns) of every event of the host planes of a trace."""
    import jax

    files = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not files:
        raise FileNotFoundError(f"No *.xplane.pb under {trace_dir}: the trace was not written.")
    profile = jax.profiler.ProfileData.from_file(max(files, key=os.path.getmtime))
    return [
        (line.name, event.name, event.duration_ns)
        for plane in profile.planes
        if plane.name.startswith("/host")
        for line in plane.lines
        for event in line.events
    ]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(bench_step.RECIPES), default="3diebench")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dtype", choices=bench_step.DTYPES, default="float32")
    parser.add_argument("--steps", type=int, default=2, help="traced steps")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--xla_cpu_fast", action="store_true", help="add the YNN flag first")
    parser.add_argument("--trace_dir", default=None, help="keep the trace here (TensorBoard)")
    parser.add_argument("--top", type=int, default=25, help="op kinds to print")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}.")
    if args.xla_cpu_fast:
        os.environ.update(bench_step.subprocess_env(True))
    import jax

    step_fn, state, batch = bench_step.build_step(
        args.recipe, args.batch, args.dtype, width=args.width, image_size=args.image_size
    )
    compiled = step_fn.lower(state, batch).compile()
    for _ in range(2):
        state, metrics = compiled(state, batch)
        jax.block_until_ready((state, metrics))
    with tempfile.TemporaryDirectory() as scratch:
        trace_dir = args.trace_dir or scratch
        with jax.profiler.trace(trace_dir):
            start = time.perf_counter()
            for _ in range(args.steps):
                state, metrics = compiled(state, batch)
                jax.block_until_ready((state, metrics))
            step_s = (time.perf_counter() - start) / args.steps
        summary = summarise(trace_events(trace_dir), args.steps, step_s)
    summary["categories"] = dict(list(summary["categories"].items())[: args.top])
    result = {
        "recipe": args.recipe,
        "batch": args.batch,
        "dtype": args.dtype,
        "device_kind": jax.devices()[0].device_kind,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        **summary,
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
