"""Frozen-feature extraction from a trained model of any method, once per evaluation.

For each sequence of an evaluation batch the model runs in inference mode (BN running statistics,
no dropout) by default. `bn_train_mode=True` reproduces the official offline probing (Q8): the
frozen model runs in train mode, so BN normalises with the statistics of the evaluation batch (all
B·V views for the encoder) and dropout is active (fixed keys, so features are reproducible); the
updated running statistics are discarded, so nothing that is saved changes. (Officially they also
drift during probe training; here the features are extracted once.) It returns:

- `agg_{m}`: the aggregate `agg_out` from the first m observation views and their actions, for every
  m in M_val (the paper's M_val sweep; spec §7.4, §12.2), for methods with an aggregate
  (seq-JEPA). The aggregator has no positional embedding, so any m works with weights trained
  at M_tr;
- `z`: encoder embeddings of every view of the sequence (N, V, D); consecutive views give the
  pairs of the relative-rotation probes (spec §7.1) and single views the individual-rotation probe;
- the online probes' outputs on the same data (`online_logits`, `online_action`), so validation of
  the probes trained inside the step costs no second pass (the class probe reads what it was
  trained on: the aggregate of M_tr views, or a baseline's view-0 embedding);
- `label`, `actions` (N, V-1, d_a: view j → j+1) and `latents` (N, V, 7: absolute poses).
Padding rows (mask 0) are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from seqjepa_jax.models.heads import OnlineProbes


def config_feature_fn(  # noqa: ANN201
    config: ml_collections.ConfigDict,
    model: nn.Module,
    probes: OnlineProbes,
    *,
    bn_train_mode: bool = False,
):
    """`make_feature_fn` for the run `config` describes: the aggregate sizes of its method
    (`methods.aggregate_m_values`: M_val for seq-JEPA, none for the baselines) and its M_tr. The
    one place the main job, the evaluation program, the TPU planner and the Table 1 study build it.
    """
    from seqjepa_jax import methods

    return make_feature_fn(
        model,
        probes,
        methods.aggregate_m_values(config),
        config.train.seq_len,
        bn_train_mode=bn_train_mode,
    )


def make_feature_fn(  # noqa: ANN201
    model: nn.Module,
    probes: OnlineProbes,
    m_values: Sequence[int],
    m_tr: int,
    *,
    bn_train_mode: bool = False,
):
    """Returns a jitted (params, batch_stats, batch) -> dict of features (see module docstring).

    For a method with an aggregate, the online class probe sees the aggregate of `m_tr` views,
    the length it was trained on; otherwise view 0's embedding and `m_values` must be empty.
    `bn_train_mode` is the official train-mode probing of Q8 (module docstring).
    """
    if model.has_aggregate:
        m_values = tuple(sorted(set(int(m) for m in m_values) | {int(m_tr)}))
    elif m_values:
        raise ValueError(f"{type(model).__name__} has no aggregate to probe at M_val={m_values}.")

    def apply(variables: dict, *args: jax.Array, method: object, stream: int) -> object:
        if not bn_train_mode:
            return model.apply(variables, *args, train=False, method=method)
        out, _discarded_stats = model.apply(
            variables,
            *args,
            train=True,
            method=method,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.PRNGKey(stream)},
        )
        return out

    @jax.jit
    def features(params: dict, batch_stats: dict, batch: dict) -> dict[str, jax.Array]:
        variables = {"params": params["model"], "batch_stats": batch_stats}
        views, actions = batch["views"], batch["actions"]
        z = apply(variables, views, method=model.encode, stream=0)
        out = {"z": z}
        for m in m_values:
            agg = apply(
                variables, z[:, :m], actions[:, :m], method=model.aggregate_embeddings, stream=m
            )
            out[f"agg_{m}"] = agg["agg_out"]
        class_features = out[f"agg_{m_tr}"] if model.has_aggregate else z[:, 0]
        logits, action = probes.apply(
            {"params": params["probes"]},
            class_features,
            jnp.concatenate([z[:, 0], z[:, 1]], axis=-1),
        )
        out.update(online_logits=logits, online_action=action)
        return out

    return features


def extract_features(
    feature_fn,  # noqa: ANN001
    params: dict,
    batch_stats: dict,
    batches: Iterable[dict[str, jax.Array]],
) -> dict[str, np.ndarray]:
    """Runs `feature_fn` over global batches and concatenates the real (mask = 1) rows on host."""
    chunks: dict[str, list[np.ndarray]] = {}
    for batch in batches:
        out = dict(feature_fn(params, batch_stats, batch))
        out.update(
            label=batch["label"],
            actions=batch["actions"],
            latents=batch["latents"],
            mask=batch["mask"],
        )
        out = {k: to_host(v) for k, v in out.items()}
        keep = out.pop("mask") > 0
        for key, value in out.items():
            chunks.setdefault(key, []).append(value[keep])
    return {key: np.concatenate(values) for key, values in chunks.items()}


def to_host(x: jax.Array) -> np.ndarray:
    """A global array as one numpy array on every host (gathers across hosts when needed)."""
    if jax.process_count() > 1:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
