"""The self-supervised methods of the library, selected by `config.method` (issue 17; spec §8).

seq-JEPA and the baselines of the paper's Table 1 run on the same trainer, data, probes and
checkpoints. Each method is one Flax module (`models/seqjepa.py`, `models/baselines/`) that
implements the small interface of `models/baselines/base.py` (`step_outputs`, `encode`, and its
EMA target); this module says which module a name builds, from which config fields, on which data,
and with how many views per training sequence. Nothing else in the trainer depends on the method.

| method | learns | data | views per training sequence |
|---|---|---|---|
| `seqjepa` | invariant aggregate + equivariant encoder | all | M_tr + 1 |
| `simclr`, `byol`, `vicreg` | invariant | transformed views | 2 |
| `vicreg_traj` | invariant + trajectory straightness | transformed views | 3 |
| `equimod`, `byol_cond`, `sen`, `sie` | action-equivariant (+ invariant) | transformed views | 2 |
| `conv_ijepa` | predictive across saccades, no aggregate | saccades | M_tr + 1 |
| `supervised` | labels and actions (the reference ceiling, issue 19) | transformed views | 2 |

Two-view methods use views 0 and 1 and their relative action (the official `model(view0, view1,
rel_latents[:, 0])`); the data layer makes only the views a method uses (`training_views`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from seqjepa_jax.data import kinds
from seqjepa_jax.models.baselines.byol import BYOL
from seqjepa_jax.models.baselines.byol_cond import BYOLConditional
from seqjepa_jax.models.baselines.conv_ijepa import ConvIJEPA
from seqjepa_jax.models.baselines.equimod import EquiMod
from seqjepa_jax.models.baselines.sen import SEN
from seqjepa_jax.models.baselines.sie import SIE
from seqjepa_jax.models.baselines.simclr import SimCLR
from seqjepa_jax.models.baselines.supervised import Supervised
from seqjepa_jax.models.baselines.vicreg import VICReg
from seqjepa_jax.models.baselines.vicreg_traj import TRAJECTORY_VIEWS, VICRegTraj
from seqjepa_jax.models.seqjepa import SeqJEPA

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
TRANSFORMED_VIEWS = ("views", "augment")  # 3D objects and augmentations (spec §2)
SACCADES = ("saccade",)  # predictive learning across saccades (spec §3)


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """What the trainer needs to know about a method before building it.

    Attributes:
      label: the name tables and figures show (the paper's spelling).
      module: the Flax module class.
      data_kinds: the data kinds (`data/kinds.py`) it trains on.
      views: views per training sequence; None = M_tr + 1 (`config.train.seq_len` + 1).
      shared_fields: config fields (dotted, below `config`) it takes besides the encoder's,
        under their last name: the official code passes the same `--act-projdim`,
        `--learn-act-emb`, `--pred-hidden` flags to every model; the supervised reference
        needs the class count.
      learns: what its representation is trained to be, for the README and the logs.
    """

    label: str
    module: type[nn.Module]
    data_kinds: tuple[str, ...]
    views: int | None
    shared_fields: tuple[str, ...]
    learns: str


METHODS: dict[str, MethodInfo] = {
    "seqjepa": MethodInfo(
        "seq-JEPA",
        SeqJEPA,
        TRANSFORMED_VIEWS + SACCADES,
        None,
        (),
        "action-invariant aggregate, action-equivariant encoder",
    ),
    "simclr": MethodInfo("SimCLR", SimCLR, TRANSFORMED_VIEWS, 2, (), "invariant (contrastive)"),
    "byol": MethodInfo("BYOL", BYOL, TRANSFORMED_VIEWS, 2, (), "invariant (EMA target)"),
    "vicreg": MethodInfo(
        "VICReg", VICReg, TRANSFORMED_VIEWS, 2, (), "invariant (variance-covariance)"
    ),
    "vicreg_traj": MethodInfo(
        "VICReg-Traj",
        VICRegTraj,
        TRANSFORMED_VIEWS,
        TRAJECTORY_VIEWS,
        (),
        "invariant + straight trajectories",
    ),
    "equimod": MethodInfo(
        "SimCLR-EquiMod",
        EquiMod,
        TRANSFORMED_VIEWS,
        2,
        ("model.learn_act_emb", "model.act_proj_dim"),
        "invariant + action-equivariant projection",
    ),
    "byol_cond": MethodInfo(
        "BYOL-conditional",
        BYOLConditional,
        TRANSFORMED_VIEWS,
        2,
        ("model.act_proj_dim",),
        "action-conditioned prediction",
    ),
    "sen": MethodInfo(
        "SEN",
        SEN,
        TRANSFORMED_VIEWS,
        2,
        ("model.learn_act_emb", "model.act_proj_dim"),
        "action-equivariant only",
    ),
    "sie": MethodInfo("SIE", SIE, TRANSFORMED_VIEWS, 2, (), "split invariant / equivariant halves"),
    "conv_ijepa": MethodInfo(
        "Conv-IJEPA",
        ConvIJEPA,
        SACCADES,
        None,
        ("model.act_proj_dim", "model.pred_hidden"),
        "per-glimpse prediction, no aggregate",
    ),
    "supervised": MethodInfo(
        "supervised",
        Supervised,
        TRANSFORMED_VIEWS,
        2,
        ("data.num_classes",),
        "class and relative action, supervised (the reference)",
    ),
}


def method_info(name: str) -> MethodInfo:
    """The registry entry of a method name; ValueError naming the choices."""
    if name not in METHODS:
        raise ValueError(f"config.method={name!r} is unknown; use one of {tuple(METHODS)}.")
    return METHODS[name]


def method_problem(config: ml_collections.ConfigDict) -> str | None:
    """Why `config.method` cannot train on `config.data`, with the fix; None when it can."""
    if config.method not in METHODS:
        return f"config.method={config.method!r} is unknown; use one of {tuple(METHODS)}."
    info = METHODS[config.method]
    kind = kinds.DATASET_KINDS.get(config.data.name)
    if kind is None or kind in info.data_kinds:
        return None
    fits = sorted(name for name, other in METHODS.items() if kind in other.data_kinds)
    datasets = sorted(name for name, k in kinds.DATASET_KINDS.items() if k in info.data_kinds)
    return (
        f"config.method={config.method!r} does not train on config.data.name="
        f"{config.data.name!r} ({kind} data): it needs one of {datasets}. Methods for "
        f"{config.data.name!r}: {fits}."
    )


def method_option_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Invalid values of `config.methods.<method>` (the selected method only), with the field."""
    if config.method not in METHODS or config.method == "seqjepa":
        return []
    options = config.methods[config.method]
    prefix = f"config.methods.{config.method}"
    problems = []
    dims = tuple(options.get("projector_dims", (1,)))
    if not dims or min(dims) < 1:
        problems.append(f"{prefix}.projector_dims={dims} must list positive layer widths.")
    for field in ("temperature", "predictor_hidden", "hidden"):
        if field in options and options[field] <= 0:
            problems.append(f"{prefix}.{field}={options[field]} must be > 0.")
    return problems


def training_views(config: ml_collections.ConfigDict) -> int:
    """Views per training sequence of `config.method` (M_tr + 1 for sequence methods)."""
    views = method_info(config.method).views
    return config.train.seq_len + 1 if views is None else views


def has_aggregate(config: ml_collections.ConfigDict) -> bool:
    """Whether the method has an aggregate to probe at several M_val (seq-JEPA only)."""
    return method_info(config.method).module.has_aggregate


def aggregate_m_values(config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """`config.eval.m_val` for a method with an aggregate, () otherwise."""
    return tuple(config.eval.m_val) if has_aggregate(config) else ()


def build_method_model(config: ml_collections.ConfigDict, action_dim: int) -> nn.Module:
    """The online module of `config.method`, from `config.model` (encoder and shared fields)
    and `config.methods.<method>` (its own hyperparameters)."""
    info = method_info(config.method)
    m = config.model
    common: dict[str, Any] = dict(
        action_dim=action_dim,
        stem=m.stem,
        width=m.width,
        stage_sizes=tuple(m.stage_sizes),
        unbiased_running_var=m.unbiased_running_var,
        dtype=DTYPES[m.compute_dtype],
    )
    if config.method == "seqjepa":
        return SeqJEPA(
            **common,
            act_cond=m.act_cond,
            learn_act_emb=m.learn_act_emb,
            act_proj_dim=m.act_proj_dim,
            num_heads=m.num_heads,
            num_layers=m.num_layers,
            mlp_ratio=m.mlp_ratio,
            dropout_rate=m.dropout_rate,
            pred_hidden=m.pred_hidden,
            pred_action_first=m.pred_action_first,
            zero_last_action_before_projection=m.zero_last_action_before_projection,
        )
    options = {
        key: tuple(value) if isinstance(value, (list, tuple)) else value
        for key, value in config.methods[config.method].to_dict().items()
    }
    shared = {}
    for dotted in info.shared_fields:
        group, field = dotted.split(".")
        shared[field] = config[group][field]
    return info.module(
        **common,
        official_nondifferentiable_gather=config.methods.official_nondifferentiable_gather,
        **shared,
        **options,
    )
