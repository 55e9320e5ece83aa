"""seq-JEPA across saccades on ImageNet-1k (spec §6.4.3; the release gives no ImageNet recipe).

Run (TFDS's imagenet2012 prepared under DATA, or prepared on first use from the official tars in
MANUAL):

  python -m seqjepa_jax.main --config=configs/imagenet.py --workdir=workdirs/imagenet \
      --config.data.data_dir=DATA [--config.data.manual_dir=MANUAL]

Images are streamed (`seqjepa_jax/data/imagenet.py`): a random resized crop to 224 px for SSL
(Resize 256 + CenterCrop 224 for validation), fixations sampled from saliency with inhibition of
return, and glimpses taken from the normalised image (zero padding = the mean colour), as the
official `Imagenet1k_Sal` does. The paper's ImageNet figure uses 84-px glimpses (about 23% top-1
at M_val = 8; 32-px glimpses give about 18%), so the fovea is 84 px with the ImageNet-stem
ResNet-18, 5 fixations (M_tr = 4, as STL-10), and the saccade optimisation recipe of STL-10.
Probes are fitted on train and scored on validation. Add
`--config.data.saccades.saliency_dir=SAL` for released per-image maps (SAL/{train,val}/<wnid>/
<id>_sal.npy or <id>-sal.npy); without it the built-in spectral-residual saliency is used.
Conv-IJEPA (spec §8.9) on the same glimpses: `--config.method=conv_ijepa`.
Variants: `:official_centre` (Q20), `:no_saliency`, `:smoke` (a tiny model on 64-px crops).
"""

from __future__ import annotations

import ml_collections

from seqjepa_jax.config_defaults import NORMALISATION, base_config, saccade_recipe


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The ImageNet saccade recipe; `arg` selects a variant (see the module docstring)."""
    config = base_config()
    config.data.name = "imagenet"
    config.data.num_classes = 1000
    config.data.mean, config.data.std = NORMALISATION["imagenet"]
    config.data.train_split = "train"
    config.data.probe_train_split = "train"
    config.data.eval_split = "validation"
    config.data.saccades.source_size = 224
    config.data.saccades.fovea_size = 84
    config.data.saccades.glimpse_from = "normalised"
    config.data.image_size = 84
    config.model.stem = "imagenet"
    config = saccade_recipe(config, arg, "imagenet.py")
    if arg == "smoke":
        config.data.saccades.source_size = 64
        config.data.saccades.fovea_size = 16
        config.data.image_size = 16
        config.model.stem = "cifar"
    else:
        config.eval.m_val = (1, 2, 4, 8)
        config.eval.num_views = 9
    return config
