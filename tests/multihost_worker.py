"""One process of a multi-host CPU run: 3 train steps, each host feeding its own batch slice.

Started by test_multihost.py as `python multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT`.
Hosts talk through `jax.distributed` (gloo collectives on CPU); every host converts its local
slice with `sharding.global_batch`, as the input pipeline does.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np

process_id, num_processes, port, out = (
    int(sys.argv[1]),
    int(sys.argv[2]),
    sys.argv[3],
    sys.argv[4],
)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_disable_most_optimizations", True)
if num_processes > 1:
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}",
        num_processes=num_processes,
        process_id=process_id,
    )

sys.path.insert(0, os.path.dirname(__file__))
from tiny import sharded_trainer, tiny_batch  # noqa: E402

from seqjepa_jax import sharding  # noqa: E402

GLOBAL_BATCH = 16


def main() -> None:
    assert jax.process_count() == num_processes
    mesh = sharding.make_mesh()
    state, step = sharded_trainer(mesh)
    local = GLOBAL_BATCH // num_processes
    losses = []
    for i in range(3):
        batch = tiny_batch(batch=GLOBAL_BATCH, seed=i)
        mine = {k: v[process_id * local : (process_id + 1) * local] for k, v in batch.items()}
        state, metrics = step(state, sharding.global_batch(mine, mesh))
        losses.append(float(metrics["loss"]))
    encoder = np.concatenate(
        [np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params["model"]["encoder"]))]
    )
    np.savez(out, losses=np.asarray(losses), encoder=encoder)


if __name__ == "__main__":
    main()
