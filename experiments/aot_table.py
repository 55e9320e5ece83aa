"""The tables of docs/accelerators.md from the AOT grid (experiments/aot_grid.py), measured cells
and extrapolated ones apart.

  python experiments/aot_table.py experiments/results/aot_grid.jsonl \
      [--host experiments/results/bench_input_host.jsonl]

Measured: every cell of the grid file. Extrapolated (marked "~"): per-device HBM need, flops and
HBM bytes are close to affine in the per-chip batch b (the model and optimiser are replicated, the
activations scale with b), so two compiles of a recipe on one chip type at two per-chip batches
(v5e-4 at B/4 and v5e-16 at B/16) give a line per quantity; the line gives the largest per-chip
batch whose need stays under the chip's HBM, and the quantities of a slice that was not compiled.
Another chip type is taken to need what v5e needs at the same per-chip batch, scaled by the ratio
measured on 3DIEBench, the recipe compiled on every chip type (and float32 likewise, by the
3DIEBench float32 / bfloat16 ratio on v5e); the roofline then uses that chip's
figures (seqjepa_jax/accelerators.py), and the collectives keep the bytes of the recipe's compiled
step of the same dtype where there is one (the gradient and BatchNorm all-reduces do not depend on
the batch; the bf16 step all-reduces bf16 gradients).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np

from seqjepa_jax import accelerators, roofline

GiB = 2**30
RECIPE_ORDER = (
    "default", "default_gpu", "3diebench", "cifar100", "tinyimagenet", "stl10", "imagenet",
)  # fmt: skip
SLICES = ("v5e:2x2", "v5e:4x4", "v5p:2x2x1", "v6e:2x4")
SLICE_NAMES = {"v5e:2x2": "v5e-4", "v5e:4x4": "v5e-16", "v5p:2x2x1": "v5p-8", "v6e:2x4": "v6e-8"}
# configs/default.py:gpu runs exactly the 3DIEBench step (model, views, shapes) at batch 256.
ALIASES = {"default_gpu": ("3diebench", 256)}
QUANTITIES = ("hbm_bytes_per_device", "flops_per_device", "bytes_per_device")


# What JAX's default TPU eigensolver (QDWH) added to a step over the Jacobi solver used since, for
# the 512 x 512 Gram matrix of the effective rank (experiments/results/aot_effective_rank.jsonl:
# the same step compiled with both; flops, HBM bytes, and temporaries + generated code).
QDWH_EXTRA = {
    "flops_per_device": 45_530_869_760 - 37_929_193_472,
    "bytes_per_device": 2_476_809_728 - 2_161_972_224,
    "hbm_bytes_per_device": 313_531_904 - 234_167_808,
}
QDWH_F32_MATMULS = 300  # a step compiled with QDWH has ~345 float32 matmuls, with Jacobi ~4


def compiled_with_qdwh(record: dict) -> bool:
    """True for cells compiled before the Jacobi eigensolver (their f32 matmul count)."""
    counts = record.get("matmul_dtypes", {}).get("counts")
    return counts is None or counts.get("f32,f32->f32", 0) > QDWH_F32_MATMULS


def load(path: str) -> list[dict]:
    """The successful cells of a grid file, with QDWH-era cells brought to the current step by
    subtracting `QDWH_EXTRA` (marked `qdwh_corrected`)."""
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    records = [r for r in records if "error" not in r and not r.get("batch_override")]
    for r in records:
        if r.get("flops_per_device") and compiled_with_qdwh(r):
            for q, extra in QDWH_EXTRA.items():
                r[q] -= extra
            top = accelerators.parse_topology(r["topology"])
            rl = roofline.roofline(
                flops_per_device=r["flops_per_device"],
                bytes_per_device=r["bytes_per_device"],
                collective_seconds_per_step=r["collective_seconds"],
                chip=top.chip,
                num_devices=top.num_chips,
                images_per_step=r["global_batch"] * r["views_per_sequence"],
            )
            r.update(
                roofline_step_seconds=rl.step_seconds,
                images_per_second=rl.images_per_second,
                images_per_second_per_chip=rl.images_per_second_per_chip,
                mfu=rl.mfu,
                bound=rl.bound,
                qdwh_corrected=True,
            )
    return records


def affine_models(records: list[dict]) -> dict[tuple, dict[str, tuple[float, float]]]:
    """{(recipe, chip, dtype): {quantity: (slope, intercept)}} from >= 2 per-chip batches."""
    points: dict[tuple, dict[int, dict]] = {}
    for r in records:
        if r.get("fits") and r.get("flops_per_device"):
            key = (r["recipe"], r["chip"], r["dtype"])
            points.setdefault(key, {})[r["per_device_batch"]] = r
    models = {}
    for key, by_batch in points.items():
        if len(by_batch) < 2:
            continue
        batches = sorted(by_batch)
        models[key] = {
            q: tuple(np.polyfit(batches, [by_batch[b][q] for b in batches], 1)) for q in QUANTITIES
        }
    return models


def chip_ratios(records: list[dict], models: dict) -> dict[tuple[str, str], dict[str, float]]:
    """{(chip, dtype): {quantity: measured / v5e bf16 line}} from 3DIEBench compiles: another
    chip's bf16 step, or a float32 step on v5e (the bf16 -> fp32 factor)."""
    ratios = {}
    for r in records:
        key = ("3diebench", "v5e", "bfloat16")
        if r["recipe"] != "3diebench" or key not in models:
            continue
        if (r["chip"] == "v5e") == (r["dtype"] == "bfloat16"):
            continue
        line = models[key]
        ratios[(r["chip"], r["dtype"])] = {
            q: r[q] / (line[q][0] * r["per_device_batch"] + line[q][1]) for q in QUANTITIES
        }
    return ratios


def extrapolate(recipe: str, topology: str, dtype: str, sample: dict, models, ratios) -> dict:
    """An estimated cell (module docstring), or None without a line for the recipe.

    `sample` is any compiled cell of the recipe: its global batch, views and collectives.
    """
    top = accelerators.parse_topology(topology)
    same = {q: 1.0 for q in QUANTITIES}
    line = models.get((recipe, "v5e", dtype))
    if line is None and dtype == "float32":  # the bf16 line, times the measured fp32 factor
        line, dtype_ratio = models.get((recipe, "v5e", "bfloat16")), ratios.get(("v5e", dtype))
    else:
        dtype_ratio = same
    chip_ratio = same if top.chip.name == "v5e" else ratios.get((top.chip.name, "bfloat16"))
    if line is None or chip_ratio is None or dtype_ratio is None:
        return None
    ratio = {q: chip_ratio[q] * dtype_ratio[q] for q in QUANTITIES}
    b = sample["global_batch"] // top.num_chips
    est = {q: ratio[q] * (line[q][0] * b + line[q][1]) for q in QUANTITIES}
    collectives = [
        roofline.Collective(kind, c["bytes"] // max(c["count"], 1), top.num_chips)
        for kind, c in sample["collectives"].items()
        for _ in range(c["count"])
    ]
    seconds = sum(
        roofline.collective_seconds(c, top.chip.all_reduce_bytes_per_s) for c in collectives
    )
    rl = roofline.roofline(
        flops_per_device=est["flops_per_device"],
        bytes_per_device=est["bytes_per_device"],
        collective_seconds_per_step=seconds,
        chip=top.chip,
        num_devices=top.num_chips,
        images_per_step=sample["global_batch"] * sample["views_per_sequence"],
    )
    slope, intercept = (ratio["hbm_bytes_per_device"] * v for v in line["hbm_bytes_per_device"])
    return {
        **est,
        "per_device_batch": b,
        "fits": est["hbm_bytes_per_device"] <= top.chip.hbm_bytes,
        "max_per_device_batch": int((top.chip.hbm_bytes - intercept) // slope),
        "images_per_second": rl.images_per_second,
        "images_per_second_per_chip": rl.images_per_second_per_chip,
        "mfu": rl.mfu,
        "bound": rl.bound,
        "collectives": sample["collectives"],
    }


def _row(recipe: str, topology: str, dtype: str, cell: dict, measured: bool, max_b) -> str:
    mark = ("" if measured else "~") + ("†" if cell.get("qdwh_corrected") else "")
    compile_s = "/".join(f"{v:.0f}" for v in cell["compile_seconds"].values()) if measured else ""
    coll_mib = sum(c["bytes"] for c in cell["collectives"].values()) / 2**20
    cells = [
        recipe,
        SLICE_NAMES[topology],
        {"bfloat16": "bf16", "float32": "fp32"}[dtype],
        str(cell["per_device_batch"]),
        f"{mark}{cell['hbm_bytes_per_device'] / GiB:.1f}",
        f"{mark}{'yes' if cell['fits'] else 'NO'}",
        f"~{max_b}" if max_b else "?",
        f"{mark}{cell['images_per_second_per_chip']:,.0f}",
        f"{mark}{cell['images_per_second']:,.0f}",
        f"{mark}{100 * cell['mfu']:.0f} %",
        cell["bound"],
        f"{coll_mib:.1f}",
        compile_s,
    ]
    return "| " + " | ".join(cells) + " |"


def table(records: list[dict]) -> str:
    """The markdown table of every recipe x slice x dtype (measured or ~extrapolated)."""
    models = affine_models(records)
    ratios = chip_ratios(records, models)
    measured = {(r["recipe"], r["topology"], r["dtype"]): r for r in records}
    rows = [
        "| recipe | slice | dtype | batch/chip | HBM GiB/chip | fits | max batch/chip | "
        "images/s/chip | images/s/slice | MFU | bound | all-reduce MiB/step | compile s |",
        "|" + "---|" * 13,
    ]
    for recipe in RECIPE_ORDER:
        source, batch = ALIASES.get(recipe, (recipe, None))
        compiled = [r for r in records if r["recipe"] == source and r.get("fits")]
        if not compiled:
            continue
        for dtype in ("bfloat16", "float32"):
            # The collectives of a compiled step of this dtype where there is one: the bf16 step
            # all-reduces bf16 gradients, about half the bytes of the fp32 step's.
            sample = next((r for r in compiled if r["dtype"] == dtype), compiled[0])
            if batch is not None:
                sample = {**sample, "global_batch": batch}
            for topology in SLICES:
                cell = measured.get((recipe, topology, dtype))
                est = extrapolate(source, topology, dtype, sample, models, ratios)
                if cell is None and est is None:
                    continue
                max_b = est["max_per_device_batch"] if est else None
                rows.append(_row(recipe, topology, dtype, cell or est, cell is not None, max_b))
    return "\n".join(rows)


HOST_VCPUS_PER_CHIP = {"v5e": 28, "v5p": 52}  # docs/accelerators.md's chip table


def input_table(records: list[dict], host_path: str) -> str:
    """Host cores per chip each recipe needs at its roofline rate (bench_input host_<recipe>)."""
    with open(host_path) as f:
        host = {}
        for line in f:
            r = json.loads(line)
            host[r["stage"].removeprefix("host_")] = r["views_per_s"]
    rows = [
        "| recipe | host views/s per core | slice | roofline images/s per chip | "
        "cores per chip needed | vCPUs per chip |",
        "|---|---|---|---|---|---|",
    ]

    def order(r: dict) -> tuple[int, int]:
        recipe = (
            RECIPE_ORDER.index(r["recipe"]) if r["recipe"] in RECIPE_ORDER else len(RECIPE_ORDER)
        )
        return recipe, list(SLICES).index(r["topology"]) if r["topology"] in SLICES else len(SLICES)

    for r in sorted(records, key=order):
        if r["dtype"] != "bfloat16" or r["recipe"] not in host or not r.get("fits"):
            continue
        need = r["images_per_second_per_chip"] / host[r["recipe"]]
        vcpus = HOST_VCPUS_PER_CHIP.get(r["chip"], "?")
        rows.append(
            f"| {r['recipe']} | {host[r['recipe']]:,.0f} | {SLICE_NAMES[r['topology']]} | "
            f"{r['images_per_second_per_chip']:,.0f} | {need:.1f} | {vcpus} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid")
    parser.add_argument("--host", default=None, help="bench_input host_<recipe> records")
    args = parser.parse_args(argv)
    records = load(args.grid)
    print(table(records))
    if args.host:
        print()
        print(input_table(records, args.host))


if __name__ == "__main__":
    main()
