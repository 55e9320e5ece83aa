"""PyTorch references of seq-JEPA's parts with the official module names (not a test module).

Written by hand from the spec (§1.1-§1.7, §2.2, §3.2), with torch.nn only (no torchvision), but
with the attribute names and `nn.Sequential` indices of the official code, so that their
`state_dict()` keys are those of an official checkpoint (spec §9) and `seqjepa_jax.convert` maps
them onto our Flax variables:

- `TorchResNet`: torchvision's ResNet names (conv1, bn1, layerS.B.{conv1,bn1,conv2,bn2,
  downsample.0/.1}), any width and stage sizes;
- `TorchAggregator`: `TransformerEncoder_` (transformer_encoder.layers.i.*, then the final `norm`);
- `torch_action_projection`, `torch_predictor`, `torch_action_probe`: the official Sequentials;
- `TorchSeqJEPA`: SeqJEPA_Transforms / SeqJEPA_PLS attributes (encoder, target_encoder,
  action_proj, agg_token, transformer_encoder, predictor) plus the online probes of the two
  training scripts, with the forward of spec §2.2 (transformed views) or §3.2 (saccades).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn as tnn


class TorchBasicBlock(tnn.Module):
    """torchvision's BasicBlock: conv3x3-BN-ReLU-conv3x3-BN (+ 1x1 conv-BN shortcut), ReLU."""

    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = tnn.Sequential(
                tnn.Conv2d(inplanes, planes, 1, stride, 0, bias=False), tnn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class TorchResNet(tnn.Module):
    """A torchvision ResNet trunk with BasicBlocks, either stem, pooled output, no fc."""

    def __init__(self, stem: str, width: int, stage_sizes: tuple[int, ...]):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = tnn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.maxpool = tnn.Identity()
        self.bn1 = tnn.BatchNorm2d(width)
        inplanes = width
        self.num_stages = len(stage_sizes)
        for stage, num_blocks in enumerate(stage_sizes):
            blocks = []
            for block in range(num_blocks):
                planes = width * 2**stage
                stride = 2 if (stage > 0 and block == 0) else 1
                blocks.append(TorchBasicBlock(inplanes, planes, stride))
                inplanes = planes
            setattr(self, f"layer{stage + 1}", tnn.Sequential(*blocks))

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return x.mean(dim=(2, 3))


class TorchAggregator(tnn.Module):
    """Official `TransformerEncoder_` (post_norm=True): layers looped by hand, then LayerNorm."""

    def __init__(self, width: int, num_heads: int, num_layers: int, dropout: float):
        super().__init__()
        layer = tnn.TransformerEncoderLayer(
            d_model=width,
            nhead=num_heads,
            dim_feedforward=4 * width,
            dropout=dropout,
            batch_first=True,
        )
        self.transformer_encoder = tnn.TransformerEncoder(
            layer, num_layers=num_layers, enable_nested_tensor=False
        )
        self.norm = tnn.LayerNorm(width)

    def forward(self, x):
        for layer in self.transformer_encoder.layers:  # no mask, no nested tensors
            x = layer(x)
        return self.norm(x)


def torch_action_projection(action_dim: int, features: int) -> tnn.Sequential:
    """Bias-free Linear(d_a -> P) then BatchNorm1d(P, affine=False) (spec §1.3)."""
    return tnn.Sequential(
        tnn.Linear(action_dim, features, bias=False), tnn.BatchNorm1d(features, affine=False)
    )


def torch_predictor(in_features: int, hidden: int, out_features: int) -> tnn.Sequential:
    """Linear(no bias)-BN-ReLU-Linear, or Linear(no bias)-BN when hidden <= 0 (spec §1.6)."""
    if hidden > 0:
        return tnn.Sequential(
            tnn.Linear(in_features, hidden, bias=False),
            tnn.BatchNorm1d(hidden),
            tnn.ReLU(),
            tnn.Linear(hidden, out_features),
        )
    return tnn.Sequential(
        tnn.Linear(in_features, out_features, bias=False), tnn.BatchNorm1d(out_features)
    )


def torch_action_probe(in_features: int, hidden: int, out_features: int) -> tnn.Sequential:
    """The transformed-views online equivariance probe: Linear-ReLU-Linear-ReLU-Linear."""
    return tnn.Sequential(
        tnn.Linear(in_features, hidden),
        tnn.ReLU(),
        tnn.Linear(hidden, hidden),
        tnn.ReLU(),
        tnn.Linear(hidden, out_features),
    )


class TorchSeqJEPA(tnn.Module):
    """seq-JEPA with learned action embeddings and an EMA target, with the official names.

    `saccades=False`: SeqJEPA_Transforms on relative actions (3DIEBench path) with the probes of
    main_transformed_views.py. `saccades=True`: SeqJEPA_PLS (observation actions projected first,
    the last one zeroed before and after projection) with the probes of main_pls.py.
    """

    def __init__(
        self,
        *,
        stem: str,
        width: int,
        stage_sizes: tuple[int, ...],
        action_dim: int,
        act_proj_dim: int,
        num_heads: int,
        num_layers: int,
        pred_hidden: int,
        num_classes: int,
        probe_hidden: int,
        dropout: float = 0.1,
        saccades: bool = False,
    ):
        super().__init__()
        self.saccades = saccades
        self.encoder = TorchResNet(stem, width, stage_sizes)
        self.target_encoder = copy.deepcopy(self.encoder)
        embedding = width * 2 ** (len(stage_sizes) - 1)
        token = embedding + act_proj_dim
        self.action_proj = torch_action_projection(action_dim, act_proj_dim)
        self.agg_token = tnn.Parameter(torch.zeros(1, 1, token))
        self.transformer_encoder = TorchAggregator(token, num_heads, num_layers, dropout)
        self.predictor = torch_predictor(token + act_proj_dim, pred_hidden, embedding)
        if saccades:
            self.online_res_probe = tnn.Sequential(tnn.Linear(embedding, num_classes))
            self.online_agg_probe = tnn.Sequential(tnn.Linear(token, num_classes))
            self.online_equiprobe = tnn.Sequential(tnn.Linear(2 * embedding, action_dim))
        else:
            self.online_linprobe = tnn.Sequential(tnn.Linear(token, num_classes))
            self.online_equiprobe = torch_action_probe(2 * embedding, probe_hidden, action_dim)

    def forward(self, obs, target, actions) -> dict:
        """obs (B, M, C, H, W), target (B, C, H, W), actions (B, M, d_a): row M-1 leads to the
        target. Returns agg_out, prediction, z_target, loss and the probes' outputs."""
        batch, num_obs = obs.shape[:2]
        z_target = self.target_encoder(target).detach()
        z_obs = self.encoder(obs.flatten(0, 1)).reshape(batch, num_obs, -1)
        last = torch.zeros(num_obs, 1, dtype=obs.dtype)
        last[-1] = 1.0
        if self.saccades:  # spec §3.2: zero before projection, observations first
            obs_actions = actions * (1.0 - last)
            e_obs = self.action_proj(obs_actions.flatten(0, 1))
            e_pred = self.action_proj(actions[:, -1])
        else:  # spec §2.2: the predictor's action first
            e_pred = self.action_proj(actions[:, -1])
            e_obs = self.action_proj(actions.flatten(0, 1))
        e_obs = e_obs.reshape(batch, num_obs, -1) * (1.0 - last)
        tokens = torch.cat([z_obs, e_obs], dim=-1)
        sequence = torch.cat([self.agg_token.expand(batch, -1, -1), tokens], dim=1)
        agg_out = self.transformer_encoder(sequence)[:, 0]
        prediction = self.predictor(torch.cat([agg_out, e_pred], dim=-1))
        loss = 1.0 - tnn.functional.cosine_similarity(prediction, z_target, dim=1).mean()
        z2 = z_obs[:, 1] if num_obs >= 2 else z_target
        pair = torch.cat([z_obs[:, 0], z2], dim=-1).detach()
        class_probe = self.online_agg_probe if self.saccades else self.online_linprobe
        return {
            "agg_out": agg_out,
            "prediction": prediction,
            "z_target": z_target,
            "loss": loss,
            "probe_logits": class_probe(agg_out.detach()),
            "probe_action": self.online_equiprobe(pair),
        }


def randomise_(module: tnn.Module, seed: int) -> None:
    """Random biases and norm scales, so that no mapping error can hide behind 0/1 inits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if name.endswith("bias"):
                p.copy_(0.2 * noise)
            elif p.ndim == 1:  # norm scales
                p.copy_(1.0 + 0.3 * noise)


def randomise_everything_(module: tnn.Module, seed: int) -> None:
    """`randomise_` plus fresh weights for every matrix and kernel, a random [AGG] token and random
    BN running statistics: every tensor of the state dict differs from every other."""
    gen = torch.Generator().manual_seed(seed)
    randomise_(module, seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2 and name != "agg_token":
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / np.sqrt(fan_in))
            elif name == "agg_token":
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen, dtype=b.dtype))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen, dtype=b.dtype))


def disable_dropout_(module: tnn.Module) -> None:
    """p = 0 in every Dropout and in the attention-weight dropout of every MultiheadAttention."""
    for m in module.modules():
        if isinstance(m, tnn.Dropout):
            m.p = 0.0
        if isinstance(m, tnn.MultiheadAttention):
            m.dropout = 0.0


def state_dict_arrays(module: tnn.Module) -> dict[str, np.ndarray]:
    """The module's state dict as numpy arrays (what `convert.load_official_checkpoint` gives)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
