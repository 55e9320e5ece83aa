"""On-disk cache of the built-in procedural dataset (`procedural.py`), one `.npz` file per split.

Rendering a split takes seconds to a minute on the CPU, so `load_or_render` renders it once and
reuses the file afterwards. It lives apart from the renderer to keep `procedural.py` about the
scene and its pictures (spec §6.1-§6.2) and this module about files: names, atomic writes and
checks on reading.

A file's name holds a hash of every setting that changes its pictures (`_cache_settings`,
including `procedural.RENDERER_VERSION`), so a changed setting never reuses an old file; a split's
file does not depend on the sizes of the other splits. The renderer is called through the module
attribute `procedural.render_objects`, so patching that attribute (as the tests do) takes effect.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import warnings
import zipfile

import numpy as np

from seqjepa_jax.data import procedural
from seqjepa_jax.data.procedural import ProceduralConfig, ViewArrays

__all__ = ["cache_path", "load_or_render"]

log = logging.getLogger(__name__)


def _cache_settings(config: ProceduralConfig, split: str) -> dict[str, object]:
    """Every setting that changes the pictures of one split (and nothing else)."""
    return {
        "renderer_version": procedural.RENDERER_VERSION,
        "split": split,
        "first_object_id": procedural._SPLITS[split],
        "num_objects": getattr(config, f"num_{split}_objects"),
        "views_per_object": config.views_per_object,
        "image_size": config.image_size,
        "seed": config.seed,
        "ood": split == "ood",
        **_scene_settings(config),
    }


def _scene_settings(config: ProceduralConfig) -> dict[str, object]:
    """The scene options that differ from 3DIEBench's (none for the default scene, so that
    caches of the default scene keep their names)."""
    out: dict[str, object] = {}
    if config.max_angle != math.pi / 2:
        out["max_angle"] = config.max_angle
    if not config.vary_lighting:
        out["vary_lighting"] = False
    return out


def cache_path(cache_dir: str, config: ProceduralConfig, split: str) -> str:
    """Cache file of one split; its name holds a hash of `_cache_settings`."""
    settings = _cache_settings(config, split)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    name = (
        f"procedural_{split}_{settings['num_objects']}obj_{config.views_per_object}v_"
        f"{config.image_size}px_seed{config.seed}_{digest}.npz"
    )
    return os.path.join(cache_dir, name)


def _save_atomic(path: str, arrays: ViewArrays, settings: dict[str, object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp_", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(settings, sort_keys=True)),
                     **dataclasses.asdict(arrays))  # fmt: skip
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _load_cache(path: str, settings: dict[str, object]) -> ViewArrays:
    """Load and check a cache file; raises ValueError if it is unreadable or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = ViewArrays(**{f.name: z[f.name] for f in dataclasses.fields(ViewArrays)})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"unreadable cache file {path}: {type(e).__name__}: {e}") from e
    n, v, s = settings["num_objects"], settings["views_per_object"], settings["image_size"]
    expected = {
        "images": ((n, v, s, s, 3), np.uint8), "latents": ((n, v, 7), np.float32),
        "labels": ((n,), np.int32), "object_ids": ((n,), np.int32),
    }  # fmt: skip
    if meta != settings:
        raise ValueError(f"cache file {path} holds other settings: {meta} != {settings}")
    for name, (shape, dtype) in expected.items():
        a = getattr(arrays, name)
        if a.shape != shape or a.dtype != dtype:
            raise ValueError(f"cache file {path}: {name} is {a.dtype}{a.shape}, not {dtype}{shape}")
    return arrays


def load_or_render(
    cache_dir: str, config: ProceduralConfig, splits: tuple[str, ...] = ("train", "val")
) -> dict[str, ViewArrays]:
    """Each requested split from its cache file under `cache_dir`, rendered and cached if absent.

    Splits: "train", "val" (held-out instances) and "ood" (other held-out instances, OOD rotations).
    A cache file is written once, atomically; a damaged one is re-rendered with a warning.
    """
    if isinstance(splits, str):
        splits = (splits,)
    for split in splits:
        if split not in procedural._SPLITS:
            raise ValueError(
                f"unknown split {split!r} in splits; choose from {tuple(procedural._SPLITS)}"
            )
    os.makedirs(cache_dir, exist_ok=True)
    out = {}
    for split in splits:
        path, settings = cache_path(cache_dir, config, split), _cache_settings(config, split)
        if os.path.exists(path):
            try:
                out[split] = _load_cache(path, settings)
                log.info("procedural %s split: reusing cache %s", split, path)
                continue
            except ValueError as e:
                warnings.warn(f"{e}; rendering it again and overwriting it", stacklevel=2)
        log.info("procedural %s split: rendering %d objects -> %s", split,
                 settings["num_objects"], path)  # fmt: skip
        out[split] = procedural.render_objects(
            procedural.split_object_ids(config, split), config.views_per_object,
            config.image_size, config.seed, ood=split == "ood", max_angle=config.max_angle,
            vary_lighting=config.vary_lighting, progress=True,
        )  # fmt: skip
        _save_atomic(path, out[split], settings)
    return out
