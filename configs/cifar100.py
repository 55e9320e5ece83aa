"""seq-JEPA on CIFAR-100 with parameterised augmentations (spec §5.3 "CIFAR-100, README", §6.3).

Run (TFDS prepares CIFAR-100 under DATA on first use when downloads are allowed):

  python -m seqjepa_jax.main --config=configs/cifar100.py --workdir=workdirs/cifar100 \
      --config.data.data_dir=DATA --config.data.download=True

Baselines (spec §8) on the same views: add `--config.method=NAME` with NAME one of simclr,
byol, vicreg, vicreg_traj, equimod, byol_cond, sen, sie; e.g. `--config.method=equimod
--config.methods.equimod.equi_factor=0.5`.

Variants: `:no_blur` (the official `--no-blur`, d_a 8), `:official_actions` (the official
per-sample L2 normalisation of the parameters across views, Q4), `:smoke` (a tiny model and a few
steps, for TFDS mock data in the tests or a quick check of the pipeline).
The recipe: ResNet-18 with the CIFAR stem on 32 px views, M_tr = 3 observation views plus one target
view per image, actions = differences of [i, j, h, w, b, c, s, hue, σ] (d_a 9), batch 256, 2000
epochs, EMA τ_base 0.996, and what the official code ran for the optimiser: Adam (wd 0), a 20-epoch
per-epoch warmup 1e-5 -> 4e-4, then constant (Q1, Q2). Probes: fitted on train, scored on test.
"""

from __future__ import annotations

import ml_collections

from seqjepa_jax.config_defaults import NORMALISATION, augmentation_recipe, base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The official CIFAR-100 recipe; `arg` selects a variant (see the module docstring)."""
    config = base_config()
    config.data.name = "cifar100"
    config.data.image_size = 32
    config.data.num_classes = 100
    config.data.mean = NORMALISATION["cifar100"][0]
    config.data.std = NORMALISATION["cifar100"][1]
    config.data.train_split = "train"
    config.data.eval_split = "test"
    return augmentation_recipe(config, arg, "cifar100.py")
