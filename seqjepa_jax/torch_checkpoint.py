"""Reading official PyTorch checkpoint files without running code stored in them (issue 20).

`torch.load(weights_only=True)` refuses any pickled object that is not a tensor or a plain
container, which is what keeps a downloaded checkpoint from executing code; but its error then
advises turning weights_only off. `load_official_checkpoint` answers instead with what the file
holds and how to re-save only its weights, and names unreadable files (truncated downloads, files
that are not checkpoints) in one ValueError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np


def load_official_checkpoint(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(state dict as float32/int numpy arrays, metadata such as 'epoch') of an official file.

    Accepts `{'model': state_dict, ...}` (spec §9) or a bare state dict; strips `module.`.
    """
    import torch

    if not os.path.isfile(path):
        raise ValueError(f"--torch_checkpoint={path!r} is not a file.")
    loaded = _load_weights_only(torch, path)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict or a dict.")
    metadata: dict[str, Any] = {}
    state_dict = loaded
    if isinstance(loaded.get("model"), Mapping):
        state_dict = loaded["model"]
        metadata = {k: v for k, v in loaded.items() if isinstance(v, (int, float, str))}
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; expected an "
                "official checkpoint ({'model': state_dict, ...}) or a bare state dict."
            )
        value = value.detach().cpu()
        value = value.float() if value.is_floating_point() else value
        arrays[key.removeprefix("module.")] = value.numpy()
    return arrays, metadata


def _load_weights_only(torch: Any, path: str) -> Any:
    """`torch.load(weights_only=True)`, with ValueErrors that say what the file is instead of
    torch's advice to turn weights_only off (which would run whatever code the file pickled)."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f" such as {found.group(1)}" if found else ""
        raise ValueError(
            f"{path} holds pickled Python objects{what} besides tensors, or is not a PyTorch "
            "checkpoint at all. The converter reads tensors only and never runs code stored in a "
            "file. Where you trust the file, re-save just its weights in Python: "
            "torch.save({'model': ckpt['model'], 'epoch': ckpt['epoch']}, 'weights.pth')."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:  # torch's "invalid magic number", zips
        raise ValueError(
            f"{path} cannot be read as a PyTorch checkpoint ({str(error).splitlines()[0]}); is "
            "it complete? Pass the .pth file the official training scripts save."
        ) from None
