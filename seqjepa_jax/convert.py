"""Import checkpoints of the official PyTorch seq-JEPA into this library's `TrainState`.

  python -m seqjepa_jax.convert --torch_checkpoint=ckpt_wandb-no-id_epoch_1000.pth \
      --config=configs/3diebench.py --out=workdirs/3diebench_official

writes an Orbax checkpoint of the whole `TrainState` to OUT/checkpoints/<step> and a summary to
OUT/conversion.json. `python -m seqjepa_jax.main --config=<same config> --workdir=OUT` resumes
training from it, and anything that restores run checkpoints (`checkpointing.Checkpointer`) reads
it. The config must describe the official model (`--config.a.b=value` overrides work).

Input (spec §9): `{'model': state_dict, 'optimizer': ..., 'epoch': E, ...}` as the official
scripts save it, or a bare state dict; DDP's `module.` prefix is stripped. Files are read with
`torch.load(weights_only=True)` only, which never runs pickled code.

What is imported (names and layouts: `official_keys.py`):

- `encoder.*`, `target_encoder.*` (torchvision ResNet) -> the online encoder and `target_params`;
  their BN buffers -> `batch_stats` and `target_batch_stats`: the target keeps its own statistics
  (spec §1.2, Q28).
- `action_proj.*`, `agg_token`, `transformer_encoder.*` (every layer as it is, tied or not, Q37;
  the extra final LayerNorm) and `predictor.*` -> the SeqJEPA params and BN statistics.
- Online probes of the transformed-views script: `online_linprobe.0` -> `probes/class_probe`,
  `online_equiprobe.0/.2/.4` -> `action_probe_0/_1/_out`. Of the saccade (PLS) script:
  `online_agg_probe.0` -> `class_probe`; its `online_res_probe` and linear `online_equiprobe` have
  no counterpart in `OnlineProbes`, so they are dropped (listed in the summary) and the action probe
  starts fresh. PLS checkpoints always contain the probes (Q18).
- Dropped: `num_batches_tracked` (used only by BN with momentum=None); `action_proj.*` of a model
  without action conditioning (SeqJEPA_PLS builds it even with act_cond=0 but never calls it).

Baselines (spec §8; `--config.method=NAME` selects which official class the file holds):
`encoder.*`, `projector.*` / `projector_inv.*` / `projector_equi.*`, `predictor.*` (SIE:
`predictor.hypernet.net.0.weight`), `action_proj.*`, and the EMA `target_encoder.*` +
`target_projector.*` of BYOL-conditional and Conv-IJEPA -> the method's params, batch statistics
and target; the transformed-views probes as above; Conv-IJEPA's `online_res_probe.0` ->
`class_probe` (it reads z1) and its linear `online_equiprobe.0` -> `action_probe_out`. The
official BYOL cannot be constructed from its entry point (Q12), so no official BYOL file exists;
one saved from a fixed construction has the same names and imports the same way.

BatchNorm running variance: PyTorch stores the *unbiased* running variance (spec §10.1), and so
does our BatchNorm with `unbiased_running_var=True` (the default, models/layers.py), so the values
are copied unchanged. With `unbiased_running_var=False` the imported value is still the right
estimate; only later updates use the biased rule.

Not imported:
- the optimiser state, which is freshly initialised: PyTorch's Adam state is keyed by position in
  `model.parameters()` with per-parameter step counters and torch layouts, the official AdamW
  groups differ from Optax's masking, and the official transforms resume drops it anyway (Q34).
  Like the official per-epoch LR reassignment on resume, the LR schedule continues at the imported
  step (`optimizers.resume_schedule_at`) while Adam's moments restart.
- the RNG key (fresh from config.seed).

Step: `--step` if given; else the checkpoint's 'epoch' (completed epochs: the official scripts save
`epoch + 1`) times `--steps_per_epoch`, or, when that is 0, times the steps per epoch of the
config's training split for one process, as `train.py` computes them (this opens the data; pass
the flag for multi-host runs or to avoid it); 0 without an 'epoch'.

Not checkable from the weights, so taken from the config on trust: num_heads (the fused in-proj has
the same shape for every head count), the dropout rate, and the forward-order switches
(`pred_action_first`, `zero_last_action_before_projection`: transformed views vs saccades, Q29,
Q30). With learn_act_emb=False our model fixes Q7, so its outputs differ from the official rel path
by design.

Any unknown key, missing key or shape mismatch raises one ValueError listing each (expected vs
found shape, PyTorch layout) with the config field that most likely causes it; nothing is written
to --out then.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import traverse_util

from seqjepa_jax.official_keys import (
    Mismatches,
    StateDict,
    fill_variables,
    generic_hint,
    torch_key,
)
from seqjepa_jax.state import TrainState
from seqjepa_jax.torch_checkpoint import load_official_checkpoint
from seqjepa_jax.user_errors import checking_inputs, entry_point

# Probes only main_pls.py creates: their presence marks a saccade (PLS) checkpoint.
PLS_ONLY_PROBES = ("online_res_probe.", "online_agg_probe.")


def probe_flavour(state_dict: StateDict) -> str:
    """Whose online probes the checkpoint holds: main_pls.py's ("pls") or else
    main_transformed_views.py's ("transforms")."""
    return "pls" if any(k.startswith(PLS_ONLY_PROBES) for k in state_dict) else "transforms"


def _droppable(
    state_dict: StateDict, *, act_cond: bool, skip_probes: bool, method: str = "seqjepa"
) -> dict[str, list]:
    """Official keys deliberately not imported, grouped by reason (see the module docstring)."""
    flavour = probe_flavour(state_dict)
    seqjepa = method == "seqjepa"
    reasons: dict[str, list[str]] = {}
    for key in state_dict:
        reason = None
        if key.endswith("num_batches_tracked"):
            reason = "BN step counter (unused with momentum 0.1)"
        elif key.startswith("online_") and skip_probes:
            reason = "--skip_probes: the online probes start fresh"
        elif (
            seqjepa
            and flavour == "pls"
            and key.startswith(("online_res_probe.", "online_equiprobe."))
        ):
            reason = "PLS probe without a counterpart in OnlineProbes"
        elif seqjepa and key.startswith("action_proj.") and not act_cond:
            reason = "action projection of a model without action conditioning (never used)"
        if reason:
            reasons.setdefault(reason, []).append(key)
    return reasons


def _checkpoint_hint(use_ema: bool, method: str = "seqjepa") -> Callable[[str, str], str]:
    """The config field most likely responsible for a mismatch on `key` (see `Mismatches`)."""
    options = f"--config.methods.{method}"
    rules = [
        (r"^target_(encoder|projector)\.", {"missing"} if use_ema else {"unknown"},
         "the checkpoint was trained without --ema (no target encoder): set "
         "--config.train.use_ema=False" if use_ema else
         "the checkpoint has an EMA target encoder (official --ema): set "
         "--config.train.use_ema=True"),
        (r"^(target_)?encoder\.conv1\.weight$", {"shape"},
         "the ResNet stem: a 3x3 conv1 is the CIFAR stem (official --cifar-resnet, "
         "--config.model.stem=cifar), a 7x7 one the ImageNet stem (stem=imagenet)"),
        (r"^(target_)?encoder\.", None,
         "the ResNet size: --config.model.width (64 for ResNet-18) and --config.model.stage_sizes "
         "((2, 2, 2, 2) for ResNet-18)"),
        (r"^action_proj\.", {"shape"},
         "the action embedding (P, d_a): --config.model.act_proj_dim (official --act-projdim, "
         "128) and d_a from --config.data.latent_type (rot 4, color 2, rotcolor 6; saccades: 2)"),
        (r"^action_proj\.", None,
         "action conditioning: --config.model.act_cond and learn_act_emb (official --act-cond, "
         "--learn-act-emb)"),
        (r"^transformer_encoder\.transformer_encoder\.layers\.\d+\.", {"missing", "unknown"},
         "the aggregator depth: --config.model.num_layers (official --num-enc-layers, 3)"),
        (r"^(agg_token|transformer_encoder\.)", None,
         "the token width E = D + P (D = 8 x width): --config.model.act_proj_dim, act_cond, "
         "learn_act_emb, width; the FFN width is mlp_ratio x E (official 4)"),
        (r"^(target_)?projector(_inv|_equi)?\.", None,
         f"the projector widths: {options}.projector_dims (and the encoder width, its input)"),
        (r"^predictor\.", None if method != "seqjepa" else set(),
         f"the predictor: {options}.predictor_hidden / projector_dims, --config.model.pred_hidden "
         "and act_proj_dim (official --pred-hidden, --act-projdim), learn_act_emb, and d_a from "
         "--config.data.latent_type"),
        (r"^predictor\.", None,
         "the predictor: --config.model.pred_hidden (official --pred-hidden, 1024; <= 0 for the "
         "linear variant) and its input width (act_cond, act_proj_dim)"),
        (r"^online_(linprobe|agg_probe)\.", None,
         "the class probe: --config.data.num_classes (3DIEBench 55, STL-10 10), or --skip_probes"),
        (r"^online_res_probe\.", None,
         "the encoder class probe: --config.data.num_classes, or --skip_probes"),
        (r"^online_", None,
         "the action probe: --config.model.probe_hidden (official 1024) and d_a from "
         "--config.data.latent_type, or --skip_probes"),
    ]  # fmt: skip

    def hint(key: str, kind: str) -> str:
        for pattern, kinds, text in rules:
            if re.match(pattern, key) and (kinds is None or kind in kinds):
                return text
        return generic_hint(key, kind)

    return hint


def _map_weights(
    state_dict: StateDict,
    template: TrainState,
    *,
    act_cond: bool,
    skip_probes: bool,
    source: str,
    method: str = "seqjepa",
) -> tuple[dict, dict, dict, dict[str, Any]]:
    """(model, probe, target variables, notes) mapped onto `template`'s structure; raises on any
    mismatch. `template` may be abstract (`jax.eval_shape`), then the fresh leaves stay abstract."""
    use_ema = template.target_params is not None
    dropped = _droppable(state_dict, act_cond=act_cond, skip_probes=skip_probes, method=method)
    ignored = {key for keys in dropped.values() for key in keys}
    mapped = {k: v for k, v in state_dict.items() if k not in ignored}
    flavour = probe_flavour(state_dict)
    used: set[str] = set()
    problems = Mismatches()

    def fill(tree: Mapping[str, Any], module: str, prefix: str = "") -> dict:
        return fill_variables(mapped, tree, module, prefix, used, problems)

    seqjepa = method == "seqjepa"
    model = fill(
        {"params": template.params["model"], "batch_stats": template.batch_stats},
        "seqjepa" if seqjepa else "baseline",
    )
    probes = {"params": template.params["probes"]}
    probe_module = "online_probes"
    if flavour == "pls":
        probe_module = "pls_online_probes" if seqjepa else "pls_encoder_probes"
    if not skip_probes:
        probes = fill(probes, probe_module)
    target: dict = {}
    if use_ema:
        variables = {"params": template.target_params, "batch_stats": template.target_batch_stats}
        # seq-JEPA's target is the encoder alone; the baselines' targets are encoder + projector.
        target = (
            fill(variables, "resnet", "target_encoder.")
            if seqjepa
            else fill(variables, "target_network")
        )
    problems.unknown = [(k, tuple(v.shape)) for k, v in mapped.items() if k not in used]
    if problems:
        header = f"Cannot import {source} into the model of this config (nothing was written):"
        raise ValueError(problems.message(header, _checkpoint_hint(use_ema, method)))
    fresh = []
    if skip_probes or flavour == "pls":
        fresh = sorted(
            "probes/" + "/".join(p)
            for p in traverse_util.flatten_dict(template.params["probes"])
            if skip_probes or torch_key(probe_module, p) is None
        )
    notes = {
        "probe_flavour": flavour,
        "imported_keys": len(used),
        "dropped_keys": dropped,
        "fresh_variables": fresh,
    }
    return model, probes, target, notes


def check_official_weights(
    state_dict: StateDict,
    abstract_state: TrainState,
    *,
    act_cond: bool,
    skip_probes: bool = False,
    source: str = "the checkpoint",
    method: str = "seqjepa",
) -> dict[str, Any]:
    """Raises the ValueError of `import_official_weights` without building a state (shapes only,
    e.g. from `jax.eval_shape`), so mismatches surface before anything compiles; returns notes."""
    *_, notes = _map_weights(
        state_dict,
        abstract_state,
        act_cond=act_cond,
        skip_probes=skip_probes,
        source=source,
        method=method,
    )
    return notes


def import_official_weights(
    state_dict: StateDict,
    fresh_state: TrainState,
    *,
    act_cond: bool,
    skip_probes: bool = False,
    source: str = "the checkpoint",
    method: str = "seqjepa",
) -> tuple[TrainState, dict[str, Any]]:
    """`fresh_state` with the official weights and BN statistics in place (no file I/O).

    Args:
      state_dict: official keys -> numpy arrays (`load_official_checkpoint`).
      fresh_state: a state built from the config (`train.create_state`); gives the structure and
        the shardings, and keeps its optimiser state, RNG key, step and any variable without an
        official counterpart.
      act_cond: the model's action conditioning (decides whether `action_proj.*` may be dropped).
      skip_probes: keep the fresh online probes and ignore the official ones.
      source: names the checkpoint in error messages.
      method: `config.method` of the state: seq-JEPA or the baseline of the same official class
        (spec §8).

    Returns:
      (the state, notes: probe flavour, number of imported tensors, dropped keys by reason, Flax
      paths kept fresh).

    Raises:
      ValueError: one message listing every unknown key, missing key and shape mismatch.
    """
    model, probes, target, notes = _map_weights(
        state_dict,
        fresh_state,
        act_cond=act_cond,
        skip_probes=skip_probes,
        source=source,
        method=method,
    )

    def placed(new: Any, old: Any) -> Any:
        return jax.tree.map(lambda n, o: jax.device_put(n, o.sharding), new, old)

    use_ema = fresh_state.target_params is not None
    state = fresh_state.replace(
        params=placed({"model": model["params"], "probes": probes["params"]}, fresh_state.params),
        batch_stats=placed(model["batch_stats"], fresh_state.batch_stats),
        target_params=placed(target["params"], fresh_state.target_params) if use_ema else None,
        target_batch_stats=(
            placed(target["batch_stats"], fresh_state.target_batch_stats) if use_ema else None
        ),
    )
    return state, notes


def resolve_step(
    metadata: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    step: int | None = None,
    steps_per_epoch: int = 0,
) -> tuple[int, str]:
    """(train step of the imported state, how it was obtained); see the module docstring."""
    if step is not None:
        if step < 0:
            raise ValueError(f"--step={step} must be >= 0.")
        return int(step), "--step"
    epoch = metadata.get("epoch")
    if epoch is None:
        return 0, "no 'epoch' in the checkpoint"
    if steps_per_epoch < 0:
        raise ValueError(f"--steps_per_epoch={steps_per_epoch} must be >= 0 (0: from the data).")
    how = f"epoch {int(epoch)} x --steps_per_epoch={steps_per_epoch}"
    if not steps_per_epoch:
        from seqjepa_jax.data.datasets import build_data
        from seqjepa_jax.sharding import make_mesh

        data = build_data(config, make_mesh())
        steps_per_epoch = data.steps_per_epoch(config.train.batch_size)
        how = f"epoch {int(epoch)} x {steps_per_epoch} steps per epoch of the config's train split"
    return int(epoch) * steps_per_epoch, how


def _check_out(out: str) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(
            f"--out={out} exists and is not an empty directory; the converter never overwrites: "
            "give a new directory."
        )


def convert_checkpoint(
    torch_checkpoint: str,
    config: ml_collections.ConfigDict,
    out: str,
    *,
    step: int | None = None,
    steps_per_epoch: int = 0,
    skip_probes: bool = False,
) -> dict[str, Any]:
    """Converts an official checkpoint into OUT/checkpoints/<step>; returns the summary.

    Everything is checked before OUT is created, so a failed conversion leaves it untouched.
    """
    from seqjepa_jax import checkpointing, train
    from seqjepa_jax.config_checks import validate_config
    from seqjepa_jax.optimizers import build_optimizer, resume_schedule_at
    from seqjepa_jax.sharding import make_mesh, replicated

    _check_out(out)
    mesh = make_mesh()
    validate_config(config, device_count=mesh.devices.size, process_count=jax.process_count())
    state_dict, metadata = load_official_checkpoint(torch_checkpoint)
    model, probes = train.build_model(config)
    # The optimiser state's structure does not depend on the schedule's values.
    optimizer = build_optimizer(
        config.train.optimizer, lambda count: jnp.zeros(()), config.train.weight_decay
    )

    def create() -> TrainState:
        return train.create_state(config, model, probes, optimizer, mesh)

    options = {
        "act_cond": config.model.act_cond,
        "skip_probes": skip_probes,
        "method": config.method,
    }
    # Shapes first: a mismatch is reported before anything compiles.
    check_official_weights(state_dict, jax.eval_shape(create), source=torch_checkpoint, **options)
    step, step_source = resolve_step(metadata, config, step, steps_per_epoch)
    state, notes = import_official_weights(state_dict, create(), source=torch_checkpoint, **options)
    state = state.replace(
        step=jnp.asarray(step, jnp.int32), opt_state=resume_schedule_at(state.opt_state, step)
    )
    state = jax.device_put(state, replicated(mesh))

    os.makedirs(out, exist_ok=True)
    ckpt = checkpointing.Checkpointer(
        checkpointing.checkpoint_dir(out), save_every_steps=1, async_save=False
    )
    ckpt.save(step, state, force=True)
    ckpt.close()
    summary = {
        "torch_checkpoint": os.path.abspath(torch_checkpoint),
        "step": step,
        "step_from": step_source,
        "checkpoint_metadata": metadata,
        **notes,
        "config": json.loads(config.to_json_best_effort()),
    }
    with open(os.path.join(out, "conversion.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


@entry_point
def main(argv: list[str]) -> None:
    """Entry point for absl (flags are defined in `_define_flags`). Conversion only reads and
    checks its inputs before the one write, so its ValueErrors and OSErrors are the user's: one
    `ERROR:` line (`user_errors.py`)."""
    del argv
    from absl import flags, logging

    from seqjepa_jax import checkpointing

    checkpointing.quiet_orbax_logs()
    f = flags.FLAGS
    with checking_inputs():
        summary = convert_checkpoint(
            f.torch_checkpoint,
            f.config,
            f.out,
            step=f.step,
            steps_per_epoch=f.steps_per_epoch,
            skip_probes=f.skip_probes,
        )
    dropped = {reason: len(keys) for reason, keys in summary["dropped_keys"].items()}
    logging.info(
        "Imported %d tensors (%s probes) at step %d (%s); dropped %s; fresh %s. Wrote %s.",
        summary["imported_keys"],
        summary["probe_flavour"],
        summary["step"],
        summary["step_from"],
        dropped,
        summary["fresh_variables"],
        f.out,
    )


def _define_flags() -> None:
    """Flags of the command line (defined only when run as a script, so imports stay clean)."""
    from absl import flags
    from ml_collections import config_flags

    flags.DEFINE_string("torch_checkpoint", None, "Official .pth file (state dict or {'model':})")
    config_flags.DEFINE_config_file(
        "config", None, "Config of the official model, e.g. configs/3diebench.py:rotcolor."
    )
    flags.DEFINE_string("out", None, "New directory; gets checkpoints/<step> and conversion.json.")
    flags.DEFINE_integer("step", None, "Train step of the imported state (default: from 'epoch').")
    flags.DEFINE_integer(
        "steps_per_epoch", 0, "Steps per epoch for 'epoch' x steps (0: from the config's data)."
    )
    flags.DEFINE_bool("skip_probes", False, "Ignore the official online probes; start them fresh.")
    flags.mark_flags_as_required(["torch_checkpoint", "config", "out"])


if __name__ == "__main__":
    from absl import app

    from seqjepa_jax.config_overrides import parse_flags_checked

    _define_flags()
    app.run(main, flags_parser=parse_flags_checked)
