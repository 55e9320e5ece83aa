"""The official PyTorch state-dict names of this library's Flax variables (spec §1-§3, §9).

One place knows how a Flax variable path of our modules (models/) is spelled in the official
`models.py` state dicts, and how tensors change layout on the way:

- torchvision ResNet (`encoder`, `target_encoder`): `layerS_B` -> `layerS.B`, `downsample_conv/_bn`
  -> `downsample.0/.1`; conv kernels OIHW -> HWIO;
- `TransformerEncoder_`: `layer_i` -> `transformer_encoder.layers.i`, `final_norm` -> `norm`; the
  fused in-projection is `self_attn.in_proj_weight/_bias` (PyTorch's (3E, E) rows q, k, v with heads
  contiguous; its transpose is our fused (E, 3E) kernel, split the same way in aggregator.py);
- the official `nn.Sequential`s by index (action projection 0/1, predictor 0/1/3, probes);
- the baselines (spec §8): `encoder`, `projector`, `projector_inv`/`_equi`, `predictor` (Linear,
  BN, ReLU Sequentials: our `MLPHead` layer i is index 3i, its BN 3i + 1; SIE's hypernetwork is
  `predictor.hypernet.net.0`), `action_proj`, and the EMA `target_encoder` / `target_projector`;
- leaves: kernel/scale -> weight, bias -> bias, BN mean/var -> running_mean/running_var (batch
  stats); Linear (out, in) -> kernel (in, out); our `Linear`'s inner `Dense_0` has no counterpart.

`module_variables` fills any of our modules from a state dict (the parity tests use it for single
layers); `seqjepa_jax.convert` uses `fill_variables` and `Mismatches` for whole checkpoints.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flax import traverse_util

StateDict = Mapping[str, np.ndarray]

# Flax leaf name -> PyTorch tensor name (conv/linear weights, norm scales and shifts, BN buffers).
_LEAF_NAMES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}
# Our `Linear` wraps one `nn.Dense`; PyTorch has no such level.
_DENSE = "Dense_0"
_MAX_LISTED = 20


def _resnet_path(names: tuple[str, ...]) -> list[str]:
    """torchvision ResNet names: `layer2_0` -> `layer2.0`, `downsample_conv/_bn` -> `.0/.1`."""
    out: list[str] = []
    for name in names:
        block = re.fullmatch(r"layer(\d+)_(\d+)", name)
        if block:
            out += [f"layer{block[1]}", block[2]]
        elif name in ("downsample_conv", "downsample_bn"):
            out += ["downsample", "0" if name == "downsample_conv" else "1"]
        else:
            out.append(name)
    return out


def _aggregator_path(names: tuple[str, ...]) -> list[str]:
    """Official `TransformerEncoder_`: `layer_i` -> `transformer_encoder.layers.i`; `final_norm`
    (the extra LayerNorm) -> `norm`."""
    if names[0] == "final_norm":
        return ["norm", *names[1:]]
    layer = re.fullmatch(r"layer_(\d+)", names[0])
    return ["transformer_encoder", "layers", layer[1], *names[1:]]


def _sequential(indices: Mapping[str, str]) -> Callable[[tuple[str, ...]], list[str]]:
    """Names of an official `nn.Sequential`: our submodule name -> its index there."""
    return lambda names: [indices[names[0]], *names[1:]]


def _seqjepa_path(names: tuple[str, ...]) -> list[str]:
    """Official SeqJEPA_Transforms / SeqJEPA_PLS attribute names for our `SeqJEPA` submodules."""
    official, sub_path = _SEQJEPA_PARTS[names[0]]
    return [official, *sub_path(names[1:])]


def _mlp_head_path(names: tuple[str, ...]) -> list[str]:
    """An official Linear/BN/ReLU `nn.Sequential` (spec §8 projectors and predictors): our
    `MLPHead`'s `linear{i}` is index 3i and `bn{i}` index 3i + 1 (ReLU takes 3i + 2)."""
    layer = re.fullmatch(r"(linear|bn)(\d+)", names[0])
    return [str(3 * int(layer[2]) + (layer[1] == "bn")), *names[1:]]


def _baseline_path(names: tuple[str, ...]) -> list[str]:
    """Official baseline attributes (spec §8) for our baseline modules' submodules: encoder
    (torchvision names), projector(s) and predictor (Sequentials), action_proj; SIE's predictor
    is `ParametrizedNet`, whose hypernetwork is `hypernet.net.0`."""
    head, rest = names[0], names[1:]
    if head == "encoder":
        return ["encoder", *_resnet_path(rest)]
    if head == "action_proj":
        return ["action_proj", *_ACTION_PROJECTION(rest)]
    if head == "predictor" and not rest:  # SIE's hypernetwork kernel
        return ["predictor", "hypernet", "net", "0"]
    return [head, *_mlp_head_path(rest)]


def _target_network_path(names: tuple[str, ...]) -> list[str]:
    """The EMA encoder + projector of BYOL, BYOL-conditional and Conv-IJEPA: official
    `target_encoder.*` and `target_projector.*`."""
    if names[0] == "encoder":
        return ["target_encoder", *_resnet_path(names[1:])]
    return ["target_projector", *_mlp_head_path(names[1:])]


def _probe_path(table: Mapping[str, str]) -> Callable[[tuple[str, ...]], list[str] | None]:
    return lambda names: [table[names[0]], *names[1:]] if names[0] in table else None


_ACTION_PROJECTION = _sequential({"linear": "0", "bn": "1"})
_PREDICTOR = _sequential({"linear1": "0", "bn1": "1", "linear2": "3"})
_SEQJEPA_PARTS = {
    "encoder": ("encoder", _resnet_path),
    "action_proj": ("action_proj", _ACTION_PROJECTION),
    "aggregator": ("transformer_encoder", _aggregator_path),
    "predictor": ("predictor", _PREDICTOR),
}
# main_transformed_views.py's probes: Linear on agg_out; MLP Linear-ReLU-Linear-ReLU-Linear.
TRANSFORMS_PROBES = {
    "class_probe": "online_linprobe.0",
    "action_probe_0": "online_equiprobe.0",
    "action_probe_1": "online_equiprobe.2",
    "action_probe_out": "online_equiprobe.4",
}
# main_pls.py's probes: only the aggregate classifier has a counterpart in `OnlineProbes`.
PLS_PROBES = {"class_probe": "online_agg_probe.0"}
# main_pls.py's probes of Conv-IJEPA (no aggregate): the class probe reads z1, as
# `online_res_probe`; the linear action probe (`probe_hidden` 0) is `online_equiprobe.0`.
PLS_ENCODER_PROBES = {"class_probe": "online_res_probe.0", "action_probe_out": "online_equiprobe.0"}

MODULES: dict[str, Callable[[tuple[str, ...]], list[str] | None]] = {
    "resnet": _resnet_path,
    "aggregator": _aggregator_path,
    "action_projection": _ACTION_PROJECTION,
    "predictor": _PREDICTOR,
    "seqjepa": _seqjepa_path,
    "baseline": _baseline_path,
    "target_network": _target_network_path,
    "mlp_head": _mlp_head_path,
    "online_probes": _probe_path(TRANSFORMS_PROBES),
    "pls_online_probes": _probe_path(PLS_PROBES),
    "pls_encoder_probes": _probe_path(PLS_ENCODER_PROBES),
}


def torch_key(module: str, path: tuple[str, ...]) -> str | None:
    """The official state-dict key of one Flax variable, or None if it has no counterpart.

    Args:
      module: which of our modules `path` is relative to (a key of `MODULES`).
      path: the variable's path inside its collection, e.g. ("encoder", "layer1_0", "bn1",
        "scale") for "seqjepa" or ("bn1", "mean") for "resnet".
    """
    leaf = path[-1]
    names = tuple(n for n in path[:-1] if n != _DENSE)
    if not names:  # a parameter of the module itself: the [AGG] token
        return leaf
    modules = MODULES[module](names)
    if modules is None:
        return None
    key = ".".join([*modules, _LEAF_NAMES[leaf]])
    # nn.MultiheadAttention keeps its fused in-projection as its own parameters, not a Linear.
    return key.replace(".in_proj.weight", ".in_proj_weight").replace(
        ".in_proj.bias", ".in_proj_bias"
    )


def _torch_shape(leaf: str, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape of a Flax variable: conv HWIO -> OIHW, linear (in, out) -> (out, in)."""
    if leaf == "kernel" and len(flax_shape) == 4:
        h, w, i, o = flax_shape
        return (o, i, h, w)
    if leaf == "kernel" and len(flax_shape) == 2:
        return tuple(reversed(flax_shape))
    return tuple(flax_shape)


def _to_flax_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and value.ndim == 4:
        value = value.transpose(2, 3, 1, 0)
    elif leaf == "kernel" and value.ndim == 2:
        value = value.T
    return np.ascontiguousarray(value, dtype=np.float32)


class Mismatches:
    """Mismatches between a state dict and the config's model, reported together."""

    def __init__(self) -> None:
        self.missing: list[tuple[str, tuple[int, ...]]] = []
        self.unknown: list[tuple[str, tuple[int, ...]]] = []
        self.shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

    def __bool__(self) -> bool:
        return bool(self.missing or self.unknown or self.shapes)

    def message(self, header: str, hint: Callable[[str, str], str]) -> str:
        lines = [header]
        sections = (
            ("shape", "Shape mismatches (PyTorch layout; expected by the config, found):",
             [(k, f"expected {e}, found {f}") for k, e, f in self.shapes]),
            ("missing", "Missing keys (the config's model has them, the checkpoint does not):",
             [(k, f"expected shape {s}") for k, s in self.missing]),
            ("unknown", "Unknown keys (in the checkpoint, not in the config's model):",
             [(k, f"shape {s}") for k, s in self.unknown]),
        )  # fmt: skip
        hints: list[str] = []
        for kind, title, entries in sections:
            if not entries:
                continue
            lines.append(f"{title} {len(entries)}")
            lines += [f"  {key}: {detail}" for key, detail in entries[:_MAX_LISTED]]
            if len(entries) > _MAX_LISTED:
                lines.append(f"  ... and {len(entries) - _MAX_LISTED} more")
            for key, _ in entries:
                text = hint(key, kind)
                if text not in hints:
                    hints.append(text)
        lines.append("Likely causes:")
        lines += [f"  - {text}" for text in hints]
        return "\n".join(lines)


def fill_variables(
    state_dict: StateDict,
    template: Mapping[str, Any],
    module: str,
    prefix: str,
    used: set[str],
    problems: Mismatches,
) -> dict:
    """`template` ({collection: tree}) with every leaf taken from the state dict if it has a key.

    Leaves without an official counterpart keep the template's value (it must be concrete then).
    """
    filled = {}
    for flat_path, leaf_value in traverse_util.flatten_dict(template).items():
        path = flat_path[1:]  # drop the collection name
        key = torch_key(module, path)
        if key is None:
            filled[flat_path] = leaf_value
            continue
        key = prefix + key
        expected = _torch_shape(path[-1], tuple(leaf_value.shape))
        if key not in state_dict:
            problems.missing.append((key, expected))
            continue
        used.add(key)
        value = state_dict[key]
        if tuple(value.shape) != expected:
            problems.shapes.append((key, expected, tuple(value.shape)))
            continue
        filled[flat_path] = _to_flax_layout(path[-1], value)
    return traverse_util.unflatten_dict(filled)


def generic_hint(key: str, kind: str) -> str:
    return f"{key} does not belong to the official SeqJEPA_Transforms / SeqJEPA_PLS state dict."


def module_variables(
    state_dict: StateDict, template: Mapping[str, Any], module: str, prefix: str = ""
) -> dict:
    """Flax variables of one of our modules from the official (sub-)state dict of its counterpart.

    Args:
      state_dict: official names -> numpy arrays (torch layout).
      template: the module's variables, e.g. `jax.eval_shape(module.init, ...)`: only the shapes
        are read.
      module: a key of `MODULES` ("resnet" also fits a single BasicBlock).
      prefix: prepended to every official key (e.g. "encoder.").

    Raises:
      ValueError: listing missing, unknown (under `prefix`) and mis-shaped keys.
    """
    used: set[str] = set()
    problems = Mismatches()
    variables = fill_variables(state_dict, template, module, prefix, used, problems)
    problems.unknown = [
        (k, tuple(v.shape))
        for k, v in state_dict.items()
        if k.startswith(prefix) and k not in used and not k.endswith("num_batches_tracked")
    ]
    if problems:
        raise ValueError(
            problems.message(f"Cannot map the state dict onto {module}:", generic_hint)
        )
    return variables
