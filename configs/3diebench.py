"""The official 3DIEBench seq-JEPA recipe (spec §5.3, §12.2) for the real dataset.

Run (3DIEBench in its release layout under DATA):

  python -m seqjepa_jax.main --config=configs/3diebench.py --workdir=workdirs/3diebench \
      --config.data.data_dir=DATA

Baselines of the paper's Table 1 on the same recipe (spec §8; their defaults are
`config.methods.<name>`):

  python -m seqjepa_jax.main --config=configs/3diebench.py --workdir=workdirs/3diebench_simclr \
      --config.data.data_dir=DATA --config.method=simclr

with `--config.method=` byol, vicreg, vicreg_traj, equimod, byol_cond, sen or sie.

Variants: `configs/3diebench.py:rotcolor` (the released rot+colour checkpoint, M_tr = 4),
`:no_act_cond` (the paper's "w/o act cond" row), `:m_tr1` (M_tr = 1).
What the official code really ran: ResNet-18 with the ImageNet stem on 128 px views, no
augmentation, M_tr = 3, Adam (wd 0) with a 20-epoch per-epoch warmup 1e-5 -> 4e-4 then constant,
EMA τ_base 0.996, batch 512, 1000 epochs, fp32 (Q1, Q2).
"""

from __future__ import annotations

import ml_collections

from seqjepa_jax.config_defaults import base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The official recipe; `arg` selects a variant (see the module docstring)."""
    config = base_config()
    if arg == "rotcolor":
        config.data.latent_type = "rotcolor"
        config.train.seq_len = 4
    elif arg == "no_act_cond":
        config.model.act_cond = False
    elif arg == "m_tr1":
        config.train.seq_len = 1
    elif arg:
        raise ValueError(
            f"Unknown variant {arg!r} for configs/3diebench.py; use rotcolor, no_act_cond or m_tr1."
        )
    return config
