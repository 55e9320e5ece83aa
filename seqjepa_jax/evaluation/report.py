"""The frozen-feature probe report: what a run learned, next to the same probes on any model.

From features extracted on a probe-training split and a held-out split (`features.py`):

- `agg_m{m}_accuracy`: linear classifier on the aggregate of m observation views (paper Table 1
  top-1, for the M_val sweep; seq-JEPA only);
- `encoder_accuracy`: linear classifier on one view's encoder embedding (the official offline
  `res_classifier`, Q11);
- one entry per `RegressionTask` (`tasks.py` says which, per kind of data): e.g.
  `relative_rotation_r2_*`, the MLP on the encoder pair (z_j, z_j+1) → R_j⁻¹R_j+1 over every
  consecutive pair (the paper's relative rotation R², spec §7.1, §12.2; the official eval uses
  only views 0 and 1, Q40), each R² under both names of `metrics.py`, and for rotations the mean
  geodesic error `*_geodesic_deg`.

The probe protocol (issue 19), with a `probes.ProbeSelection`: a validation split of the
probe-training *objects* (never the held-out ones) early-stops every MLP and picks its weight
decay, and picks the ridge penalty of linear probes; next to every MLP probe a closed-form ridge
probe (`{name}_ridge_*`) is the low-variance reference, and `{name}_mean_*` is the floor of
predicting the training targets' mean. With several probe seeds the MLP scores are their mean and
`*_seed_std` their spread on the same features. Without a selection the probes use fixed
hyperparameters on the whole training split (the earlier protocol).

The online probes (trained inside the step) are scored on the held-out split too, and
`knn_probe_report` adds cosine k-NN accuracy on the same features (`knn.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from seqjepa_jax.data.quaternion import euler_xyz_to_quaternion
from seqjepa_jax.evaluation import knn, metrics, probes


def rotation_targets(latents: np.ndarray) -> np.ndarray:
    """Absolute quaternions (scalar-last, spec §6.1) of 3DIEBench-layout latents (..., 7)."""
    return euler_xyz_to_quaternion(latents[..., :3]).astype(np.float32)


def online_probe_counterpart(has_aggregate: bool, m_tr: int) -> str:
    """The frozen-probe key that the online class probe mirrors: the aggregate of M_tr views
    (seq-JEPA) or one view's encoder embedding (the baselines, spec §4.1)."""
    return f"agg_m{m_tr}_accuracy" if has_aggregate else "encoder_accuracy"


def online_probe_report(features: dict[str, np.ndarray]) -> dict[str, float]:
    """Scores the online probes on held-out features (accuracy on labelled rows, action R²)."""
    labelled = features["label"] >= 0
    report = {
        "online_action_r2_uniform": metrics.r2_uniform(
            features["actions"][:, 0], features["online_action"]
        ),
        "online_action_r2_pooled": metrics.r2_pooled(
            features["actions"][:, 0], features["online_action"]
        ),
    }
    if labelled.any():
        report["online_accuracy"] = metrics.top1_accuracy(
            features["label"][labelled], features["online_logits"][labelled]
        )
    return report


@dataclasses.dataclass(frozen=True)
class RegressionTask:
    """One frozen-feature regression probe of the report.

    Attributes:
      name: report key prefix; the scores are `{name}_r2_uniform` and `{name}_r2_pooled`.
      inputs: "pair" (z_j ⊕ z_j+1, every consecutive pair, targets (N, V-1, d)), "single"
        (z_j, every view, targets (N, V, d)), or a function features dict -> (N, D) inputs, one
        example per sequence with targets (N, d) (the path-integration probes, `tasks.py`).
      targets: features dict (`features.py`) -> the per-pair or per-view targets.
      head: "mlp" (in→h→h→out, spec §7.1) or "linear" (`probes.fit_regressor`).
      rotation: the first 4 target columns are a quaternion: also report the geodesic error.
    """

    name: str
    inputs: str | Callable[[dict[str, np.ndarray]], np.ndarray]
    targets: Callable[[dict[str, np.ndarray]], np.ndarray]
    head: str = "mlp"
    rotation: bool = False

    def __post_init__(self) -> None:
        if not callable(self.inputs) and self.inputs not in ("pair", "single"):
            raise ValueError(
                f"RegressionTask.inputs={self.inputs!r}; use 'pair', 'single' or a function."
            )
        if self.head not in probes.REGRESSION_HEADS:
            raise ValueError(f"RegressionTask.head={self.head!r}; use {probes.REGRESSION_HEADS}.")

    def examples(self, features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) flattened over sequences and pairs or views."""
        y = np.asarray(self.targets(features))
        if callable(self.inputs):
            x = np.asarray(self.inputs(features))
            if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
                raise ValueError(
                    f"Probe {self.name!r} has inputs {x.shape} and targets {y.shape}; expected "
                    "(N, D) and (N, d), one row per sequence."
                )
            return x, y
        z = features["z"]
        x = np.concatenate([z[:, :-1], z[:, 1:]], axis=-1) if self.inputs == "pair" else z
        if y.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"Targets of probe {self.name!r} have shape {y.shape}; expected {x.shape[:2]} "
                f"leading dims for {self.inputs!r} inputs."
            )
        return x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])


def regression_scores(targets: np.ndarray, predictions: np.ndarray, rotation: bool) -> dict:
    """Both R² definitions, and the geodesic error (degrees) of rotation targets."""
    scores = probes.r2_scores(targets, predictions)
    if rotation:
        scores["geodesic_deg"] = metrics.geodesic_degrees(targets, predictions)
    return scores


def take_rows(features: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The features of the sequences (objects) `rows`: every array's leading axis."""
    return {key: value[rows] for key, value in features.items()}


def frozen_probe_report(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    *,
    num_classes: int,
    m_values: Sequence[int],
    probe_steps: int,
    probe_hidden: int,
    regressions: Sequence[RegressionTask] = (),
    combined: Mapping[str, Sequence[str]] | None = None,
    ood: dict[str, np.ndarray] | None = None,
    standardise_targets: bool = False,
    selection: probes.ProbeSelection | None = None,
    feature_scaling: str = probes.DEFAULT_FEATURE_SCALING,
) -> dict[str, float]:
    """Fits every frozen-feature probe on `train` features and scores it on `test` features.

    `combined` maps a report name to regression tasks with the same inputs whose test predictions
    are concatenated column-wise and scored together: the official augmentation `R2` over [crop,
    jitter, blur] predictions of three heads (spec §7.1).

    `ood`: features of an out-of-distribution split (spec §6.2, issue 10). Every probe fitted on
    `train` is also scored on them, under the same key prefixed `ood_`; OOD rows only ever reach
    the fitted probes' predictions, never a fit, a selection or a standardisation.

    `selection`: the validation protocol of the module docstring (None: fixed hyperparameters).
    `standardise_targets`: fit the MLP regressors on z-scored target columns
    (`probes.fit_regressor`; `config.eval.standardise_targets`, off by default as in the official
    protocol).
    `feature_scaling`: how every probe's input features are scaled (`probes.standardise`;
    `config.eval.feature_scaling`).
    """
    report: dict[str, float] = {}
    # Shallow copies: the one-view `z0` inputs added below must not reach the caller's dicts.
    train = dict(train)
    held_out = {"": dict(test)} if ood is None else {"": dict(test), "ood_": dict(ood)}

    def stack(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(parts), np.cumsum([len(p) for p in parts])[:-1]

    def classify(key: str, name: str) -> None:
        test_x, cuts = stack([split[key] for split in held_out.values()])
        _, logits = probes.linear_probe_logits(
            train[key],
            train["label"],
            test_x,
            num_classes,
            steps=probe_steps,
            feature_scaling=feature_scaling,
        )
        for (prefix, split), part in zip(held_out.items(), np.split(logits, cuts)):
            report[f"{prefix}{name}"] = metrics.top1_accuracy(split["label"], part)

    for m in sorted(set(m_values)):
        classify(f"agg_{m}", f"agg_m{m}_accuracy")
    for split in (train, *held_out.values()):
        split["z0"] = split["z"][:, 0]
    classify("z0", "encoder_accuracy")

    fit, validation = train, None
    if selection is not None:
        fit_rows, val_rows = probes.validation_split(len(train["z"]), selection.validation_fraction)
        fit, validation = take_rows(train, fit_rows), take_rows(train, val_rows)
    seeds = selection.seeds if selection is not None else (0,)
    per_seed: list[dict[str, float]] = [{} for _ in seeds]
    outputs = [{prefix: {} for prefix in held_out} for _ in seeds]
    for task in regressions:
        train_x, train_y = task.examples(fit)
        examples = [task.examples(split) for split in held_out.values()]
        test_x, cuts = stack([x for x, _ in examples])
        heads = [(task.name, task.head)]
        if selection is not None and task.head == "mlp":
            heads.append((f"{task.name}_ridge", "linear"))  # the low-variance reference
        for name, head in heads:
            for index, seed in enumerate(seeds):
                if head == "linear" and index > 0:  # closed form: the same for every seed
                    per_seed[index].update(
                        {k: v for k, v in per_seed[0].items() if k.startswith(name)}
                    )
                    continue
                predictions = probes.fit_regressor(
                    train_x,
                    train_y,
                    test_x,
                    head=head,
                    hidden=probe_hidden,
                    steps=probe_steps,
                    standardise_targets=standardise_targets,
                    validation=None if validation is None else task.examples(validation),
                    selection=selection or probes.ProbeSelection(),
                    seed=seed,
                    feature_scaling=feature_scaling,
                )
                for prefix, (_, y), part in zip(held_out, examples, np.split(predictions, cuts)):
                    if name == task.name:
                        outputs[index][prefix][name] = (y, part)
                    scores = regression_scores(y, part, task.rotation)
                    per_seed[index].update(_prefixed(prefix + name, scores))
        for prefix, (_, y) in zip(held_out, examples):  # the predict-the-mean floor
            mean = np.broadcast_to(train_y.mean(axis=0), y.shape)
            report.update(
                _prefixed(f"{prefix}{task.name}_mean", regression_scores(y, mean, task.rotation))
            )
    for name, parts in (combined or {}).items():
        missing = [part for part in parts if part not in outputs[0][""]]
        if missing:
            raise ValueError(f"Combined probe {name!r} names unknown regressions {missing}.")
        for index, scored_splits in enumerate(outputs):
            for prefix, scored in scored_splits.items():
                targets = np.concatenate([scored[part][0] for part in parts], axis=-1)
                predictions = np.concatenate([scored[part][1] for part in parts], axis=-1)
                per_seed[index].update(
                    _prefixed(prefix + name, probes.r2_scores(targets, predictions))
                )
    for key in per_seed[0]:
        values = [scores[key] for scores in per_seed]
        report[key] = float(np.mean(values))
        if len(values) > 1:
            report[f"{key}_seed_std"] = float(np.std(values))
    return report


def knn_probe_report(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    *,
    num_classes: int,
    m_values: Sequence[int],
    k: int = 20,
) -> dict[str, float]:
    """k-NN top-1 (%) on one view's encoder embedding and on each aggregate (`knn.py`), over the
    labelled rows (label >= 0) of both splits."""
    train_rows, test_rows = train["label"] >= 0, test["label"] >= 0
    inputs = {"knn_encoder_accuracy": lambda f: f["z"][:, 0]}
    for m in sorted(set(m_values)):
        inputs[f"knn_agg_m{m}_accuracy"] = lambda f, m=m: f[f"agg_{m}"]
    return {
        name: knn.knn_accuracy(
            get(train)[train_rows],
            train["label"][train_rows],
            get(test)[test_rows],
            test["label"][test_rows],
            num_classes=num_classes,
            k=k,
        )
        for name, get in inputs.items()
    }


def _prefixed(name: str, scores: dict[str, float]) -> dict[str, float]:
    return {f"{name}_{key}": value for key, value in scores.items()}


def consecutive_pairs(features: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(z_j ⊕ z_j+1, action j → j+1) for every consecutive pair of views, flattened."""
    return RegressionTask("relative_action", "pair", lambda f: f["actions"]).examples(features)


def single_views(
    features: dict[str, np.ndarray],
    targets: Callable[[np.ndarray], np.ndarray] = rotation_targets,
) -> tuple[np.ndarray, np.ndarray]:
    """(z_j, target of view j) for every view, flattened; targets computed from the latents."""
    return RegressionTask("individual", "single", lambda f: targets(f["latents"])).examples(
        features
    )
