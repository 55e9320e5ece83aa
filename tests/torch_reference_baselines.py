"""PyTorch references of the baselines of spec §8, with the official attribute names (not a test
module).

Written by hand from the spec's description of `models.py` (torch.nn only, no torchvision), with
the official attribute names and `nn.Sequential` indices, so that their `state_dict()` keys are
those of an official checkpoint and `seqjepa_jax.official_keys` maps them onto our modules. The
losses are written the way the spec describes them, independently of our JAX formulation: NT-Xent
as the 2B x 2B similarity matrix with its diagonal dropped and the partner column as label 0; SIE's
predictor as one explicit (E, E) matrix per sample applied with `bmm`; VICReg's terms with
`var(dim=0)` and the off-diagonal covariance entries. Every forward returns
(loss, z1, z2) as the official engine reads them (spec §4.1), in train mode.
"""

from __future__ import annotations

import copy

import torch
from torch import nn as tnn
from torch.nn import functional as F
from torch_reference import TorchResNet, torch_action_projection


def torch_head(
    in_features: int,
    features: tuple[int, ...],
    *,
    hidden_bias: bool = False,
    output_bias: bool = False,
    output_norm: bool = False,
) -> tnn.Sequential:
    """Linear, BatchNorm1d, ReLU per hidden layer; a last Linear; optionally BN(affine=False)."""
    layers: list[tnn.Module] = []
    width = in_features
    for hidden in features[:-1]:
        layers += [tnn.Linear(width, hidden, bias=hidden_bias), tnn.BatchNorm1d(hidden), tnn.ReLU()]
        width = hidden
    layers.append(tnn.Linear(width, features[-1], bias=output_bias))
    if output_norm:
        layers.append(tnn.BatchNorm1d(features[-1], affine=False))
    return tnn.Sequential(*layers)


def nt_xent_reference(features: torch.Tensor, batch_size: int, temperature: float) -> torch.Tensor:
    """Spec §8.1: similarity matrix of the 2B normalised rows, diagonal dropped, positive = the
    partner row, CrossEntropy with label 0 over [positive, negatives] / τ."""
    labels = torch.cat([torch.arange(batch_size) for _ in range(2)])
    labels = (labels[None, :] == labels[:, None]).float()
    features = F.normalize(features, dim=1)
    similarity = features @ features.T
    mask = torch.eye(labels.shape[0], dtype=torch.bool)
    labels = labels[~mask].view(labels.shape[0], -1)
    similarity = similarity[~mask].view(similarity.shape[0], -1)
    positives = similarity[labels.bool()].view(labels.shape[0], -1)
    negatives = similarity[~labels.bool()].view(similarity.shape[0], -1)
    logits = torch.cat([positives, negatives], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long))


def std_term(y: torch.Tensor) -> torch.Tensor:
    """mean(relu(1 - sqrt(var + 1e-4))) with the unbiased `var(dim=0)`."""
    centred = y - y.mean(dim=0)
    return torch.mean(F.relu(1 - torch.sqrt(centred.var(dim=0) + 0.0001)))


def cov_term(y: torch.Tensor, normaliser: int) -> torch.Tensor:
    """Sum of the squared off-diagonal entries of Cov(y) = yᶜᵀyᶜ / (N - 1), over `normaliser`."""
    centred = y - y.mean(dim=0)
    cov = centred.T @ centred / (y.shape[0] - 1)
    off = cov.flatten()[:-1].view(cov.shape[0] - 1, cov.shape[0] + 1)[:, 1:].flatten()
    return off.pow(2).sum() / normaliser


class TorchBaseline(tnn.Module):
    """Encoder shared by every baseline (torchvision names)."""

    def __init__(self, stem: str, width: int, stage_sizes: tuple[int, ...]):
        super().__init__()
        self.encoder = TorchResNet(stem, width, stage_sizes)
        self.embedding = width * 2 ** (len(stage_sizes) - 1)


class TorchSimCLR(TorchBaseline):
    def __init__(self, *, dims, temperature, **encoder):
        super().__init__(**encoder)
        self.projector = torch_head(self.embedding, dims, output_norm=True)
        self.temperature = temperature

    def forward(self, x1, x2, rel):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        y1, y2 = self.projector(z1), self.projector(z2)
        loss = nt_xent_reference(torch.cat([y1, y2]), y1.shape[0], self.temperature)
        return loss, z1, z2


class TorchBYOL(TorchBaseline):
    def __init__(self, *, dims, predictor_hidden, **encoder):
        super().__init__(**encoder)
        self.projector = torch_head(self.embedding, dims, output_norm=True)
        self.predictor = torch_head(dims[-1], (predictor_hidden, dims[-1]), output_bias=True)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)

    def forward(self, x1, x2, rel):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        p1, p2 = self.predictor(self.projector(z1)), self.predictor(self.projector(z2))
        y1_t = self.target_projector(self.target_encoder(x1)).detach()
        y2_t = self.target_projector(self.target_encoder(x2)).detach()
        cos = F.cosine_similarity
        loss = (2 - 2 * cos(p1, y2_t, dim=1).mean()) + (2 - 2 * cos(p2, y1_t, dim=1).mean())
        return loss, z1, z2


class TorchVICReg(TorchBaseline):
    def __init__(self, *, dims, coeffs, **encoder):
        super().__init__(**encoder)
        self.projector = torch_head(self.embedding, dims, hidden_bias=True)
        self.coeffs = coeffs

    def vicreg(self, y1, y2):
        inv, var, cov = self.coeffs
        width = y1.shape[1]
        return (
            inv * F.mse_loss(y1, y2)
            + var * (std_term(y1) / 2 + std_term(y2) / 2)
            + cov * (cov_term(y1, width) + cov_term(y2, width))
        )

    def forward(self, x1, x2, rel):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        return self.vicreg(self.projector(z1), self.projector(z2)), z1, z2


class TorchVICRegTraj(TorchVICReg):
    def __init__(self, *, alpha, unit_norm, official_pair, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.unit_norm, self.official_pair = alpha, unit_norm, official_pair

    def forward(self, x, rel):
        batch = x.shape[0]
        z = self.encoder(x.flatten(0, 1))
        y = self.projector(z).reshape(batch, 3, -1)
        z = z.reshape(batch, 3, -1)
        y_l, y_c, y_r = y[:, 0], y[:, 1], y[:, 2]
        n = y_c if self.unit_norm else y_c / y_c.norm(dim=1, keepdim=True)
        v1, v2 = y_c - y_l, y_r - y_c
        u1 = v1 - (v1 * n).sum(dim=1, keepdim=True) * n
        u2 = v2 - (v2 * n).sum(dim=1, keepdim=True) * n
        traj = -F.cosine_similarity(u1, u2, dim=1).mean()
        loss = self.vicreg(y_l, y_c) + self.alpha * traj
        pair = (z[:, 1], z[:, 2]) if self.official_pair else (z[:, 0], z[:, 1])
        return (loss, *pair)


class TorchEquiMod(TorchBaseline):
    def __init__(self, *, dims, action_dim, act_proj_dim, temperature, equi_factor, **encoder):
        super().__init__(**encoder)
        self.projector_equi = torch_head(self.embedding, dims, output_norm=True)
        self.projector_inv = torch_head(self.embedding, dims, output_norm=True)
        self.action_proj = torch_action_projection(action_dim, act_proj_dim)
        self.predictor = torch_head(dims[-1] + act_proj_dim, (dims[-1],), output_norm=True)
        self.temperature, self.equi_factor = temperature, equi_factor

    def forward(self, x1, x2, rel):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        inv1, inv2 = self.projector_inv(z1), self.projector_inv(z2)
        equi1, equi2 = self.projector_equi(z1), self.projector_equi(z2)
        predicted = self.predictor(torch.cat([self.action_proj(rel), equi1], dim=1))
        batch = x1.shape[0]
        equi = nt_xent_reference(torch.cat([predicted, equi2]), batch, self.temperature)
        inv = nt_xent_reference(torch.cat([inv1, inv2]), batch, self.temperature)
        return self.equi_factor * equi + inv, z1, z2


class TorchBYOLConditional(TorchBaseline):
    def __init__(self, *, dims, predictor_hidden, action_dim, act_proj_dim, **encoder):
        super().__init__(**encoder)
        self.projector = torch_head(self.embedding, dims, output_norm=True)
        self.action_proj = torch_action_projection(action_dim, act_proj_dim)
        self.predictor = torch_head(
            act_proj_dim + dims[-1], (predictor_hidden, dims[-1]), output_bias=True
        )
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)

    def forward(self, x1, x2, rel):
        z1 = self.encoder(x1)
        predicted = self.predictor(torch.cat([self.action_proj(rel), self.projector(z1)], dim=1))
        z2_t = self.target_encoder(x2)
        y2_t = self.target_projector(z2_t).detach()
        return 2 - 2 * F.cosine_similarity(predicted, y2_t, dim=1).mean(), z1, z2_t


class TorchSEN(TorchBaseline):
    def __init__(self, *, dims, action_dim, act_proj_dim, temperature, **encoder):
        super().__init__(**encoder)
        self.projector_equi = torch_head(self.embedding, dims, output_norm=True)
        self.action_proj = torch_action_projection(action_dim, act_proj_dim)
        self.predictor = torch_head(dims[-1] + act_proj_dim, (dims[-1],), output_norm=True)
        self.temperature = temperature

    def forward(self, x1, x2, rel):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        equi1, equi2 = self.projector_equi(z1), self.projector_equi(z2)
        predicted = self.predictor(torch.cat([self.action_proj(rel), equi1], dim=1))
        return (
            nt_xent_reference(torch.cat([predicted, equi2]), z1.shape[0], self.temperature),
            z1,
            z2,
        )


class TorchHyperNet(tnn.Module):
    def __init__(self, action_dim: int, outputs: int):
        super().__init__()
        self.net = tnn.Sequential(tnn.Linear(action_dim, outputs, bias=False))


class TorchParametrizedNet(tnn.Module):
    """ŷ_b = W_b x_b with W_b = hypernet(a_b).view(E, E), one explicit matrix per sample."""

    def __init__(self, width: int, action_dim: int):
        super().__init__()
        self.width = width
        self.hypernet = TorchHyperNet(action_dim, width * width)

    def forward(self, x, action):
        weights = self.hypernet.net(action).view(-1, self.width, self.width)
        return torch.bmm(x.unsqueeze(1), weights.transpose(-2, -1)).squeeze(1)


class TorchSIE(TorchBaseline):
    def __init__(self, *, dims, action_dim, coeffs, equi_factor, **encoder):
        super().__init__(**encoder)
        self.split = self.embedding // 2
        self.projector_inv = torch_head(self.split, dims, hidden_bias=True)
        self.projector_equi = torch_head(self.embedding - self.split, dims, hidden_bias=True)
        self.predictor = TorchParametrizedNet(dims[-1], action_dim)
        self.coeffs, self.equi_factor = coeffs, equi_factor

    def forward(self, x1, x2, rel):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        s = self.split
        inv1, inv2 = self.projector_inv(z1[:, :s]), self.projector_inv(z2[:, :s])
        equi1, equi2 = self.projector_equi(z1[:, s:]), self.projector_equi(z2[:, s:])
        predicted = self.predictor(equi1, rel)
        cat1, cat2 = torch.cat([inv1, equi1], dim=1), torch.cat([inv2, equi2], dim=1)
        inv, var, cov = self.coeffs
        width = cat1.shape[1]
        loss = (
            inv * F.mse_loss(inv1, inv2)
            + self.equi_factor * inv * F.mse_loss(predicted, equi2)
            + var * (std_term(cat1) / 2 + std_term(cat2) / 2)
            + var * std_term(predicted) / 2
            + cov * (cov_term(cat1, width) + cov_term(cat2, width))
        )
        return loss, z1, z2


class TorchConvIJEPA(TorchBaseline):
    """Spec §8.9 with EMA; `positions` (B, M + 1, 2) absolute, the last one the target's."""

    def __init__(self, *, dims, pred_hidden, action_dim, act_proj_dim, official_pair, **encoder):
        super().__init__(**encoder)
        self.projector = torch_head(self.embedding, dims, output_norm=True)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)
        self.action_proj = torch_action_projection(action_dim, act_proj_dim)
        self.predictor = torch_head(
            dims[-1] + act_proj_dim, (pred_hidden, dims[-1]), output_bias=True
        )
        self.official_pair = official_pair

    def forward(self, obs, last, positions):
        batch, num_obs = obs.shape[:2]
        z_obs = self.encoder(obs.flatten(0, 1))
        y_obs = self.projector(z_obs).reshape(batch, num_obs, -1)
        z_obs = z_obs.reshape(batch, num_obs, -1)
        z_t = self.target_encoder(last)
        y_t = self.target_projector(z_t).detach()
        loss = 0.0
        for i in range(num_obs):
            action = self.action_proj(positions[:, -1] - positions[:, i])
            predicted = self.predictor(torch.cat([action, y_obs[:, i]], dim=1))
            loss = loss + 1 - F.cosine_similarity(predicted, y_t, dim=1).mean()
        z2 = z_t if (self.official_pair or num_obs < 2) else z_obs[:, 1]
        return loss / num_obs, z_obs[:, 0], z2
