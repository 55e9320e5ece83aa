"""Roofline arithmetic and collective accounting for a compiled step (used by `aot.py`).

Everything here is plain arithmetic on numbers the compiler reports, so it is tested against
hand-computed values (tests/test_roofline.py):

- HBM need per device, from `Compiled.memory_analysis()`: arguments + outputs - donated (aliased)
  outputs + temporaries + generated code; the same sum MaxText's `train_compile.py` prints.
- Step time: max(flops / peak FLOP/s, bytes accessed / HBM bandwidth) for the on-chip part (one of
  the two bounds the program cannot beat), plus the time of its collectives over ICI, not
  overlapped (XLA can overlap some of it with compute: the estimate is a pessimistic roofline).
  `cost_analysis()["optimal_seconds"]` is not used: an earlier trial found it negative on TPU.
- Collectives: every all-reduce / all-gather / reduce-scatter / all-to-all / collective-permute
  of the optimised HLO text, with its kind, output bytes and group size, and the ring-algorithm
  time of each: an all-reduce of S bytes over N chips moves 2 (N - 1) / N * S bytes through each
  chip's links, an all-gather (output S) or all-to-all (N - 1) / N * S, a reduce-scatter (output
  S per chip) (N - 1) * S, a permute S.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from typing import Any

from seqjepa_jax.accelerators import Chip

COLLECTIVE_KINDS = (
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
)
_DTYPE_BYTES = {
    "pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1,
    "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4,
    "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip
_ARRAY = re.compile(r"\b([a-z]+\d*[a-z0-9]*)\[([\d,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s([a-z][\w\-]*)\((.*)$")
_IOTA_GROUPS = re.compile(r"replica_groups=\[(\d+),(\d+)\]")
_LIST_GROUPS = re.compile(r"replica_groups=\{\{([\d,]*)\}")
# XLA:TPU's mesh form: replica_groups=mesh['axis_0'=4,'axis_1'=1] {'axis_0','axis_1'}
_MESH_GROUPS = re.compile(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}")


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO shape such as `f32[64,3]{1,0}` or a tuple `(f32[2], bf16[4,4])`."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        if dtype not in _DTYPE_BYTES:
            continue
        size = _DTYPE_BYTES[dtype]
        for dim in filter(None, dims.split(",")):
            size *= int(dim)
        total += size
    return total


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective of a compiled step: kind, output bytes per device, participants."""

    kind: str
    bytes: int
    group_size: int


def _group_size(text: str, default: int) -> int:
    mesh = _MESH_GROUPS.search(text)
    if mesh:
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", mesh.group(1)))
        return math.prod(int(sizes[axis]) for axis in re.findall(r"'([^']+)'", mesh.group(2)))
    iota = _IOTA_GROUPS.search(text)
    if iota:
        return int(iota.group(2))
    listed = _LIST_GROUPS.search(text)
    if listed and listed.group(1):
        return len(listed.group(1).split(","))
    return default


def find_collectives(hlo_text: str, num_devices: int) -> list[Collective]:
    """The collectives of an optimised HLO module (`Compiled.as_text()`).

    Synchronous ones count where they appear; asynchronous pairs (`<kind>-start` ... `-done`)
    count once, at the `-done`, whose shape is the output (a start's shape also holds its
    operands). Groups default to all `num_devices` when the replica groups are not spelled out.
    """
    found, started = [], {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, shape, opcode, rest = match.groups()
        base = opcode.removesuffix("-start").removesuffix("-done")
        if base not in COLLECTIVE_KINDS:
            continue
        if opcode.endswith("-start"):
            started[name] = _group_size(rest, num_devices)
        elif opcode.endswith("-done"):
            operand = re.match(r"\s*(?:[^%]*\s)?%?([\w.\-]+)", rest)
            group = started.get(operand.group(1) if operand else "", num_devices)
            found.append(Collective(base, shape_bytes(shape), group))
        else:
            found.append(Collective(base, shape_bytes(shape), _group_size(rest, num_devices)))
    return found


def collective_seconds(collective: Collective, bytes_per_s: float) -> float:
    """Ring-algorithm time of one collective at `bytes_per_s` per chip (module docstring)."""
    n, size = collective.group_size, collective.bytes
    if n <= 1:
        return 0.0
    moved = {
        "all-reduce": 2 * (n - 1) / n * size,
        "all-gather": (n - 1) / n * size,
        "all-to-all": (n - 1) / n * size,
        "reduce-scatter": (n - 1) * size,
        "collective-permute": size,
    }[collective.kind]
    return moved / bytes_per_s


def summarise_collectives(collectives: list[Collective], chip: Chip) -> dict[str, dict[str, Any]]:
    """{kind: {count, bytes, seconds}} per step, with the ICI time of `chip`."""
    summary: dict[str, dict[str, Any]] = collections.defaultdict(
        lambda: {"count": 0, "bytes": 0, "seconds": 0.0}
    )
    for c in collectives:
        entry = summary[c.kind]
        entry["count"] += 1
        entry["bytes"] += c.bytes
        entry["seconds"] += collective_seconds(c, chip.all_reduce_bytes_per_s)
    return dict(summary)


def hbm_need(memory: Any) -> dict[str, int]:
    """Per-device bytes from a `CompiledMemoryStats` (or any object with its fields)."""
    parts = {
        "arguments": int(memory.argument_size_in_bytes),
        "outputs": int(memory.output_size_in_bytes),
        "aliased": int(memory.alias_size_in_bytes),
        "temporaries": int(memory.temp_size_in_bytes),
        "generated_code": int(memory.generated_code_size_in_bytes),
    }
    parts["total"] = (
        parts["arguments"]
        + parts["outputs"]
        - parts["aliased"]
        + parts["temporaries"]
        + parts["generated_code"]
    )
    return parts


@dataclasses.dataclass(frozen=True)
class Roofline:
    """The roofline estimate of one step on one slice (see `roofline`)."""

    compute_seconds: float
    memory_seconds: float
    collective_seconds: float
    step_seconds: float
    bound: str
    images_per_second_per_chip: float
    images_per_second: float
    mfu: float


def roofline(
    *,
    flops_per_device: float,
    bytes_per_device: float,
    collective_seconds_per_step: float,
    chip: Chip,
    num_devices: int,
    images_per_step: int,
    model_flops_per_device: float | None = None,
) -> Roofline:
    """Step time, throughput and implied MFU of a data-parallel step (module docstring).

    `images_per_step` is global (sequences x views); `model_flops_per_device` defaults to the
    compiled flops (MFU then counts every flop XLA schedules, elementwise ones included).
    """
    compute = flops_per_device / chip.peak_bf16_flops
    memory = bytes_per_device / chip.hbm_bytes_per_s
    step = max(compute, memory) + collective_seconds_per_step
    if step <= 0:
        raise ValueError("A step with no flops, no bytes and no collectives has no roofline.")
    bound = "compute" if compute >= memory else "HBM bandwidth"
    if collective_seconds_per_step > max(compute, memory):
        bound = "ICI"
    model_flops = flops_per_device if model_flops_per_device is None else model_flops_per_device
    return Roofline(
        compute_seconds=compute,
        memory_seconds=memory,
        collective_seconds=collective_seconds_per_step,
        step_seconds=step,
        bound=bound,
        images_per_second_per_chip=images_per_step / num_devices / step,
        images_per_second=images_per_step / step,
        mfu=model_flops / (step * chip.peak_bf16_flops),
    )


_OP_NAME = re.compile(r'op_name="([^"]*)"')


def matmul_dtypes(hlo_text: str) -> dict[str, Any]:
    """Convolutions and dots of an optimised HLO module by operand and result dtype.

    Returns {"counts": {"bf16,bf16->f32": n, ...}, "f32_ops": [op names]}: the second lists the
    source ops (JAX `op_name` metadata) of the matmuls with a float32 operand, the ones that run
    at a fraction of the bf16 rate or move twice the bytes in a bfloat16 step.
    """
    shapes, matmuls = {}, []
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, shape, opcode, rest = match.groups()
        shapes[name] = shape
        if opcode in ("convolution", "dot"):
            operands = re.findall(r"%([\w.\-]+)", rest.split(")")[0])[:2]
            op_name = _OP_NAME.search(rest)
            matmuls.append((shape, operands, op_name.group(1) if op_name else "?"))
    counts: dict[str, int] = collections.Counter()
    f32_ops = []
    for shape, operands, op_name in matmuls:
        dtypes = [shapes.get(o, "?").lstrip("(").split("[")[0] for o in operands]
        counts[f"{','.join(dtypes)}->{shape.lstrip('(').split('[')[0]}"] += 1
        if "f32" in dtypes:
            f32_ops.append(op_name)
    return {"counts": dict(counts), "f32_ops": sorted(set(f32_ops))}
