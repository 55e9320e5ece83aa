"""Whether and how this process joins a multi-host JAX run (DESIGN.md "Multi-host", issue 7.6).

`python -m seqjepa_jax.main` calls `decide` then `initialize`. The decision, logged with its
reason, is taken in this order:

1. `--distributed` / `--nodistributed` on the command line;
2. `--coordinator_address` (with `--num_processes`, `--process_id`): explicit cluster flags;
3. `SEQJEPA_DISTRIBUTED=1` / `0` in the environment;
4. `JAX_COORDINATOR_ADDRESS` set (JAX reads it, with the process count and id flags);
5. SLURM: inside an `srun` step (`SLURM_STEP_ID`) with `SLURM_NTASKS` > 1 (JAX detects the rest);
6. otherwise a single process. Multi-host TPU VMs are detected by JAX itself once initialisation
   is asked for, so `experiments/launch_tpu_pod.sh` passes `--distributed`.

Deliberately pure Python without a JAX import: `main` must set `XLA_FLAGS` before JAX loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from absl import logging


def decide(
    flag: bool | None,
    environ: Mapping[str, str],
    *,
    coordinator_address: str | None = None,
) -> tuple[bool, str]:
    """(initialise jax.distributed?, the reason, for the log) from flags and environment."""
    if flag is not None:
        return flag, f"--{'' if flag else 'no'}distributed given"
    if coordinator_address:
        return True, f"--coordinator_address={coordinator_address} given"
    explicit = environ.get("SEQJEPA_DISTRIBUTED")
    if explicit in ("0", "1"):
        return explicit == "1", f"SEQJEPA_DISTRIBUTED={explicit}"
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True, f"JAX_COORDINATOR_ADDRESS={environ['JAX_COORDINATOR_ADDRESS']}"
    tasks = environ.get("SLURM_NTASKS", "")
    if "SLURM_STEP_ID" in environ and tasks.isdigit() and int(tasks) > 1:
        return True, f"SLURM step with SLURM_NTASKS={tasks}"
    return False, "no --distributed flag and no multi-process environment found"


def initialize(
    flag: bool | None,
    environ: Mapping[str, str],
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Calls `jax.distributed.initialize` if `decide` says so; returns whether it did."""
    enabled, reason = decide(flag, environ, coordinator_address=coordinator_address)
    if not enabled:
        logging.info("Single-process run (%s; pass --distributed for multi-host).", reason)
        return False
    kwargs: dict[str, Any] = {
        "coordinator_address": coordinator_address or None,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    logging.info(
        "Initialising multi-host JAX (%s): jax.distributed.initialize(%s).", reason, kwargs
    )
    import jax

    jax.distributed.initialize(**kwargs)
    logging.info(
        "Process %d of %d, %d local devices.",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
    )
    return True
