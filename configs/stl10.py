"""seq-JEPA across saccades on STL-10 (spec §5.3 "STL-10 PLS", §6.4.1-§6.4.2).

Run (TFDS prepares STL-10 under DATA on first use when downloads are allowed):

  python -m seqjepa_jax.main --config=configs/stl10.py --workdir=workdirs/stl10 \
      --config.data.data_dir=DATA --config.data.download=True

With the released DeepGaze IIE maps (HF `Hafez/salmap-stl10`, laid out as
SAL/{unlabelled,train,test}/saliency_<split>.npy, each (N, 1, 96, 96)) add
`--config.data.saccades.saliency_dir=SAL`; without them the built-in spectral-residual saliency
is computed on the accelerator. The saccade baseline, Conv-IJEPA (spec §8.9):
`--config.method=conv_ijepa` (its defaults: `config.methods.conv_ijepa`).
Variants: `:official_centre` (the transposed glimpse centre, Q20),
`:no_saliency` (uniform fixations, official `--use-sal 0`), `:smoke`.
The recipe: SSL on the 100k unlabelled images, 5 fixations (M_tr = 4) with inhibition of return
(radius 16), 32x32 glimpses into ResNet-18 with the CIFAR stem, AdamW 4e-4 wd 1e-3, batch 512,
2000 epochs; the frozen probes are fitted on train (5k) and scored on test (8k).
"""

from __future__ import annotations

import ml_collections

from seqjepa_jax.config_defaults import NORMALISATION, base_config, saccade_recipe


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The official STL-10 saccade recipe; `arg` selects a variant (module docstring)."""
    config = base_config()
    config.data.name = "stl10"
    config.data.num_classes = 10
    config.data.mean, config.data.std = NORMALISATION["stl10"]
    config.data.train_split = "unlabelled"  # TFDS spelling
    config.data.probe_train_split = "train"
    config.data.eval_split = "test"
    config.data.saccades.source_size = 96
    config.data.saccades.fovea_size = 32
    config.data.saccades.glimpse_from = "unit"  # [0, 1] image, PIL uint8 round trip (§6.4.2)
    config.data.image_size = 32
    config.model.stem = "cifar"
    return saccade_recipe(config, arg, "stl10.py")
