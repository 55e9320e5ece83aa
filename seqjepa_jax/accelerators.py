"""The accelerator chips the library plans for, and the slice topologies that name them.

One table (`CHIPS`) holds every number the ahead-of-time planner (`aot.py`, `roofline.py`) uses:
peak bf16 FLOP/s, HBM capacity and bandwidth, and the chip's inter-chip-interconnect (ICI)
bandwidth, each with the public page it comes from. A topology name is the one
`jax.experimental.topologies.get_topology_desc` and the Cloud TPU docs use: `<chip>:<shape>`, e.g.
`v5e:2x2` (v5e-4), `v5p:2x2x1` (v5p-8: 4 chips, 8 TensorCores), `v6e:2x4` (v6e-8); GPUs are
`<gpu>:<count>` on one host, e.g. `h100:8`.

ICI model (`all_reduce_bytes_per_s`): Google publishes, per generation, either the bidirectional
ICI bandwidth per chip or the all-reduce bandwidth per Pod; where both are given (v5e, v6e) the
all-reduce bandwidth per chip (Pod figure / Pod chips) is exactly half the bidirectional per-chip
figure, so the planner uses that half for every chip.
"""

from __future__ import annotations

import dataclasses
import math
import re

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """Public per-chip figures of one accelerator generation.

    Attributes:
      name: the topology prefix (`v5e`, `v5p`, ...).
      device_kind: what JAX reports as `device.device_kind` for it.
      peak_bf16_flops: dense bf16 matrix-unit peak, FLOP/s per chip.
      hbm_bytes: HBM capacity per chip (bytes; the figure the docs list as usable).
      hbm_bytes_per_s: HBM bandwidth per chip.
      ici_bidirectional_bytes_per_s: inter-chip interconnect bandwidth per chip, both directions.
      chip_config_name: libtpu's chip configuration (`megacore`: one JAX device per chip on
        chips with two TensorCores, as a real v4 / v5p VM presents them).
      chips_per_host: chips per TPU VM (one JAX process each) in multi-host slices.
      max_single_host_chips: the largest slice served by one VM (v5e/v6e: 8 chips, 2x4).
      source: the page the figures come from.
      platform: "tpu", or "cuda" for the GPUs (compiled deviceless by `compile_plan`).
    """

    name: str
    device_kind: str
    peak_bf16_flops: float
    hbm_bytes: int
    hbm_bytes_per_s: float
    ici_bidirectional_bytes_per_s: float
    chip_config_name: str
    chips_per_host: int
    max_single_host_chips: int
    source: str
    platform: str = "tpu"

    @property
    def all_reduce_bytes_per_s(self) -> float:
        """Per-chip ring all-reduce bandwidth: half the bidirectional ICI (module docstring)."""
        return self.ici_bidirectional_bytes_per_s / 2


CHIPS: dict[str, Chip] = {
    # https://docs.cloud.google.com/tpu/docs/v4 : "Peak compute per chip 275 teraflops (bf16)",
    # "HBM2 capacity and bandwidth 32 GiB, 1200 GBps", "All-reduce bandwidth per Pod 1.1 PB/s"
    # over "TPU Pod size 4096 chips" = 268.6 GB/s per chip, i.e. 537 GB/s bidirectional (the page
    # gives no per-chip ICI figure; the Pod all-reduce figure is converted as for v5e/v6e).
    "v4": Chip(
        name="v4",
        device_kind="TPU v4",
        peak_bf16_flops=275e12,
        hbm_bytes=32 * GIB,
        hbm_bytes_per_s=1200e9,
        ici_bidirectional_bytes_per_s=2 * 1.1e15 / 4096,
        chip_config_name="megacore",
        chips_per_host=4,
        max_single_host_chips=4,
        source="https://docs.cloud.google.com/tpu/docs/v4",
    ),
    # https://docs.cloud.google.com/tpu/docs/v5e : "Peak compute per chip (bf16) 197 TFLOPs",
    # "HBM capacity per chip 16 GiB", "HBM bandwidth per chip 819 GBps", "Bidirectional
    # inter-chip interconnect (ICI) bandwidth (per chip) 400 GBps" (and "All-reduce bandwidth per
    # Pod 51.2 TB/s" / 256 chips = 200 GB/s = 400 / 2), "Chips per host 8".
    "v5e": Chip(
        name="v5e",
        device_kind="TPU v5 lite",
        peak_bf16_flops=197e12,
        hbm_bytes=16 * GIB,
        hbm_bytes_per_s=819e9,
        ici_bidirectional_bytes_per_s=400e9,
        chip_config_name="default",
        chips_per_host=4,
        max_single_host_chips=8,
        source="https://docs.cloud.google.com/tpu/docs/v5e",
    ),
    # https://docs.cloud.google.com/tpu/docs/v5p-training : "Peak compute per chip (BF16) 459",
    # "HBM capacity per chip (GiB) 95" (96 GiB physical, 95 allocatable), "HBM bandwidth per chip
    # (GBps) 2765", "Bidirectional inter-chip interconnect (ICI) bandwidth per chip (GBps) 1200";
    # 2x2x1 = 4 chips on 1 host, 2x2x2 = 8 chips on 2 hosts.
    "v5p": Chip(
        name="v5p",
        device_kind="TPU v5",
        peak_bf16_flops=459e12,
        hbm_bytes=95 * GIB,
        hbm_bytes_per_s=2765e9,
        ici_bidirectional_bytes_per_s=1200e9,
        chip_config_name="default",
        chips_per_host=4,
        max_single_host_chips=4,
        source="https://docs.cloud.google.com/tpu/docs/v5p-training",
    ),
    # https://docs.cloud.google.com/tpu/docs/v6e : "Peak compute per chip (bf16) 918 TFLOPs",
    # "HBM capacity per chip 32 GB", "HBM bandwidth per chip 1638 GBps", "Bidirectional
    # inter-chip interconnect (ICI) bandwidth (per chip) 800 GBps" ("All-reduce bandwidth per Pod
    # 102.4 TB/s" / 256 = 400 GB/s = 800 / 2); 2x4 = 8 chips on one VM (v6e-8), larger slices
    # use 4-chip VMs (ct6e-standard-4t).
    "v6e": Chip(
        name="v6e",
        device_kind="TPU v6 lite",
        peak_bf16_flops=918e12,
        hbm_bytes=32 * 10**9,
        hbm_bytes_per_s=1638e9,
        ici_bidirectional_bytes_per_s=800e9,
        chip_config_name="default",
        chips_per_host=4,
        max_single_host_chips=8,
        source="https://docs.cloud.google.com/tpu/docs/v6e",
    ),
    # https://www.nvidia.com/en-us/data-center/h100/ (H100 SXM): "BF16 Tensor Core 1,979
    # teraFLOPS" with sparsity, i.e. 989.5 dense; "GPU memory 80GB"; "GPU memory bandwidth
    # 3.35TB/s"; "NVIDIA NVLink: 900GB/s" (bidirectional); HGX boards hold 8 GPUs per host.
    "h100": Chip(
        name="h100",
        device_kind="NVIDIA H100 80GB HBM3",
        peak_bf16_flops=1979e12 / 2,
        hbm_bytes=80 * 10**9,
        hbm_bytes_per_s=3.35e12,
        ici_bidirectional_bytes_per_s=900e9,
        chip_config_name="",
        chips_per_host=8,
        max_single_host_chips=8,
        source="https://www.nvidia.com/en-us/data-center/h100/",
        platform="cuda",
    ),
    # https://www.nvidia.com/en-us/data-center/h200/ (H200 SXM): the H100's compute ("BF16
    # Tensor Core 1,979 TFLOPS" with sparsity), "GPU Memory 141GB", "GPU Memory Bandwidth
    # 4.8TB/s", "NVIDIA NVLink: 900GB/s".
    "h200": Chip(
        name="h200",
        device_kind="NVIDIA H200",
        peak_bf16_flops=1979e12 / 2,
        hbm_bytes=141 * 10**9,
        hbm_bytes_per_s=4.8e12,
        ici_bidirectional_bytes_per_s=900e9,
        chip_config_name="",
        chips_per_host=8,
        max_single_host_chips=8,
        source="https://www.nvidia.com/en-us/data-center/h200/",
        platform="cuda",
    ),
}

_TOPOLOGY = re.compile(r"^(v\d+[a-z]*|[a-z]\d+):(\d+(?:x\d+){0,2})$")


@dataclasses.dataclass(frozen=True)
class Topology:
    """A parsed slice topology: the chip, the chip grid and how many chips/hosts it has."""

    name: str
    chip: Chip
    shape: tuple[int, ...]

    @property
    def num_chips(self) -> int:
        """Chips in the slice (the product of the grid)."""
        return math.prod(self.shape)

    @property
    def num_hosts(self) -> int:
        """TPU VMs (JAX processes) of the slice as Cloud TPU provisions it (`Chip` docstring)."""
        if self.num_chips <= self.chip.max_single_host_chips:
            return 1
        return self.num_chips // self.chip.chips_per_host

    @property
    def chips_per_host_bounds(self) -> tuple[int, int, int]:
        """libtpu's per-host chip grid that yields `num_hosts` processes."""
        if self.num_hosts == 1:
            padded = tuple(self.shape) + (1,) * (3 - len(self.shape))
            return padded[0], padded[1], padded[2]
        return (2, 2, 1)


def parse_topology(name: str) -> Topology:
    """`v5e:2x2` -> Topology; ValueError naming the accepted chips and form before any compile."""
    match = _TOPOLOGY.match(name.strip())
    known = ", ".join(sorted(CHIPS))
    if not match:
        raise ValueError(
            f"--topology={name!r} is not of the form CHIP:AxB[xC]; use e.g. v5e:2x2 (v5e-4), "
            f"v5p:2x2x1 (v5p-8), v6e:2x4 (v6e-8) or h100:8; chips: {known}."
        )
    chip_name, shape_text = match.groups()
    if chip_name not in CHIPS:
        raise ValueError(
            f"--topology={name!r}: unknown chip {chip_name!r}; use one of {known} "
            "(seqjepa_jax/accelerators.py holds their figures)."
        )
    shape = tuple(int(part) for part in shape_text.split("x"))
    if min(shape) < 1:
        raise ValueError(f"--topology={name!r}: every dimension must be >= 1.")
    chip = CHIPS[chip_name]
    if (chip.platform == "tpu") != (len(shape) > 1) or (
        chip.platform != "tpu" and shape[0] > chip.max_single_host_chips
    ):
        raise ValueError(
            f"--topology={name!r}: TPU slices are a chip grid (v5e:2x2, v5p:2x2x1); GPUs are "
            f"a count of GPUs on one host, at most {chip.max_single_host_chips} (h100:8)."
        )
    return Topology(name=f"{chip_name}:{shape_text}", chip=CHIPS[chip_name], shape=shape)
