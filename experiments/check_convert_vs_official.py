"""Side-by-side check of `seqjepa_jax.convert` against the official PyTorch code itself.

Two stages, run with two Python environments (the official code needs torchvision):

  # 1. In a venv with torch + torchvision, on the official repository's src/ (not vendored here):
  python experiments/check_convert_vs_official.py --stage=official \
      --official_src=OFFICIAL/seq-jepa/src --workdir=WORKDIR
  # 2. In this library's environment:
  python experiments/check_convert_vs_official.py --stage=compare --workdir=WORKDIR

Stage 1 builds randomly initialised official models, perturbs every tensor (so that zero inits,
zero-gamma residual BNs and the deepcopied target/layers cannot hide a mapping error) and runs two
train-mode forwards to give the BN buffers real statistics:
- `SeqJEPA_Transforms` in the 3DIEBench rot setting (ResNet-18 with the ImageNet stem, 128 px,
  M_tr = 3, d_a = 4, P = 128, 3 layers x 4 heads, predictor 768->1024->512, EMA) with the online
  probes of main_transformed_views.py;
- `SeqJEPA_PLS` in the STL-10 setting (CIFAR stem, 32 px fovea, 5 saccades, d_a = 2) with the
  probes of main_pls.py.
It saves each state dict in the official checkpoint format, then runs the official forward on a
fixed batch in train mode with every dropout at 0 and in eval mode, and saves inputs, outputs
(loss, agg_out, the predictor's output, the target embedding, probe outputs) and the BN buffers
after the train-mode forward as .npz.

Stage 2 converts each checkpoint with `convert.convert_checkpoint`, restores the written Orbax
checkpoint, runs our model on the same inputs and prints the max abs differences (and writes
them to WORKDIR/diffs.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import numpy as np

BATCH = 4
EPOCH = 10


# ------------------------------------------------------------------------------------------------
# Stage 1: the official code (torch + torchvision environment).


def _perturb_(model, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("agg_token"):
                p.copy_(noise)
            elif p.ndim == 1 and not name.endswith("bias"):  # norm scales (some zero-init)
                p.copy_(1.0 + 0.2 * noise)
            else:
                scale = p.std().item() if p.numel() > 1 and p.std().item() > 0 else 0.1
                p.add_(0.3 * scale * noise)


def _disable_dropout_(model) -> None:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0


def _bn_buffers(model) -> dict[str, np.ndarray]:
    return {
        k: v.detach().numpy()
        for k, v in model.state_dict().items()
        if k.endswith(("running_mean", "running_var"))
    }


def _run_official(model, name: str, inputs: dict, call, probes, workdir: str) -> None:
    import torch

    # Two train-mode forwards give every BN buffer non-trivial statistics.
    model.train()
    with torch.no_grad():
        for _ in range(2):
            call(model, {k: torch.randn_like(v) for k, v in inputs.items()})
    path = os.path.join(workdir, f"{name}.pth")
    torch.save({"model": model.state_dict(), "epoch": EPOCH, "min_loss": 1.0}, path)

    captured = {}
    model.predictor.register_forward_hook(lambda m, i, o: captured.__setitem__("prediction", o))
    model.target_encoder.register_forward_hook(lambda m, i, o: captured.__setitem__("z_target", o))
    results = {f"input_{k}": v.numpy() for k, v in inputs.items()}
    _disable_dropout_(model)
    for mode in ("train", "eval"):
        model.train(mode == "train")
        with torch.no_grad():
            loss, agg_out, z1, z2 = call(model, inputs)
            outputs = {
                "loss": loss,
                "agg_out": agg_out,
                **captured,
                **probes(model, agg_out, z1, z2),
            }
        results.update({f"{mode}_{k}": v.numpy() for k, v in outputs.items()})
        if mode == "train":
            results.update({f"stats__{k}": v for k, v in _bn_buffers(model).items()})
    np.savez(os.path.join(workdir, f"{name}.npz"), **results)
    print(f"{name}: saved {path} and {name}.npz (train loss {results['train_loss']:.4f})")


def official_stage(official_src: str, workdir: str) -> None:
    import torch

    sys.path.insert(0, official_src)
    import models  # the official src/models.py

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    os.makedirs(workdir, exist_ok=True)

    # SeqJEPA_Transforms, 3DIEBench rot (spec §5.3): the kwargs of main_transformed_views.py.
    kwargs = dict(num_heads=4, n_channels=3, ema_decay=0.996, num_enc_layers=3, num_classes=55,
                  act_cond=1, pred_hidden=1024, backbone="resnet18", act_projdim=128,
                  act_latentdim=4, cifar_resnet=False, learn_act_emb=1)  # fmt: skip
    model = models.SeqJEPA_Transforms(128, True, **kwargs)
    model.online_linprobe = torch.nn.Sequential(torch.nn.Linear(model.emb_dim, 55))
    model.online_equiprobe = torch.nn.Sequential(
        torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
        torch.nn.ReLU(), torch.nn.Linear(1024, 4),
    )  # fmt: skip
    _perturb_(model, 2)
    seq_len = 3
    quats = torch.randn(BATCH, seq_len + 1, 4, generator=gen)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    inputs = {
        "views": torch.randn(BATCH, seq_len + 1, 3, 128, 128, generator=gen),
        "abs_latents": quats,
        "rel_latents": torch.randn(BATCH, seq_len, 4, generator=gen),
    }

    def call_transforms(m, x):
        views, lat = x["views"], x["abs_latents"]
        return m(views[:, :-1], views[:, -1], lat[:, :-1], lat[:, -1], rel_latents=x["rel_latents"])

    def probes_transforms(m, agg_out, z1, z2):
        return {
            "probe_logits": m.online_linprobe(agg_out),
            "probe_action": m.online_equiprobe(torch.cat([z1, z2], dim=1)),
        }

    _run_official(model, "transforms", inputs, call_transforms, probes_transforms, workdir)

    # SeqJEPA_PLS, STL-10 (spec §5.3): the kwargs of main_pls.py.
    kwargs = dict(num_heads=4, n_channels=3, act_cond=1, pred_hidden=1024, num_enc_layers=3,
                  num_classes=10, pos_dim=128, backbone="resnet18", ema_decay=0.996,
                  act_projdim=128, act_latentdim=2, learn_act_emb=1, cifar_resnet=True)  # fmt: skip
    model = models.SeqJEPA_PLS(32, 96, True, **kwargs)
    model.online_res_probe = torch.nn.Sequential(torch.nn.Linear(512, 10))
    model.online_agg_probe = torch.nn.Sequential(torch.nn.Linear(model.emb_dim, 10))
    model.online_equiprobe = torch.nn.Sequential(torch.nn.Linear(1024, 2))
    _perturb_(model, 3)
    saccades = 5
    inputs = {
        "views": torch.randn(BATCH, saccades, 3, 32, 32, generator=gen),
        "positions": torch.rand(BATCH, saccades, 2, generator=gen),
    }

    def call_pls(m, x):
        return m(x["views"][:, :-1], x["views"][:, -1], x["positions"])

    def probes_pls(m, agg_out, z1, z2):
        return {"probe_logits": m.online_agg_probe(agg_out)}

    _run_official(model, "pls", inputs, call_pls, probes_pls, workdir)


# ------------------------------------------------------------------------------------------------
# Stage 2: this library.


def _config(name: str):
    from seqjepa_jax.config_defaults import load_config_file

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    config = load_config_file(os.path.join(root, "configs", "3diebench.py"))
    if name == "pls":  # STL-10 saccades (spec §3, §5.3) expressed as a model config
        config.model.stem = "cifar"
        config.data.image_size = 32
        config.data.latent_type = "color"  # d_a = 2, the width of fixation differences
        config.data.num_classes = 10
        config.train.seq_len = 4
        config.model.pred_action_first = False  # Q30
        config.model.zero_last_action_before_projection = True  # Q29
        config.train.optimizer = "adamw"
        config.train.weight_decay = 1e-3
    return config


def _our_outputs(config, state, views, actions, train_mode: bool):
    import jax
    import jax.numpy as jnp

    from seqjepa_jax import train
    from seqjepa_jax.models.seqjepa import encoder_of, prediction_loss

    model, probes = train.build_model(config)

    @jax.jit
    def forward(state, views, actions):
        target_vars = {"params": state.target_params, "batch_stats": state.target_batch_stats}
        model_vars = {"params": state.params["model"], "batch_stats": state.batch_stats}
        mutable = ["batch_stats"] if train_mode else False
        z_target = encoder_of(model).apply(
            target_vars, views[:, -1], train=train_mode, mutable=mutable
        )
        out = model.apply(model_vars, views[:, :-1], actions, train=train_mode, mutable=mutable)
        stats = target_stats = None
        if train_mode:
            (z_target, target_stats), (out, stats) = z_target, out
            target_stats, stats = target_stats["batch_stats"], stats["batch_stats"]
        pair = jnp.concatenate([out["z_obs"][:, 0], out["z_obs"][:, 1]], axis=-1)
        logits, action = probes.apply({"params": state.params["probes"]}, out["agg_out"], pair)
        outputs = {
            "loss": prediction_loss(out["prediction"], z_target),
            "agg_out": out["agg_out"],
            "prediction": out["prediction"],
            "z_target": z_target,
            "probe_logits": logits,
            "probe_action": action,
        }
        return outputs, stats, target_stats

    return forward(state, views, actions)


def compare_stage(workdir: str) -> dict:
    import jax

    from seqjepa_jax import checkpointing, convert, train
    from seqjepa_jax.optimizers import build_optimizer
    from seqjepa_jax.sharding import make_mesh

    diffs = {}
    for name in ("transforms", "pls"):
        config = _config(name)
        out = os.path.join(workdir, f"converted_{name}")
        summary = convert.convert_checkpoint(
            os.path.join(workdir, f"{name}.pth"), config, out, steps_per_epoch=1
        )
        model, probes = train.build_model(config)
        optimizer = build_optimizer(
            config.train.optimizer, lambda step: 0.0, config.train.weight_decay
        )
        template = train.create_state(config, model, probes, optimizer, make_mesh())
        ckpt = checkpointing.Checkpointer(os.path.join(out, "checkpoints"), save_every_steps=1)
        state = ckpt.restore(checkpointing.abstract_like(template))
        ckpt.close()

        data = np.load(os.path.join(workdir, f"{name}.npz"))
        views = data["input_views"].transpose(0, 1, 3, 4, 2)  # NCHW -> NHWC
        if name == "transforms":  # the 3DIEBench path conditions on the relative latents
            actions = data["input_rel_latents"]
        else:  # saccades: fixation differences; row M-1 leads to the target (spec §3.2)
            actions = np.diff(data["input_positions"], axis=1)
        no_dropout = copy.deepcopy(config)
        no_dropout.model.dropout_rate = 0.0
        result = {
            key: summary[key]
            for key in ("step", "imported_keys", "dropped_keys", "fresh_variables")
        }
        ours, stats, target_stats = _our_outputs(no_dropout, state, views, actions, True)
        # BN buffers after the train-mode forward, mapped through the converter's own names.
        official_after = {k.split("__", 1)[1]: data[k] for k in data if k.startswith("stats__")}
        ours_after = {
            **_flat_stats(stats, "seqjepa"),
            **_flat_stats(target_stats, "resnet", prefix="target_encoder."),
        }
        assert ours_after.keys() == official_after.keys()  # every BN buffer, nothing else
        result["bn_stats_after_train_max_abs_diff"] = max(
            float(np.max(np.abs(np.asarray(ours_after[k]) - official_after[k])))
            for k in official_after
        )
        for mode, outputs in (("train", ours), ("eval", None)):
            if outputs is None:
                evaluated = state.replace(batch_stats=stats, target_batch_stats=target_stats)
                outputs, _, _ = _our_outputs(config, evaluated, views, actions, False)
            for key in (
                "loss",
                "agg_out",
                "prediction",
                "z_target",
                "probe_logits",
                "probe_action",
            ):
                if f"{mode}_{key}" in data:
                    diff = np.abs(np.asarray(outputs[key], np.float64) - data[f"{mode}_{key}"])
                    result[f"{mode}_{key}_max_abs_diff"] = float(diff.max())
                    result[f"{mode}_{key}_max_abs_value"] = float(
                        np.abs(data[f"{mode}_{key}"]).max()
                    )
        diffs[name] = result
        del state, template
        jax.clear_caches()
    with open(os.path.join(workdir, "diffs.json"), "w") as f:
        json.dump(diffs, f, indent=2)
    print(json.dumps(diffs, indent=2))
    return diffs


def _flat_stats(stats, module: str, prefix: str = "") -> dict[str, np.ndarray]:
    """Our BN statistics under their official state-dict names."""
    from flax import traverse_util

    from seqjepa_jax.official_keys import torch_key

    return {
        prefix + torch_key(module, path): np.asarray(value)
        for path, value in traverse_util.flatten_dict(stats).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=("official", "compare"), required=True)
    parser.add_argument("--official_src", help="the official repository's src/ (stage official)")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    if args.stage == "official":
        if not args.official_src:
            parser.error("--stage=official needs --official_src")
        official_stage(args.official_src, args.workdir)
    else:
        compare_stage(args.workdir)


if __name__ == "__main__":
    main()
