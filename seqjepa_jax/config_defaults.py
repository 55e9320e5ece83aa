"""Every configuration field of a seq-JEPA run, with its meaning and its official value.

Recipe files in `configs/` start from `base_config()` and change what their recipe changes, so a
field is defined (and documented) once. The defaults are the official 3DIEBench recipe (spec §5.3,
§12.2): ResNet-18 with the ImageNet stem at 128 px, M_tr = 3, a 3-layer 4-head aggregator at width
640, predictor 768→1024→512, EMA τ_base 0.996, Adam 4e-4 with the official per-epoch warmup, batch
512, 1000 epochs. Fidelity switches name the quirk of spec §11 that they reproduce.
"""

from __future__ import annotations

import importlib.util
import math
import os

import ml_collections

# 3DIEBench normalisation (spec §6.1, main_transformed_views.py:137-138).
THREEDIEBENCH_MEAN = (0.5016, 0.5037, 0.5060)
THREEDIEBENCH_STD = (0.1030, 0.0999, 0.0969)
# (mean, std) of the image datasets (spec §6.3 "Normalisation constants").
NORMALISATION = {
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "tinyimagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "stl10": ((0.4467, 0.4398, 0.4066), (0.2241, 0.2215, 0.2239)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def base_config() -> ml_collections.ConfigDict:
    """The official 3DIEBench seq-JEPA recipe; recipes override fields of it."""
    config = ml_collections.ConfigDict()
    config.seed = 42
    # The self-supervised method (seqjepa_jax/methods.py): "seqjepa", or a baseline of the
    # paper's Table 1 (spec §8) on the same trainer, data and probes: simclr, byol, vicreg,
    # vicreg_traj, equimod, byol_cond, sen, sie (transformed views) or conv_ijepa (saccades).
    config.method = "seqjepa"
    config.methods = method_defaults()

    config.data = ml_collections.ConfigDict()
    # "procedural" (built in), "3diebench" (release layout), "cifar100", "tinyimagenet" (views by
    # augmentation), "stl10", "imagenet" (saccades); see seqjepa_jax/data/kinds.py.
    config.data.name = "3diebench"
    # 3DIEBench / TinyImageNet root, TFDS data_dir, or the procedural cache ("" = default).
    config.data.data_dir = ""
    config.data.download = False  # let TFDS download and prepare a missing dataset.
    config.data.manual_dir = ""  # ImageNet: folder with the ILSVRC2012 tars (TFDS manual_dir).
    # rot (d_a 4), color (2), rotcolor (6), all (8) (spec §6.1); "aug" for CIFAR-100 and
    # TinyImageNet (spec §6.3), "saccade" for STL-10 and ImageNet (spec §6.4).
    config.data.latent_type = "rot"
    config.data.image_size = 128  # pixels fed to the encoder (views are resized to it).
    config.data.views_per_object = 50  # views stored per object (3DIEBench: 50).
    config.data.num_classes = 55  # 3DIEBench: the 55 ShapeNet synsets.
    config.data.mean = THREEDIEBENCH_MEAN
    config.data.std = THREEDIEBENCH_STD
    config.data.train_split = "train"  # the self-supervised split.
    config.data.probe_train_split = ""  # fits the frozen probes ("" = train_split).
    config.data.eval_split = "val"  # scores them.
    # The 3DIEBench-OOD root (views 2..5 per object, spec §6.2) and the split name of its index
    # files <ood_dir>/{ood_split}_images.npy, _labels.npy; used by config.eval.ood. The built-in
    # data renders its OOD split instead (config.data.procedural.num_ood_objects).
    config.data.ood_dir = ""
    config.data.ood_split = "ood"
    # Views by parameterised augmentation (spec §6.3), for kind "augment".
    config.data.augment = ml_collections.ConfigDict()
    config.data.augment.use_blur = True  # False = the official `--no-blur` variant (d_a 8).
    # Q4: the official L2-normalises each parameter across the views of a sample before taking
    # differences; the default scales parameters by fixed constants (data/augment.py).
    config.data.augment.normalize_across_views = False
    # Foveal glimpses (spec §6.4), for kind "saccade"; V = seq_len + 1 fixations.
    config.data.saccades = ml_collections.ConfigDict()
    config.data.saccades.source_size = 96  # side of the image the fixations live in.
    config.data.saccades.fovea_size = 32  # glimpse side; config.data.image_size must equal it.
    config.data.saccades.inhibition_radius = 0  # 0 = fovea_size // 2 (official).
    config.data.saccades.use_saliency = True  # official --use-sal.
    config.data.saccades.inhibition_of_return = True  # official --ior.
    config.data.saccades.transposed_centre = False  # Q20: the official transposed glimpse centre.
    config.data.saccades.glimpse_from = "unit"  # "unit" (STL-10) or "normalised" (ImageNet).
    config.data.saccades.centre_bias_weight = 0.0  # centre bias mixed into built-in saliency.
    config.data.saccades.saliency_dir = ""  # released maps; "" = built-in spectral residual.
    # 3DIEBench start-up scan: False checks the first and last object only; True checks every
    # object's files (present, JPEG complete, latent of 7 values) before training (issue 7.5).
    config.data.verify_files = False
    # What the scan does with a bad object: "fail" (error naming the file) or "skip" (drop the
    # object from the split and log how many were dropped).
    config.data.on_bad_file = "fail"
    # The built-in renderer (seqjepa_jax/data/procedural.py); used when name="procedural".
    config.data.procedural = ml_collections.ConfigDict()
    config.data.procedural.num_train_objects = 2000
    config.data.procedural.num_val_objects = 500
    config.data.procedural.num_ood_objects = 0
    config.data.procedural.render_size = 64
    config.data.procedural.seed = 0
    # Easier scenes (data/procedural.py): each Euler angle in U(-max_angle, max_angle) (3DIEBench:
    # π/2), and whether the floor and spot light change between views (3DIEBench: True).
    config.data.procedural.max_angle = math.pi / 2
    config.data.procedural.vary_lighting = True

    config.model = ml_collections.ConfigDict()
    config.model.stem = "imagenet"  # "imagenet" (7x7/2 + max-pool) or "cifar" (3x3/1) (spec §1.1).
    config.model.width = 64  # first-stage channels; 64 = ResNet-18.
    config.model.stage_sizes = (2, 2, 2, 2)  # BasicBlocks per stage; (2, 2, 2, 2) = ResNet-18.
    config.model.act_cond = True  # condition tokens and predictor on actions (paper ablation: off).
    config.model.learn_act_emb = True  # Linear+BN action embedding (else raw, zero-padded actions).
    config.model.act_proj_dim = 128  # P.
    config.model.num_heads = 4
    config.model.num_layers = 3
    config.model.mlp_ratio = 4
    config.model.dropout_rate = 0.1
    config.model.pred_hidden = 1024
    # Fidelity switches (spec §11):
    config.model.identical_layer_init = True  # Q37: aggregator layers start identical (deepcopy).
    config.model.pred_action_first = True  # Q30: order of the two action-projection calls.
    config.model.zero_last_action_before_projection = False  # Q29: official aug/saccade paths.
    config.model.unbiased_running_var = True  # spec §10.1: PyTorch's running-variance update.
    config.model.compute_dtype = "float32"  # "bfloat16" on GPU/TPU; params/BN/loss stay float32.
    config.model.probe_hidden = 1024  # hidden width of the online action probe (spec §4.1).

    config.train = ml_collections.ConfigDict()
    config.train.seq_len = 3  # M_tr: observation views per sequence (V = M_tr + 1 views loaded).
    config.train.batch_size = 512  # global batch, over all hosts and devices.
    config.train.num_epochs = 1000
    config.train.optimizer = "adam"  # Q1: what ran; "adamw" for the saccade recipes.
    config.train.learning_rate = 4e-4
    config.train.initial_learning_rate = 1e-5
    config.train.final_learning_rate = 0.0  # end of "warmup_cosine".
    config.train.warmup_epochs = 20.0
    # Q2: "official_warmup_constant" is what the official code ran; "warmup_cosine" is per step.
    config.train.lr_schedule = "official_warmup_constant"
    config.train.weight_decay = 0.0
    config.train.use_ema = True  # official `--ema` (the scripts pass it).
    config.train.ema_tau_base = 0.996
    config.train.ema_schedule_unit = "epoch"  # official: τ per epoch; "step" for BYOL-style.
    config.train.log_every_steps = 50
    config.train.eval_every_epochs = 10
    config.train.checkpoint_every_steps = 1000
    config.train.keep_checkpoints = 3
    # Write checkpoints in a background thread (False: block; for filesystems or tools that
    # cannot take concurrent writes).
    config.train.async_checkpoints = True
    # Non-finite loss/gradient: "stop" (error naming step and metric) or "skip" (keep the previous
    # state for that step); see seqjepa_jax/faults.py.
    config.train.on_nonfinite = "stop"
    config.train.progress_bar = True

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 256
    config.eval.max_train_objects = 5000  # objects used to fit the frozen-feature probes.
    config.eval.max_eval_objects = 2000
    config.eval.m_val = (1, 3, 5)  # observation views for the aggregate probe (M_val sweep).
    # Views extracted per evaluation object (>= max(m_val, seq_len, 2) + 1); consecutive pairs of
    # them train the rotation probes.
    config.eval.num_views = 6
    config.eval.probe_steps = 500  # full-batch optimisation steps of each frozen probe.
    config.eval.probe_hidden = 1024  # hidden width of the frozen rotation MLP (official 1024).
    # Fit MLP regressors on z-scored target columns (not official; docs/evaluation.md).
    config.eval.standardise_targets = False
    # The probe protocol (issue 19, evaluation/report.py): a share of the probe-training objects
    # held out to early-stop every MLP probe and pick its weight decay and the ridge penalty
    # (0 = the earlier fixed hyperparameters on all probe-training objects); the grids; the MLP
    # initialisation seeds (several: their mean is reported and their spread as *_seed_std).
    config.eval.validation_fraction = 0.2
    config.eval.probe_weight_decays = (1e-4, 1e-2, 1e-1)
    config.eval.ridge_alphas = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
    config.eval.probe_seeds = (0,)
    # How probe inputs are scaled (`evaluation/probes.py` FEATURE_SCALINGS): "global" centres every
    # feature and divides all of them by one scale, the official raw-feature probes (spec §7.1) up
    # to a constant; "per_feature" z-scores blow up features that are nearly constant on the
    # training objects (a random network's dead units) and mislead the MLP probes (issue 19;
    # docs/evaluation.md). Equal to probes.DEFAULT_FEATURE_SCALING (this module stays JAX-free).
    config.eval.feature_scaling = "global"
    config.eval.knn_k = 20  # neighbours of the cosine k-NN probe (evaluate's --knn_k overrides)
    config.eval.compare_random_init = True  # also probe a randomly initialised model.
    # Offline evaluation also scores the probes on the OOD split (spec §6.2; issue 10).
    config.eval.ood = False
    return config


def method_defaults() -> ml_collections.ConfigDict:
    """The baselines' own hyperparameters, `config.methods.<method>.<field>` (spec §8, §5.1).

    Every value is the official CLI default or the official construction's layer widths; the
    encoder, `model.act_proj_dim`, `model.learn_act_emb` and `model.pred_hidden` are shared with
    seq-JEPA, as the official entry points pass the same flags to every model.
    """
    vicreg_weights = dict(inv_coeff=25.0, var_coeff=25.0, cov_coeff=1.0)  # --inv/var/cov-coeff
    return ml_collections.ConfigDict(
        dict(
            # Q6: the official multi-GPU gather has no gradient; True reproduces it (global-batch
            # NT-Xent and VICReg var/cov terms then give no gradient). Off: differentiable.
            official_nondifferentiable_gather=False,
            simclr=dict(projector_dims=(2048, 2048, 2048), temperature=0.5),
            byol=dict(projector_dims=(2048, 128), predictor_hidden=2048),
            vicreg=dict(projector_dims=(2048, 2048, 2048), **vicreg_weights),
            vicreg_traj=dict(
                projector_dims=(2048, 2048, 2048),
                **vicreg_weights,
                alpha=1.0,  # --alpha, weight of the trajectory term
                official_unit_norm=False,  # the official projection assumes |y_c| = 1
                official_probe_pair=False,  # Q15: online probe on (z_c, z_r)
            ),
            equimod=dict(projector_dims=(1024, 1024, 128), temperature=0.5, equi_factor=1.0),
            byol_cond=dict(projector_dims=(2048, 128), predictor_hidden=2048),
            sen=dict(projector_dims=(2048, 2048, 2048), temperature=0.5),
            sie=dict(projector_dims=(1024, 1024, 1024), **vicreg_weights, equi_factor=1.0),
            # The supervised reference (issue 19; not an official model): class CE + relative-
            # action MSE on the same encoder, as the ceiling of the comparison.
            supervised=dict(hidden=256, class_weight=1.0, action_weight=1.0),
            conv_ijepa=dict(
                projector_dims=(2048, 128),
                official_undetached_target=False,  # Q17: no stop-gradient without EMA
                official_probe_pair=False,  # Q16: online probe on (z_0, target z)
            ),
        )
    )


def shrink_method_heads(config: ml_collections.ConfigDict, width: int) -> None:
    """Every baseline projector and predictor at `width` (tests and smoke runs): the layer
    count and bias choices stay, only the widths shrink."""
    for options in config.methods.values():
        if not isinstance(options, ml_collections.ConfigDict):
            continue
        if "projector_dims" in options:
            options.projector_dims = (width,) * len(options.projector_dims)
        for field in ("predictor_hidden", "hidden"):
            if field in options:
                options[field] = width


def augmentation_recipe(
    config: ml_collections.ConfigDict, arg: str | None, config_name: str
) -> ml_collections.ConfigDict:
    """The shared transformed-views recipe of CIFAR-100 and TinyImageNet, with its variants."""
    config.data.latent_type = "aug"
    config.data.views_per_object = 0  # unused: views are made from one image
    config.model.stem = "cifar"
    # The official augmentation path zeroes the last observation's action before projecting
    # it (Q29); the predictor's action is projected first, as in every transforms run (Q30).
    config.model.zero_last_action_before_projection = True
    config.train.seq_len = 3
    config.train.batch_size = 256
    config.train.num_epochs = 2000
    config.train.log_every_steps = 100
    config.train.eval_every_epochs = 50
    config.eval.m_val = (1, 3, 5)
    config.eval.num_views = 6
    config.eval.max_train_objects = 50_000
    config.eval.max_eval_objects = 10_000
    if arg == "no_blur":
        config.data.augment.use_blur = False
    elif arg == "official_actions":
        config.data.augment.normalize_across_views = True
    elif arg == "smoke":
        smoke_variant(config)
    elif arg:
        raise ValueError(
            f"Unknown variant {arg!r} for configs/{config_name}; use no_blur, official_actions "
            "or smoke."
        )
    return config


def saccade_recipe(
    config: ml_collections.ConfigDict, arg: str | None, config_name: str
) -> ml_collections.ConfigDict:
    """The shared saccade (PLS) recipe of STL-10 and ImageNet (spec §3, §4.3, §5.2-§5.3).

    What `main_pls.py` runs: AdamW 4e-4 with wd 1e-3 on ndim != 1 parameters, the 20-epoch
    per-epoch warmup from 1e-5 then constant (Q2), EMA τ_base 0.996, batch 512, 2000 epochs, a
    linear online position probe, observation actions projected before the predictor's (Q30) and
    the last observation's action zeroed before projection (Q29). V = num_saccades = M_tr + 1.
    """
    config.data.latent_type = "saccade"
    config.data.views_per_object = 0  # unused: glimpses are made from one image
    config.model.pred_action_first = False
    config.model.zero_last_action_before_projection = True
    config.model.probe_hidden = 0
    config.train.optimizer = "adamw"
    config.train.weight_decay = 1e-3
    config.train.seq_len = 4  # 5 saccades (spec §5.3)
    config.train.batch_size = 512
    config.train.num_epochs = 2000
    config.train.log_every_steps = 100
    config.train.eval_every_epochs = 50
    config.eval.m_val = (1, 2, 3, 4)
    config.eval.num_views = 5
    if arg == "official_centre":
        config.data.saccades.transposed_centre = True
    elif arg == "no_saliency":
        config.data.saccades.use_saliency = False
    elif arg == "smoke":
        smoke_variant(config)
    elif arg:
        raise ValueError(
            f"Unknown variant {arg!r} for configs/{config_name}; use official_centre, "
            "no_saliency or smoke."
        )
    return config


def smoke_variant(config: ml_collections.ConfigDict) -> None:
    """Shrinks any recipe to a tiny model and a few steps (for mock data and quick checks)."""
    config.model.width = 4
    config.model.stage_sizes = (1, 1, 1, 1)
    config.model.act_proj_dim = 8
    config.model.num_layers = 1
    config.model.pred_hidden = 16
    config.model.probe_hidden = 16 if config.model.probe_hidden > 0 else 0
    shrink_method_heads(config, 16)
    config.train.seq_len = 2
    config.train.batch_size = 8
    config.train.num_epochs = 1
    config.train.warmup_epochs = 0
    config.train.log_every_steps = 1
    config.train.eval_every_epochs = 1
    config.train.checkpoint_every_steps = 2
    config.train.progress_bar = False
    config.eval.batch_size = 8
    config.eval.m_val = (1, 2)
    config.eval.num_views = 3
    config.eval.max_train_objects = 16
    config.eval.max_eval_objects = 16
    config.eval.probe_steps = 5
    config.eval.probe_hidden = 16
    config.eval.knn_k = 5


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of a config file given by path (configs/ is not a Python package).

    ValueError naming the file when it is not Python, has a syntax error or defines no
    `get_config`; errors raised by the file's own code keep their traceback (it is the user's).
    """
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    if spec is None or spec.loader is None:
        raise ValueError(f"Config file {path!r} is not a Python file (expected e.g. configs/x.py).")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise ValueError(
            f"Config file {path!r} is not valid Python: {error.msg} (line {error.lineno})."
        ) from error
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(
            f"Config file {path!r} has no get_config function. A config file defines "
            "get_config(arg=None) returning an ml_collections.ConfigDict; start from "
            "configs/default.py."
        )
    return module.get_config(arg)


def set_field(
    config: ml_collections.ConfigDict, dotted: str, value: object
) -> ml_collections.ConfigDict:
    """Sets `config.<dotted>` = value in place (no type check, unlike `--config.a.b=v`)."""
    *path, leaf = dotted.split(".")
    node = config
    for part in path:
        node = node[part]
    node[leaf] = value
    return config
