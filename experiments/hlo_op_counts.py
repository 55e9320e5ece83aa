"""Op counts of the optimised HLO of the training step, to study its cost without wall time.

  python experiments/hlo_op_counts.py --recipe 3diebench --batch 32 [--xla_cpu_fast] \
      [--dump step.hlo.txt]

Builds the step exactly as experiments/bench_step.py does (`bench_step.build_step`: the recipe of
spec §5.3 at the official sizes unless --width/--image_size shrink it), compiles it for the
local backend (`jax.jit(...).lower(...).compile().as_text()`) and counts instructions per
opcode, split into the top-level computations (what the runtime executes one by one) and the
bodies of fusions. It prints one JSON object: the counts of the opcodes that move data
(transpose, copy, convolution, custom-call, fusion, ...) and the convolutions with their
dimension labels, so that transposes around weight-gradient convolutions are visible. Used for
docs/benchmarks.md (speed investigation).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_step  # noqa: E402

# `%name = shape opcode(...)`, where shape may be a tuple with spaces.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s([a-z][\w\-]*)\(")
_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_ARRAY = re.compile(r"(\w+)\[([\d,]*)\]")
_BYTES = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2}
REPORTED = ("transpose", "copy", "convolution", "custom-call", "fusion", "dot", "reduce",
            "reduce-window", "select-and-scatter", "all-reduce", "while")  # fmt: skip


def _mib(shape: str) -> float:
    """Size of an array shape like `f32[96,32,32,64]{3,2,1,0}` in MiB (tuples: 0)."""
    match = _ARRAY.match(shape)
    if shape.startswith("(") or not match:
        return 0.0
    size = _BYTES.get(match.group(1), 1)
    for dim in filter(None, match.group(2).split(",")):
        size *= int(dim)
    return size / 2**20


def count_ops(hlo_text: str) -> dict:
    """Instruction counts per opcode of an optimised HLO module, with data-movement totals.

    Returns {"top_level": Counter, "in_fusions": Counter, "convolutions": [dim_labels],
    "transpose_fusions": n, "transpose_fusion_mib": output MiB}. Fusion bodies are the
    computations XLA names fused_* / wrapped_*; every other one (the entry, reducers, loop
    bodies) is top level. Top-level fusions whose name contains "transpose" (XLA names a fusion
    after its ops) are the physical transposes, e.g. around weight-gradient convolutions.
    """
    top, fused = collections.Counter(), collections.Counter()
    convolutions, transpose_fusions, transpose_mib = [], 0, 0.0
    in_fusion = False
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header and "=" not in line.split("(")[0]:
            name = header.group(2)
            in_fusion = not header.group(1) and name.startswith(("fused", "wrapped"))
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, shape, opcode = match.groups()
        (fused if in_fusion else top)[opcode] += 1
        if opcode == "convolution":
            dims = re.search(r"dim_labels=([\w>\-]+)", line)
            convolutions.append(dims.group(1) if dims else "?")
        if not in_fusion and opcode == "fusion" and "transpose" in name:
            transpose_fusions += 1
            transpose_mib += _mib(shape)
    return {
        "top_level": top,
        "in_fusions": fused,
        "convolutions": convolutions,
        "transpose_fusions": transpose_fusions,
        "transpose_fusion_mib": round(transpose_mib, 1),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(bench_step.RECIPES), default="3diebench")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dtype", choices=bench_step.DTYPES, default="float32")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--xla_cpu_fast", action="store_true", help="add the YNN flag first")
    parser.add_argument("--dump", default=None, help="write the optimised HLO text here")
    args = parser.parse_args(argv)
    if args.xla_cpu_fast:
        os.environ.update(bench_step.subprocess_env(True))
    import jax

    step_fn, state, batch = bench_step.build_step(
        args.recipe, args.batch, args.dtype, width=args.width, image_size=args.image_size
    )
    text = step_fn.lower(state, batch).compile().as_text()
    if args.dump:
        with open(args.dump, "w") as f:
            f.write(text)
    counts = count_ops(text)
    conv_dims = collections.Counter(counts["convolutions"])
    result = {
        "recipe": args.recipe,
        "batch": args.batch,
        "dtype": args.dtype,
        "backend": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "top_level": {op: counts["top_level"][op] for op in REPORTED},
        "in_fusions": {op: counts["in_fusions"][op] for op in REPORTED},
        "convolution_dim_labels": dict(conv_dims),
        "transpose_fusions": counts["transpose_fusions"],
        "transpose_fusion_mib": counts["transpose_fusion_mib"],
        "instructions_top_level": sum(counts["top_level"].values()),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
