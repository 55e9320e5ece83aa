"""The offline evaluation program behind `python -m seqjepa_jax.evaluate` (issue 6, spec §7, §12).

Given a training config and its workdir, `evaluate_checkpoint`:

1. checks the request before anything is built: every M_val must fit the views an object has
   (`resolve_m_val`), the config must be valid, the workdir must hold the step, and the stored
   arrays must have the shapes the config builds (`restore.py`);
2. restores the checkpoint and extracts frozen features once per split (`features.py`): the
   encoder embedding of every view and the aggregate of M_val observation views for each M_val,
   with BN in inference mode, or, with `official_bn_train_mode`, in the official train mode (Q8);
3. fits every probe on the probe-training split and scores it on the held-out split
   (`report.py`, `tasks.py`): the linear classifier on each aggregate and on one view's encoder
   embedding, the relative and individual regressions of the data kind (each R² under its two
   names), k-NN accuracy (`knn.py`), the path-integration probes of each M_val >= 2 (`tasks.py`,
   issue 10), and the online probes;
4. with `ood`, extracts the OOD split too (spec §6.2) and scores every probe of 3, fitted in
   distribution only, on it as well (`ood_*` keys);
5. optionally repeats 2-4 on a randomly initialised model of the same architecture;
6. writes `results.json`, a Markdown table laid out like the paper's Table 1 (`tables.py`) and the
   figures (`plots.py`) into the output folder.

Probes see numpy features only, so no gradient can reach the model, and every probe starts from a
fixed key: a rerun gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from seqjepa_jax import checkpointing, methods, train
from seqjepa_jax.config_checks import validate_config
from seqjepa_jax.data import kinds
from seqjepa_jax.data import latents as latents_lib
from seqjepa_jax.data.datasets import RunData, build_data, check_ood_split
from seqjepa_jax.evaluation import features as features_lib
from seqjepa_jax.evaluation import restore, scoring, tables
from seqjepa_jax.optimizers import build_optimizer
from seqjepa_jax.sharding import make_mesh

DEFAULT_MAX_M_VAL = 8  # the paper's heatmap sweeps M_val = 1..8 (peers_and_numbers.md §3.1)


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """What `evaluate_checkpoint` does beyond the config (the command-line flags).

    Attributes:
      m_val: observation counts of the aggregate probes; None = 1..8, capped by the views per
        object of rendered data.
      step: checkpoint step; None = the newest.
      official_bn_train_mode: features with BN batch statistics and dropout (Q8).
      knn_k: neighbours of the k-NN classifier; None = config.eval.knn_k.
      out_dir: output folder; None = <workdir>/eval.
      compare_random_init: also probe a random init; None = config.eval.compare_random_init.
      plots: write the UMAP / PCA projections and the view strip.
      use_umap: project with umap-learn when installed (else PCA, with a log line).
      heatmap_runs: other runs' evaluation results (workdirs, eval folders or results.json files)
        that join this one in the M_tr × M_val heatmap.
      ood: also score every probe on the OOD split; None = config.eval.ood.
      path_integration: fit the path-integration probes (where the actions compose).
    """

    m_val: tuple[int, ...] | None = None
    step: int | None = None
    official_bn_train_mode: bool = False
    knn_k: int | None = None
    out_dir: str | None = None
    compare_random_init: bool | None = None
    plots: bool = True
    use_umap: bool = True
    heatmap_runs: tuple[str, ...] = ()
    ood: bool | None = None
    path_integration: bool = True


def max_observation_views(config: ml_collections.ConfigDict) -> int | None:
    """The largest M_val the data allows (views per object - 1), or None when unbounded.

    Rendered objects have a fixed number of views; image datasets make as many views as asked.
    With `config.eval.ood` the OOD objects' views cap it too (3DIEBench-OOD: 4, spec §6.2).
    """
    if kinds.dataset_kind(config.data.name) != "views":
        return None
    views = int(config.data.views_per_object)
    if config.eval.ood:
        views = min(views, kinds.ood_views_per_object(config.data))
    return views - 1


def resolve_m_val(
    config: ml_collections.ConfigDict, requested: tuple[int, ...] | None
) -> tuple[int, ...]:
    """The M_val list to evaluate; ValueError when one needs more views than an object has.

    An aggregate of M observations needs M + 1 views (the M-th action leads to view M).
    """
    limit = max_observation_views(config)
    if requested is None:
        top = DEFAULT_MAX_M_VAL if limit is None else min(DEFAULT_MAX_M_VAL, limit)
        return tuple(range(1, top + 1))
    m_val = tuple(sorted(set(int(m) for m in requested)))
    if not m_val or m_val[0] < 1:
        raise ValueError(f"--m_val={list(requested)} must list observation counts >= 1.")
    if limit is not None and m_val[-1] > limit:
        views = f"config.data.views_per_object={config.data.views_per_object} views"
        if limit + 1 < config.data.views_per_object:
            views = f"{limit + 1} views in its OOD split (--ood, spec §6.2)"
        raise ValueError(
            f"--m_val asks for M_val={m_val[-1]} observation views, but each object of "
            f"config.data.name={config.data.name!r} has {views} and an aggregate of M "
            f"observations needs M + 1; use M_val <= {limit}."
        )
    return m_val


def evaluation_config(
    config: ml_collections.ConfigDict, m_val: tuple[int, ...]
) -> ml_collections.ConfigDict:
    """A copy of `config` whose evaluation extracts enough views for `m_val` and M_tr."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.eval.m_val = tuple(m_val)
    needed = max(max(m_val), config.train.seq_len, 2) + 1
    config.eval.num_views = max(int(config.eval.num_views), needed)
    return config


def load_states(
    config: ml_collections.ConfigDict, workdir: str, step: int, mesh: jax.sharding.Mesh
) -> tuple[Any, Any, Any, Any]:
    """(model, online probes, trained state, initial state) after the shape check."""
    model, probes = train.build_model(config)
    # The optimiser state's structure does not depend on the schedule's length.
    learning_rate, _ = train.build_schedules(config, steps_per_epoch=1)
    optimizer = build_optimizer(config.train.optimizer, learning_rate, config.train.weight_decay)

    def initial_state() -> Any:
        return train.create_state(config, model, probes, optimizer, mesh)

    directory = restore.checkpoint_dir(workdir)
    restore.check_checkpoint_matches(directory, step, jax.eval_shape(initial_state))
    template = initial_state()
    ckpt = checkpointing.Checkpointer(directory, save_every_steps=1, async_save=False)
    try:
        state = ckpt.restore(checkpointing.abstract_like(template), step)
    finally:
        ckpt.close()
    return model, probes, state, template


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, workdir: str, options: EvalOptions = EvalOptions()
) -> dict[str, Any]:
    """Evaluates the checkpoint of `workdir` (module docstring); returns the results dict."""
    config = ml_collections.ConfigDict(config.to_dict())
    if options.ood is not None:
        config.eval.ood = bool(options.ood)
    m_val = resolve_m_val(config, options.m_val)
    config = evaluation_config(config, m_val)
    if options.knn_k is not None:  # --knn_k overrides config.eval.knn_k and meets its checks
        config.eval.knn_k = int(options.knn_k)
    mesh = make_mesh()
    validate_config(config, device_count=mesh.devices.size, process_count=jax.process_count())
    knn_k = int(config.eval.knn_k)
    other_runs = []
    if options.heatmap_runs:  # read now: a wrong path must not cost a whole evaluation
        from seqjepa_jax.evaluation import plots

        other_runs = [plots.load_run_results(path) for path in options.heatmap_runs]
    if config.eval.ood:
        check_ood_split(config)  # a missing OOD tree must not cost a restore
    step = restore.choose_step(workdir, options.step)
    model, probes, state, initial = load_states(config, workdir, step, mesh)
    data = build_data(config, mesh, ood=config.eval.ood)
    feature_fn = features_lib.config_feature_fn(
        config, model, probes, bn_train_mode=options.official_bn_train_mode
    )
    states = {"trained": state}
    compare = options.compare_random_init
    if compare if compare is not None else config.eval.compare_random_init:
        states["random_init"] = initial
    scores: dict[str, dict[str, float]] = {}
    held_out: dict[str, dict[str, np.ndarray]] = {}
    for name, one_state in states.items():
        logging.info("Extracting features and fitting probes: %s", name)
        scores[name], features = scoring.score_state(
            config,
            feature_fn,
            one_state,
            data,
            knn_k=knn_k,
            online=name == "trained",
            path_integration=options.path_integration,
        )
        if name == "trained":
            held_out = features
    results = {
        "workdir": os.path.abspath(workdir),
        "step": int(step),
        "method": config.method,
        "method_label": methods.method_info(config.method).label,
        "m_tr": int(config.train.seq_len),
        "m_val": list(methods.aggregate_m_values(config)),
        "data": config.data.name,
        "data_kind": kinds.dataset_kind(config.data.name),
        "individual_target": data.individual_target_name,
        "bn_mode": "train (official, Q8)" if options.official_bn_train_mode else "inference",
        "knn_k": knn_k,
        "num_eval_sequences": int(len(held_out["eval"]["label"])),
        "ood": bool(config.eval.ood),
        "num_ood_sequences": int(len(held_out["ood"]["label"])) if "ood" in held_out else 0,
        "path_integration_m_val": path_integration_m_val(config, options),
        "probes": scores,
    }
    out_dir = options.out_dir or os.path.join(workdir, "eval")
    if jax.process_index() == 0:
        write_outputs(config, results, held_out["eval"], data, out_dir, options, other_runs)
    logging.info("Evaluation results: %s", json.dumps(scores, indent=2))
    return results


def path_integration_m_val(config: ml_collections.ConfigDict, options: EvalOptions) -> list[int]:
    """The M_val of the path-integration probes: every M_val >= 2 where actions compose."""
    if not options.path_integration:
        return []
    if config.data.latent_type not in latents_lib.COMPOSABLE_ACTIONS:
        return []
    return [int(m) for m in config.eval.m_val if m >= 2]


def write_outputs(
    config: ml_collections.ConfigDict,
    results: dict[str, Any],
    held_out: dict[str, np.ndarray],
    data: RunData,
    out_dir: str,
    options: EvalOptions,
    other_runs: list[dict[str, Any]],
) -> None:
    """results.json, table1.md and (optionally) the figures in `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out_dir, "table1.md"), "w") as f:
        f.write(tables.results_markdown(results))
    if other_runs:
        from seqjepa_jax.evaluation import plots

        plots.accuracy_heatmap(
            [results, *other_runs], os.path.join(out_dir, "heatmap_mtr_mval.png")
        )
    if options.plots:
        from seqjepa_jax.evaluation import plots

        plots.evaluation_figures(config, held_out, data, out_dir, use_umap=options.use_umap)
        if results["path_integration_m_val"]:
            plots.path_integration_figure(results, os.path.join(out_dir, "path_integration_r2.png"))
        if results["ood"]:
            plots.ood_figure(results, os.path.join(out_dir, "ood_vs_in_distribution.png"))
