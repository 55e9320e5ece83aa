"""Device mesh and shardings for the data-parallel step (DESIGN.md: one `jax.jit`, no pmap).

One mesh axis, 'data', over every device of every host. The train state is replicated, the batch
is split along its leading axis. Under `jax.jit` on such global arrays, reductions over the batch
(the BatchNorm moments, the loss mean) are global: the compiler inserts the all-reduces, so BN is
SyncBN without any `axis_name` in the layers.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D ('data',) mesh over the given devices (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device (the train state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over the 'data' axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Turns this host's slice of the batch into global arrays sharded on 'data'.

    Each host passes its own `global_batch / process_count` examples; the result has the global
    batch size along axis 0.
    """
    sharding = batch_sharded(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in local_batch.items()
    }
