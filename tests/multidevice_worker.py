"""Runs 3 train steps on a 1-device and an 8-device CPU mesh and saves both results.

Started as a subprocess by test_multidevice.py, because the host device count must be forced
(XLA_FLAGS) before JAX is imported. Usage: python multidevice_worker.py OUT.npz, or
python multidevice_worker.py OUT.npz METHOD... for the self-supervised loss and its gradient of
each baseline METHOD on both meshes (global-batch losses: NT-Xent, VICReg).
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
from tiny import load_config, sharded_trainer, tiny_batch  # noqa: E402

from seqjepa_jax import methods, sharding  # noqa: E402


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


def flat_tree(tree) -> dict[str, np.ndarray]:
    return {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def loss_and_gradient(method: str, devices) -> tuple[float, dict[str, np.ndarray]]:
    """The SSL loss of `method` (tiny config) and its gradient on a 16-sequence global batch."""
    config = load_config("default", "tiny")
    config.method = method
    config.data.image_size = 16
    model = methods.build_method_model(config, 4)
    batch = tiny_batch(batch=16, num_views=methods.training_views(config), seed=1)
    variables = model.init(
        jax.random.PRNGKey(0),
        batch["views"],
        batch["actions"],
        None,
        train=False,
        method=model.step_outputs,
    )
    mesh = sharding.make_mesh(devices)
    replicated = sharding.replicated(mesh)

    @jax.jit
    def loss_fn(params, batch_stats, batch):
        def loss(p):
            out, _ = model.apply(
                {"params": p, "batch_stats": batch_stats},
                batch["views"],
                batch["actions"],
                None,
                train=True,
                mutable=["batch_stats"],
                method=model.step_outputs,
            )
            return out["loss"]

        return jax.value_and_grad(loss)(params)

    params = jax.device_put(variables["params"], replicated)
    batch_stats = jax.device_put(variables["batch_stats"], replicated)
    loss, grads = loss_fn(params, batch_stats, sharding.global_batch(batch, mesh))
    return float(loss), flat_tree(grads)


def main(out: str, baseline_methods: list[str]) -> None:
    assert jax.device_count() == 8, jax.devices()
    if baseline_methods:
        arrays = {}
        for method in baseline_methods:
            for name, devices in (("one", jax.devices()[:1]), ("eight", jax.devices())):
                loss, grads = loss_and_gradient(method, devices)
                arrays[f"{method}/{name}/loss"] = np.asarray(loss)
                arrays.update({f"{method}/{name}/grad{k}": v for k, v in grads.items()})
        np.savez(out, **arrays)
        return
    losses_1, flat_1 = run(jax.devices()[:1])
    losses_8, flat_8 = run(jax.devices())
    arrays = {"losses_1": losses_1, "losses_8": losses_8}
    arrays.update({f"one{k}": v for k, v in flat_1.items()})
    arrays.update({f"eight{k}": v for k, v in flat_8.items()})
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
