"""Runs 3 train steps on a 1-device and an 8-device CPU mesh and saves both results.

Started as a subprocess by test_multidevice.py, because the host device count must be forced
(XLA_FLAGS) before JAX is imported. Usage: python multidevice_worker.py OUT.npz
"""

from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)

sys.path.insert(0, os.path.dirname(__file__))
from tiny import sharded_trainer, tiny_batch  # noqa: E402

from seqjepa_jax import sharding  # noqa: E402


def run(devices):
    mesh = sharding.make_mesh(devices)
    state, step = sharded_trainer(mesh)
    losses = []
    for i in range(3):
        state, metrics = step(state, sharding.global_batch(tiny_batch(batch=16, seed=i), mesh))
        losses.append(float(metrics["loss"]))
    leaves = {
        "params": state.params,
        "batch_stats": state.batch_stats,
        "target_params": state.target_params,
        "target_batch_stats": state.target_batch_stats,
    }
    flat = {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(leaves)[0]
    }
    return np.asarray(losses), flat


def main(out: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    losses_1, flat_1 = run(jax.devices()[:1])
    losses_8, flat_8 = run(jax.devices())
    arrays = {"losses_1": losses_1, "losses_8": losses_8}
    arrays.update({f"one{k}": v for k, v in flat_1.items()})
    arrays.update({f"eight{k}": v for k, v in flat_8.items()})
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
