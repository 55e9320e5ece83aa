"""seq-JEPA on TinyImageNet with parameterised augmentations (spec §6.3; no official recipe).

Run (the unzipped http://cs231n.stanford.edu/tiny-imagenet-200.zip under DATA; the images are
decoded once and cached under DATA/seqjepa_cache):

  python -m seqjepa_jax.main --config=configs/tinyimagenet.py --workdir=workdirs/tinyimagenet \
      --config.data.data_dir=DATA

The official release gives no TinyImageNet recipe (spec §5.3), so this is the CIFAR-100 recipe at
64 px with the TinyImageNet constants, 200 classes, the 7-tap blur kernel of 64 px images and
the CIFAR stem (our choice: the ImageNet stem would leave a 2x2 final map at 64 px). Probes are
fitted on train and scored on val. Baselines: `--config.method=NAME` as for CIFAR-100.
Variants as in configs/cifar100.py: `:no_blur`, `:official_actions`, `:smoke`.
"""

from __future__ import annotations

import ml_collections

from seqjepa_jax.config_defaults import NORMALISATION, augmentation_recipe, base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The TinyImageNet recipe; `arg` selects a variant (see the module docstring)."""
    config = base_config()
    config.data.name = "tinyimagenet"
    config.data.image_size = 64
    config.data.num_classes = 200
    config.data.mean, config.data.std = NORMALISATION["tinyimagenet"]
    config.data.train_split = "train"
    config.data.eval_split = "val"
    return augmentation_recipe(config, arg, "tinyimagenet.py")
