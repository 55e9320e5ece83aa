"""Scoring one model state with every frozen-feature probe: the one definition that the
end-of-run report of `train.py` and the evaluation program (`program.py`) both call.

`score_state` extracts frozen features on the probe-training and held-out splits (and the OOD
split when asked), fits the probes of the data kind (`tasks.py`) under the probe protocol of
`config.eval` (`probe_selection`: a validation split of the probe-training objects, early
stopping, weight-decay and ridge-penalty grids, probe seeds; `report.py`), adds cosine k-NN and
the online probes' scores, and returns the numbers by their report names.
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from seqjepa_jax import methods
from seqjepa_jax.evaluation import features as features_lib
from seqjepa_jax.evaluation import probes, tasks
from seqjepa_jax.evaluation import report as report_lib


def probe_features(
    config: ml_collections.ConfigDict, feature_fn: Any, state: Any, data: Any
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Frozen features of a state on (a capped subset of) the probe-train and held-out splits."""

    def extract(split: str, cap: int) -> dict[str, np.ndarray]:
        batches = data.probe_batches(split, cap)
        return features_lib.extract_features(feature_fn, state.params, state.batch_stats, batches)

    return (
        extract("train", config.eval.max_train_objects),
        extract("eval", config.eval.max_eval_objects),
    )


def probe_selection(config: ml_collections.ConfigDict) -> probes.ProbeSelection | None:
    """The probe protocol of `config.eval` (issue 19); None when `validation_fraction` is 0 (the
    earlier fixed-hyperparameter probes on the whole training split)."""
    e = config.eval
    if not e.validation_fraction:
        return None
    return probes.ProbeSelection(
        validation_fraction=float(e.validation_fraction),
        weight_decays=tuple(float(v) for v in e.probe_weight_decays),
        ridge_alphas=tuple(float(v) for v in e.ridge_alphas),
        seeds=tuple(int(v) for v in e.probe_seeds),
    )


def score_state(
    config: ml_collections.ConfigDict,
    feature_fn: Any,
    state: Any,
    data: Any,
    *,
    knn_k: int,
    online: bool,
    path_integration: bool = True,
) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """(every probe score of one state, its held-out features: {"eval": ..., "ood": ...}).

    With `config.eval.ood` the OOD split's features are scored by the same fitted probes
    (`ood_*` keys); they never enter a fit. The model-free actions-only path-integration ceiling
    is fitted with the `online` (trained) state only, whose online probes are scored too.
    """
    train_features, eval_features = probe_features(config, feature_fn, state, data)
    ood_features = None
    if config.eval.ood:
        batches = data.probe_batches("ood", config.eval.max_eval_objects)
        ood_features = features_lib.extract_features(
            feature_fn, state.params, state.batch_stats, batches
        )
    regressions, combined = tasks.regression_tasks(config)
    if path_integration:
        regressions += tasks.path_integration_tasks(
            config,
            tuple(config.eval.m_val),
            actions_only=online,
            aggregate=methods.has_aggregate(config),
        )
    aggregate_m_values = methods.aggregate_m_values(config)
    scores = report_lib.frozen_probe_report(
        train_features,
        eval_features,
        num_classes=config.data.num_classes,
        m_values=aggregate_m_values,
        probe_steps=config.eval.probe_steps,
        probe_hidden=config.eval.probe_hidden,
        standardise_targets=config.eval.standardise_targets,
        regressions=regressions,
        combined=combined,
        ood=ood_features,
        selection=probe_selection(config),
        feature_scaling=config.eval.feature_scaling,
    )
    for prefix, test in (("", eval_features), ("ood_", ood_features)):
        if test is None:
            continue
        knn_scores = report_lib.knn_probe_report(
            train_features,
            test,
            num_classes=config.data.num_classes,
            m_values=aggregate_m_values,
            k=knn_k,
        )
        scores.update({prefix + name: value for name, value in knn_scores.items()})
    if online:
        scores.update(report_lib.online_probe_report(eval_features))
    held_out = {"eval": eval_features}
    if ood_features is not None:
        held_out["ood"] = ood_features
    return scores, held_out
