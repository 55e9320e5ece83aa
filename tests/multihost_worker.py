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
from tiny import tiny_batch, tiny_model, tiny_probes  # noqa: E402

from seqjepa_jax import optimizers, schedules, sharding  # noqa: E402
from seqjepa_jax.state import init_train_state  # noqa: E402
from seqjepa_jax.train_step import jit_train_step, make_train_step  # noqa: E402

GLOBAL_BATCH = 16


def main() -> None:
    assert jax.process_count() == num_processes
    mesh = sharding.make_mesh()
    model = tiny_model()
    probes = tiny_probes(model)
    lr = schedules.learning_rate_schedule(
        "constant",
        base_lr=1e-3,
        initial_lr=0.0,
        warmup_epochs=0,
        total_epochs=1,
        steps_per_epoch=3,
    )
    tau = schedules.ema_decay_schedule("step", tau_base=0.9, total_epochs=1, steps_per_epoch=3)
    opt = optimizers.build_optimizer("adam", lr)
    state = jax.jit(
        lambda k: init_train_state(
            k, model, probes, opt, num_obs_views=3, image_shape=(16, 16, 3), use_ema=True
        ),
        out_shardings=sharding.replicated(mesh),
    )(jax.random.PRNGKey(0))
    step = jit_train_step(make_train_step(model, probes, opt, lr, tau), mesh)
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
