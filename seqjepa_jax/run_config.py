"""The workdir's `config.json`: a resumed run keeps the trajectory it started (issue 20).

Rerunning a command resumes from the workdir's newest checkpoint. If the config changed in between
(another batch size, learning rate, model, seed, number of epochs...), the resumed steps follow a
different trajectory than the checkpointed ones, and the workdir's `config.json`, rewritten, no
longer describes the run that made the checkpoints. `check_config_change` therefore compares the
config with the saved one before anything is written and refuses a change of any field that alters
the trajectory, unless the caller allows it (`--allow_config_change`); an allowed change keeps the
old file as `config.step<N>.json` (N: the step the new config takes over at), so no record is lost.

Fields that may change freely (`FREE_FIELDS`) are those that do not change a single trained
parameter:

- logging, progress bar and checkpoint cadence: `train.log_every_steps`, `train.progress_bar`,
  `train.checkpoint_every_steps`, `train.keep_checkpoints`, `train.async_checkpoints`;
- online evaluation frequency (`train.eval_every_epochs`: reads the state, never updates it) and
  every evaluation setting (`eval.*`: final probes and figures only);
- where the data lives and how it is fetched or verified (`data.data_dir`, `data.download`,
  `data.manual_dir`, `data.verify_files`): the location, not the content;
- the held-out and OOD splits (`data.eval_split`, `data.probe_train_split`, `data.ood_dir`,
  `data.ood_split`, `data.procedural.num_val_objects`, `data.procedural.num_ood_objects`: the
  procedural training objects do not depend on them);
- recovery switches a user needs to continue a stopped run: `train.on_nonfinite` ("skip" differs
  from "stop" only at a non-finite step, where "stop" ends the run) and `data.on_bad_file`
  ("skip" drops damaged objects; that changes the data order from the resumed step on, which is
  the point of choosing it).

Every other field, including fields added later, counts as changing the trajectory. A field
present on one side only (a config.json written by an older version) is reported in the log and
not refused: the checkpoint-shape check still catches a structural difference.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import ml_collections
from absl import logging
from etils import epath

from seqjepa_jax.user_errors import UserError

CONFIG_FILE = "config.json"
FREE_FIELDS = (
    "train.log_every_steps",
    "train.progress_bar",
    "train.checkpoint_every_steps",
    "train.keep_checkpoints",
    "train.async_checkpoints",
    "train.eval_every_epochs",
    "train.on_nonfinite",
    "eval.*",
    "data.data_dir",
    "data.download",
    "data.manual_dir",
    "data.verify_files",
    "data.on_bad_file",
    "data.eval_split",
    "data.probe_train_split",
    "data.ood_dir",
    "data.ood_split",
    "data.procedural.num_val_objects",
    "data.procedural.num_ood_objects",
)
"""Config fields whose change does not alter the training trajectory (module docstring)."""


class ConfigChangedError(UserError):
    """The config differs from the workdir's config.json in fields that alter the trajectory."""


def write_text_atomically(path: str, text: str) -> None:
    """Writes `text` to `path` so that a crash or a full disk leaves the old file whole.

    Local paths: a temporary file in the same folder, then an atomic rename. URLs (gs://...): one
    object write, which object stores make atomic already.
    """
    if "://" in path:
        epath.Path(path).write_text(text)
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train.batch_size': 8, ...} of a nested dict (tuples stay JSON lists)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def as_json_tree(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as config.json stores it (so values compare like for like)."""
    return json.loads(config.to_json_best_effort())


def is_free(field: str) -> bool:
    """Whether changing `field` (dotted, without 'config.') leaves the trajectory unchanged."""
    return any(
        field == pattern or (pattern.endswith(".*") and field.startswith(pattern[:-1]))
        for pattern in FREE_FIELDS
    )


def config_changes(
    saved: dict[str, Any], config: ml_collections.ConfigDict
) -> tuple[list[tuple[str, Any, Any]], list[str]]:
    """([(field, saved value, new value)] of fields on both sides that differ, [fields on one
    side only]), both sorted."""
    old, new = flatten(saved), flatten(as_json_tree(config))
    changed = [(k, old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
    return changed, sorted(old.keys() ^ new.keys())


def read_saved_config(workdir: str) -> dict[str, Any] | None:
    """The workdir's config.json, or None if absent or unreadable (then a warning)."""
    path = epath.Path(workdir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        logging.warning("Cannot read %s (%s); not comparing the config with it.", path, error)
        return None
    return saved if isinstance(saved, dict) else None


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def check_config_change(
    config: ml_collections.ConfigDict,
    workdir: str,
    resume_step: int | None,
    *,
    allow_change: bool = False,
) -> list[tuple[str, Any, Any]]:
    """Raises ConfigChangedError if resuming at `resume_step` would change the trajectory.

    Returns the changed fields (all of them, free ones included); [] for a fresh run
    (`resume_step` None) or a workdir without config.json. Reads only.
    """
    saved = read_saved_config(workdir) if resume_step is not None else None
    if saved is None:
        return []
    changed, one_sided = config_changes(saved, config)
    if one_sided:
        logging.warning(
            "%s and this config differ in which fields exist (another version of the code?): %s",
            CONFIG_FILE,
            ", ".join(one_sided[:20]),
        )
    binding = [(k, a, b) for k, a, b in changed if not is_free(k)]
    if binding and not allow_change:
        lines = "\n".join(f"  - config.{k}: {_show(a)} -> {_show(b)}" for k, a, b in binding)
        raise ConfigChangedError(
            f"--workdir={workdir} holds a run that was started with another config (its "
            f"{CONFIG_FILE}; checkpoint at step {resume_step}). Resuming with this config would "
            f"change the training trajectory:\n{lines}\nRerun with the run's values, pass a new "
            "--workdir, or pass --allow_config_change to resume at step "
            f"{resume_step} with the new values anyway (the old {CONFIG_FILE} is kept as "
            f"config.step{resume_step}.json). Logging, checkpoint cadence, evaluation settings "
            "and the data's location may change freely (docs/fault_tolerance.md)."
        )
    for k, a, b in changed:
        logging.warning(
            "Resuming at step %s with config.%s changed: %s -> %s%s",
            resume_step,
            k,
            _show(a),
            _show(b),
            "" if is_free(k) else " (changes the trajectory; allowed by --allow_config_change)",
        )
    return changed


def save_config(
    config: ml_collections.ConfigDict,
    workdir: str,
    resume_step: int | None,
    changed: list[tuple[str, Any, Any]],
) -> None:
    """Writes config.json atomically; a changed one is kept first as config.step<N>.json (or
    config.step<N>.<k>.json when the run changed its config at that step before)."""
    path = epath.Path(workdir) / CONFIG_FILE
    if changed and resume_step is not None and path.exists():
        backup = epath.Path(workdir) / f"config.step{resume_step}.json"
        copies = 1
        while backup.exists():
            copies += 1
            backup = epath.Path(workdir) / f"config.step{resume_step}.{copies}.json"
        write_text_atomically(str(backup), path.read_text())
    write_text_atomically(str(path), config.to_json_best_effort(indent=2))
