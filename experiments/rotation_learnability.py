"""How learnable is relative rotation on the built-in scene, by direct supervision? (issue 9)

A diagnostic for choosing the CPU default's scene, not a seq-JEPA run: the default's encoder
(ResNet, width 16, one block per stage, ImageNet stem) and an MLP head (2 × 256, ReLU) are
trained end to end with the MSE on the relative quaternion of two views of one object (the target
of the relative-rotation probe, spec §7.1), for a fixed number of steps, and scored by R² (both
names, `evaluation/metrics.py`) on every consecutive pair of held-out objects. If even direct
supervision cannot reach a relative-rotation R² on a scene within the CPU budget, a
self-supervised run on it cannot either.

  python experiments/rotation_learnability.py --max_angle 0.785 --fixed_lighting --steps 600

Measured on the 2-core development CPU with this procedure (5000 train / 200 held-out objects,
8 views, 64 px, batch 64, Adam 1e-3, 600 steps, about 2 minutes each; R² uniform / pooled):

| scene | relative-rotation R² |
|---|---|
| 3DIEBench's (±π/2, varying lights) | 0.14 / 0.35 |
| ±π/2, fixed lights | 0.23 / 0.42 |
| ±π/4, varying lights | 0.50 / 0.86 |
| 3DIEBench's with 800 train objects | -0.05 / 0.20 (train R² 0.7: memorised) |
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_angle", type=float, default=math.pi / 2)
    parser.add_argument("--fixed_lighting", action="store_true")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--train_objects", type=int, default=5000)
    parser.add_argument("--eval_objects", type=int, default=200)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from seqjepa_jax.data import procedural
    from seqjepa_jax.data.latents import relative_actions
    from seqjepa_jax.evaluation.probes import r2_scores
    from seqjepa_jax.models.resnet import ResNet

    scene = {"max_angle": args.max_angle, "vary_lighting": not args.fixed_lighting}

    def render(first_id: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.arange(first_id, first_id + count)
        views = procedural.render_objects(ids, args.views, args.image_size, seed=0, **scene)
        return views.images, relative_actions(views.latents, "rot")

    started = time.time()
    train_x, train_y = render(procedural.TRAIN_ID_OFFSET, args.train_objects)
    eval_x, eval_y = render(procedural.VAL_ID_OFFSET, args.eval_objects)
    render_s = time.time() - started

    class PairRegressor(nn.Module):
        @nn.compact
        def __call__(self, a: jax.Array, b: jax.Array, train: bool) -> jax.Array:
            encoder = ResNet(stem="imagenet", width=16, stage_sizes=(1, 1, 1, 1))
            z = encoder(jnp.concatenate([a, b]), train=train)
            h = jnp.concatenate(jnp.split(z, 2), axis=-1)
            for _ in range(2):
                h = nn.relu(nn.Dense(256)(h))
            return nn.Dense(4)(h)

    def normalise(x: jax.Array) -> jax.Array:
        return (x.astype(jnp.float32) / 255.0 - 0.5) / 0.25

    net, tx = PairRegressor(), optax.adam(1e-3)
    variables = net.init(jax.random.PRNGKey(0), normalise(train_x[:2, 0]),
                         normalise(train_x[:2, 1]), False)  # fmt: skip
    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, stats, opt_state, a, b, y):  # noqa: ANN001, ANN202
        def loss(p):  # noqa: ANN001, ANN202
            out, updates = net.apply({"params": p, "batch_stats": stats}, normalise(a),
                                     normalise(b), True, mutable=["batch_stats"])  # fmt: skip
            return jnp.mean((out - y) ** 2), updates["batch_stats"]

        (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, value

    @jax.jit
    def predict(params, stats, a, b):  # noqa: ANN001, ANN202
        return net.apply({"params": params, "batch_stats": stats}, normalise(a), normalise(b),
                         False)  # fmt: skip

    rng = np.random.default_rng(0)
    started = time.time()
    for _ in range(args.steps):
        obj = rng.integers(0, len(train_x), args.batch)
        view = rng.integers(0, args.views - 1, args.batch)
        params, stats, opt_state, _ = step(params, stats, opt_state, train_x[obj, view],
                                           train_x[obj, view + 1], train_y[obj, view])  # fmt: skip
    train_s = time.time() - started
    predictions = np.concatenate(
        [np.asarray(predict(params, stats, eval_x[:, j], eval_x[:, j + 1]))
         for j in range(args.views - 1)]
    )  # fmt: skip
    targets = np.concatenate([eval_y[:, j] for j in range(args.views - 1)])
    record = {**vars(args), **r2_scores(targets, predictions), "render_s": round(render_s, 1),
              "train_s": round(train_s, 1)}  # fmt: skip
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
