"""Start-up validation of a run's configuration: every problem named before anything compiles.

A bad field costs nothing here and minutes (or a cluster slot) later, so `validate_config` checks
everything that can be checked from the config and the device count alone and raises one
`ValueError` listing each problem with the field's full name and how to fix it. Checks that need
the data (views per object on disk, object counts) run in the data layer, also before compiling.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from seqjepa_jax import methods
from seqjepa_jax.data import kinds
from seqjepa_jax.data.integrity import BAD_FILE_POLICIES
from seqjepa_jax.evaluation.probes import FEATURE_SCALINGS
from seqjepa_jax.faults import NONFINITE_POLICIES
from seqjepa_jax.models.resnet import STEMS
from seqjepa_jax.optimizers import OPTIMIZERS
from seqjepa_jax.schedules import EMA_UNITS, LR_SCHEDULES

GLIMPSE_SOURCES = ("unit", "normalised")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def encoder_stride(stem: str, num_stages: int) -> int:
    """Total downsampling of the ResNet: 4 (ImageNet stem) or 1 (CIFAR), ×2 per later stage."""
    return (4 if stem == "imagenet" else 1) * 2 ** max(num_stages - 1, 0)


def token_width(model: ml_collections.ConfigDict, action_dim: int) -> int:
    """Aggregator token width implied by the model config (spec §2.1)."""
    embedding = model.width * 2 ** (len(model.stage_sizes) - 1)
    if not model.act_cond:
        return embedding
    if model.learn_act_emb:
        return embedding + model.act_proj_dim
    return embedding + action_dim + (-(embedding + action_dim) % model.num_heads)


def knn_training_points(config: ml_collections.ConfigDict) -> tuple[int | None, str]:
    """(most training points the k-NN probe can have, what sets that number); None = unknown.

    The probes fit on at most `config.eval.max_train_objects` training objects (0 = all); for the
    built-in data the split size is in the config too, so a k above it is refused at start-up
    rather than after training. Real datasets' sizes are known only once their files are listed.
    """
    cap = int(config.eval.max_train_objects)
    limits = [(cap, f"config.eval.max_train_objects={cap}")] if cap else []
    if config.data.name == "procedural":
        size = int(config.data.procedural.num_train_objects)
        limits.append((size, f"config.data.procedural.num_train_objects={size}"))
    if not limits:
        return None, ""
    return min(limits)


def check_run_control_fields(config: ml_collections.ConfigDict, check: Callable) -> None:
    """Checkpointing, logging and fault-handling fields (issue 7; `faults.py`)."""
    train, data = config.train, config.data
    for field in ("checkpoint_every_steps", "keep_checkpoints", "log_every_steps"):
        value = train[field]
        check(value >= 1, f"config.train.{field}={value} must be >= 1.")
    check(
        train.on_nonfinite in NONFINITE_POLICIES,
        f"config.train.on_nonfinite={train.on_nonfinite!r} is unknown; use one of "
        f"{NONFINITE_POLICIES}.",
    )
    check(
        data.on_bad_file in BAD_FILE_POLICIES,
        f"config.data.on_bad_file={data.on_bad_file!r} is unknown; use one of {BAD_FILE_POLICIES}.",
    )


def validate_config(
    config: ml_collections.ConfigDict, *, device_count: int, process_count: int = 1
) -> None:
    """Raises ValueError naming every invalid field of `config` (see the module docstring)."""
    from seqjepa_jax.config_types import tuple_type_problems

    # Tuples of the wrong element type first: the checks below would fail on them with TypeErrors.
    problems: list[str] = tuple_type_problems(config)
    if problems:
        raise ValueError("Invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))

    def check(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    data, model, train, evaluation = config.data, config.model, config.train, config.eval
    check(
        data.name in kinds.DATASET_KINDS,
        f"config.data.name={data.name!r} is unknown; use one of {tuple(kinds.DATASET_KINDS)}.",
    )
    kind = kinds.DATASET_KINDS.get(data.name)
    action_dim = None
    if kind is not None:
        try:
            action_dim = kinds.action_dim(data)
        except ValueError as error:
            problems.append(str(error))
    if kind == "saccade":
        saccade = data.saccades
        check(
            data.image_size == saccade.fovea_size,
            f"config.data.image_size={data.image_size} must equal config.data.saccades."
            f"fovea_size={saccade.fovea_size}: the encoder sees the glimpses.",
        )
        check(
            1 <= saccade.fovea_size <= saccade.source_size,
            f"config.data.saccades.fovea_size={saccade.fovea_size} must lie in "
            f"[1, source_size={saccade.source_size}].",
        )
        check(
            saccade.glimpse_from in GLIMPSE_SOURCES,
            f"config.data.saccades.glimpse_from={saccade.glimpse_from!r}; use one of "
            f"{GLIMPSE_SOURCES}.",
        )
    check(model.stem in STEMS, f"config.model.stem={model.stem!r} is unknown; use one of {STEMS}.")
    check(
        model.compute_dtype in COMPUTE_DTYPES,
        f"config.model.compute_dtype={model.compute_dtype!r}; use one of {COMPUTE_DTYPES}.",
    )
    check(train.seq_len >= 1, f"config.train.seq_len={train.seq_len}: M_tr must be >= 1.")
    method_problem = methods.method_problem(config)
    check(method_problem is None, method_problem or "")
    problems.extend(methods.method_option_problems(config))
    # Only rendered objects have a fixed number of views; image datasets make as many as asked.
    views_available = data.views_per_object if kind == "views" else float("inf")
    if config.method in methods.METHODS:
        views_needed = methods.training_views(config)
        needs = (
            f"config.train.seq_len={train.seq_len} needs M_tr + 1 = {views_needed}"
            if methods.method_info(config.method).views is None
            else f"config.method={config.method!r} needs {views_needed}"
        )
        check(
            views_needed <= views_available,
            f"{needs} distinct views per object but config.data.views_per_object="
            f"{data.views_per_object}; lower seq_len or use more views per object.",
        )
    m_val = tuple(evaluation.m_val)
    check(
        len(m_val) > 0 and min(m_val) >= 1,
        f"config.eval.m_val={m_val} must list observation counts >= 1.",
    )
    if m_val:
        eval_views = max(max(m_val), train.seq_len, 2) + 1
        check(
            evaluation.num_views >= eval_views,
            f"config.eval.num_views={evaluation.num_views} is too few for M_val={m_val} and "
            f"M_tr={train.seq_len}: it needs at least {eval_views}.",
        )
    check(
        evaluation.num_views <= views_available,
        f"config.eval.num_views={evaluation.num_views} exceeds config.data.views_per_object="
        f"{data.views_per_object}; lower it.",
    )
    if evaluation.ood:
        problem = kinds.ood_problem(config)
        check(problem is None, problem or "")
        if problem is None and m_val:
            ood_views = kinds.ood_views_per_object(data)
            check(
                max(max(m_val), train.seq_len, 2) + 1 <= ood_views,
                f"config.eval.ood: OOD objects of config.data.name={data.name!r} have "
                f"{ood_views} views, too few for M_val={m_val} and M_tr={train.seq_len} (an "
                f"aggregate of M observations needs M + 1 views); use M_val <= {ood_views - 1}.",
            )
    check(
        train.batch_size >= 1 and train.batch_size % device_count == 0,
        f"config.train.batch_size={train.batch_size} is not a positive multiple of the "
        f"{device_count} devices; use a multiple of {device_count}.",
    )
    check(
        train.batch_size % process_count == 0,
        f"config.train.batch_size={train.batch_size} is not divisible by the {process_count} "
        "hosts.",
    )
    check(
        evaluation.batch_size >= 1 and evaluation.batch_size % device_count == 0,
        f"config.eval.batch_size={evaluation.batch_size} is not a positive multiple of the "
        f"{device_count} devices.",
    )
    check(
        evaluation.feature_scaling in FEATURE_SCALINGS,
        f"config.eval.feature_scaling={evaluation.feature_scaling!r} is not one of "
        f"{FEATURE_SCALINGS}.",
    )
    knn_points, knn_limit = knn_training_points(config)
    check(
        evaluation.knn_k >= 1 and (knn_points is None or evaluation.knn_k <= knn_points),
        f"config.eval.knn_k={evaluation.knn_k} must lie in [1, {knn_points}]: the k-NN probe "
        f"fits on at most {knn_points} training points (set by {knn_limit}); lower knn_k or "
        "raise that field.",
    )
    if action_dim is not None and config.method == "seqjepa":
        width = token_width(model, action_dim)
        check(
            model.num_heads >= 1 and width % model.num_heads == 0,
            f"config.model.num_heads={model.num_heads} does not divide the aggregator token width "
            f"{width} (= encoder width + config.model.act_proj_dim); change one of them.",
        )
    if model.stem in STEMS:
        stride = encoder_stride(model.stem, len(model.stage_sizes))
        check(
            data.image_size >= stride,
            f"config.data.image_size={data.image_size} is smaller than the encoder's total stride "
            f"{stride} (stem {model.stem!r}, {len(model.stage_sizes)} stages); use images of at "
            f"least {stride} px"
            + (" or the 'cifar' stem." if model.stem != "cifar" else " or fewer stages."),
        )
    check(model.width >= 1 and len(model.stage_sizes) >= 1, "config.model.width/stage_sizes empty.")
    check(
        train.optimizer in OPTIMIZERS,
        f"config.train.optimizer={train.optimizer!r} is unknown; use one of {OPTIMIZERS}.",
    )
    check(
        train.lr_schedule in LR_SCHEDULES,
        f"config.train.lr_schedule={train.lr_schedule!r} is unknown; use one of {LR_SCHEDULES}.",
    )
    check(
        train.ema_schedule_unit in EMA_UNITS,
        f"config.train.ema_schedule_unit={train.ema_schedule_unit!r}; use one of {EMA_UNITS}.",
    )
    check(
        0.0 <= train.ema_tau_base <= 1.0,
        f"config.train.ema_tau_base={train.ema_tau_base} must lie in [0, 1].",
    )
    check(train.num_epochs >= 1, f"config.train.num_epochs={train.num_epochs} must be >= 1.")
    check(train.warmup_epochs >= 0, f"config.train.warmup_epochs={train.warmup_epochs} < 0.")
    check(train.learning_rate > 0, f"config.train.learning_rate={train.learning_rate} <= 0.")
    check(
        train.optimizer != "adam" or train.weight_decay == 0.0,
        f"config.train.weight_decay={train.weight_decay} with optimizer 'adam': the official "
        "Adam ran without decay (Q1); set weight_decay=0.0 or optimizer='adamw'.",
    )
    check(data.num_classes >= 1, f"config.data.num_classes={data.num_classes} must be >= 1.")
    check(
        len(data.mean) == 3 and len(data.std) == 3 and min(data.std) > 0,
        "config.data.mean/std need 3 channels with std > 0.",
    )
    check_run_control_fields(config, check)
    if problems:
        raise ValueError(
            "Invalid configuration:\n" + "\n".join(f"  - {problem}" for problem in problems)
        )
