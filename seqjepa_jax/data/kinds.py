"""Which kind of view sequence each dataset makes, and the action width that follows from it.

Three kinds of data feed the same model (DESIGN.md "the one idea"):

- ``views``: objects rendered from several poses (3DIEBench, the built-in procedural dataset);
  actions are relative latents (`latents.py`, spec §6.1), d_a set by ``config.data.latent_type``;
- ``augment``: views made from one image by parameterised augmentations (CIFAR-100,
  TinyImageNet; spec §6.3); actions are parameter differences, d_a 9 (8 without blur); the
  latent type is ``"aug"``;
- ``saccade``: foveal glimpses of one image (STL-10, ImageNet; spec §6.4); actions are fixation
  position differences, d_a 2; the latent type is ``"saccade"``.

Kept free of TensorFlow and model imports so that config validation can use it cheaply.
"""

from __future__ import annotations

import ml_collections

from seqjepa_jax.data import latents as latents_lib

DATASET_KINDS = {
    "procedural": "views",
    "3diebench": "views",
    "cifar100": "augment",
    "tinyimagenet": "augment",
    "stl10": "saccade",
    "imagenet": "saccade",
}
LATENT_TYPES_OF_KIND = {
    "views": latents_lib.LATENT_TYPES,
    "augment": ("aug",),
    "saccade": ("saccade",),
}
SACCADE_ACTION_DIM = 2  # (row, col) position differences, spec §3.1
OOD_VIEW_IDS = (2, 3, 4, 5)  # the views of each 3DIEBench-OOD object (spec §6.2, Q31)


def dataset_kind(name: str) -> str:
    """'views', 'augment' or 'saccade' for a dataset name; ValueError naming the choices."""
    if name not in DATASET_KINDS:
        raise ValueError(
            f"config.data.name={name!r} is unknown; use one of {tuple(DATASET_KINDS)}."
        )
    return DATASET_KINDS[name]


def action_dim(data: ml_collections.ConfigDict) -> int:
    """d_a of `config.data` (spec §2.1: rot 4, rotcolor 6, aug 9 or 8 without blur, saccades 2)."""
    kind = dataset_kind(data.name)
    if data.latent_type not in LATENT_TYPES_OF_KIND[kind]:
        raise ValueError(
            f"config.data.latent_type={data.latent_type!r} does not fit config.data.name="
            f"{data.name!r}; use one of {LATENT_TYPES_OF_KIND[kind]}."
        )
    if kind == "views":
        return latents_lib.action_dim(data.latent_type)
    if kind == "augment":
        return 9 if data.augment.use_blur else 8  # [i, j, h, w, b, c, s, hue, (sigma)], §6.3
    return SACCADE_ACTION_DIM


def ood_views_per_object(data: ml_collections.ConfigDict) -> int:
    """Views per object of the OOD split: 4 for 3DIEBench-OOD (views 2..5, spec §6.2), else the
    split's usual `views_per_object` (the built-in renderer's OOD objects)."""
    return len(OOD_VIEW_IDS) if data.name == "3diebench" else int(data.views_per_object)


def ood_problem(config: ml_collections.ConfigDict) -> str | None:
    """Why `config` cannot be evaluated out of distribution (spec §6.2), with the fix; or None."""
    data = config.data
    if DATASET_KINDS.get(data.name) != "views":
        return (
            f"OOD evaluation needs 3D views (3diebench or procedural); config.data.name="
            f"{data.name!r} has no OOD split. Drop --ood / set config.eval.ood=False."
        )
    if data.name == "procedural" and data.procedural.num_ood_objects < 1:
        return (
            "OOD evaluation of the built-in objects needs its OOD split: set "
            "--config.data.procedural.num_ood_objects to a positive count (objects with "
            "rotations in [π/2, π] ∪ [-π, -π/2], spec §6.2)."
        )
    if data.name == "3diebench" and not data.ood_dir:
        return (
            "OOD evaluation of 3DIEBench needs config.data.ood_dir: the 3DIEBench-OOD root "
            "(<synset>/<object>/image_k.jpg and latent_k.npy, k = 2..5, spec §6.2) with "
            f"{data.ood_split}_images.npy and {data.ood_split}_labels.npy (the official OOD "
            "objects are val_images.npy[6000:] and val_labels.npy[6000:])."
        )
    return None
