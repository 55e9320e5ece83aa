"""Probes fitted on frozen features: a linear classifier, and MLP or linear (ridge) regressors.

The official offline evaluation trains its probes with AdamW for 300 epochs in mini-batches
(spec §7.1). On frozen features that are extracted once, the same probes fit much faster as
full-batch optimisation inside one jitted `lax.fori_loop`; the probe architectures are the
official ones (linear classifier; MLP in→h→h→out with ReLU for rotations, spec §7.1; linear
regressors for colour, blur and saccade positions, solved in closed form as ridge regression).
Features are centred and scaled with the training set's statistics first, so one learning rate
serves encoders of any scale (a random-init encoder and a trained one alike). How they are scaled
is `FEATURE_SCALINGS` (`standardise`): per feature (z-scores), or by one scale for all features,
which leaves the encoder's geometry as it is (the official probes read raw features, spec §7.1)
and cannot blow up a feature that is nearly constant on the training objects.

Model selection without the test split (issue 19, `ProbeSelection`): given a validation split
carved from the probe-training objects, `fit_regressor` early-stops every MLP at the step of
lowest validation MSE and picks its weight decay from a grid by the same criterion, and picks the
ridge penalty of a linear regressor from a grid (then refits it on fit + validation). Probe seeds
(the MLP's initialisation) are an argument, so their spread on the same features can be measured.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from seqjepa_jax.evaluation import metrics

REGRESSION_HEADS = ("mlp", "linear")
# "per_feature": z-score every feature. "global": centre every feature, divide all of them by one
# scale (the RMS of the centred training features). Per-feature z-scores divide a feature that is
# constant on the training objects (a ReLU unit of a random network that is always off there:
# std 0, divided by the 1e-6 guard) by its tiny std, so a held-out object where it fires a
# little reaches a z-score of hundreds and an MLP probe extrapolates wildly from it: the
# random-init encoder of the built-in Table 1 (seed 42) scores relative-rotation R² -32.9
# (uniform) / -0.99 (pooled) per feature and -0.12 / 0.69 with one global scale (issue 19;
# docs/evaluation.md). Global is the default (config.eval.feature_scaling, which must agree): it
# is the official raw-feature protocol (spec §7.1) up to one constant and has no knob to tune.
FEATURE_SCALINGS = ("per_feature", "global")
DEFAULT_FEATURE_SCALING = "global"


@dataclasses.dataclass(frozen=True)
class ProbeSelection:
    """How the regression probes are chosen on a validation split (module docstring).

    Attributes:
      validation_fraction: share of the probe-training objects held out for selection.
      weight_decays: the MLP's AdamW weight-decay grid.
      ridge_alphas: the linear (ridge) regressor's penalty grid.
      seeds: MLP initialisation seeds; scores are averaged and their spread reported.
    """

    validation_fraction: float = 0.2
    weight_decays: tuple[float, ...] = (1e-4, 1e-2, 1e-1)
    ridge_alphas: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
    seeds: tuple[int, ...] = (0,)


def validation_split(count: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(fit rows, validation rows) of `count` objects: a fixed random `fraction` for validation
    (at least one object on each side)."""
    if not 0.0 < fraction < 1.0 or count < 2:
        raise ValueError(
            f"A validation split needs 0 < fraction < 1 and >= 2 objects; got {fraction} of "
            f"{count}."
        )
    order = np.random.default_rng(seed).permutation(count)
    cut = min(max(int(round(count * fraction)), 1), count - 1)
    return np.sort(order[cut:]), np.sort(order[:cut])


class MLPRegressor(nn.Module):
    """in → hidden → hidden → out with ReLU (the official rotation regressor, spec §7.1)."""

    out_features: int
    hidden: int = 1024

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out_features)(x)


def standardise(
    train: np.ndarray,
    *others: np.ndarray,
    scaling: str = DEFAULT_FEATURE_SCALING,
    eps: float = 1e-6,
) -> tuple:
    """Centres every array on the training set's per-feature mean and divides it by the training
    set's std: each feature's own (`scaling="per_feature"`, z-scores) or one for all features
    (`"global"`: the root mean square of the centred training features; `FEATURE_SCALINGS`)."""
    if scaling not in FEATURE_SCALINGS:
        raise ValueError(f"Unknown feature scaling {scaling!r}; use one of {FEATURE_SCALINGS}.")
    mean = train.mean(axis=0)
    if scaling == "per_feature":
        scale = train.std(axis=0) + eps
    else:
        scale = np.sqrt(np.mean(np.square(train - mean))) + eps
    return tuple((x - mean) / scale for x in (train, *others))


def _cross_entropy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()


def _mean_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(outputs - targets))


@functools.partial(jax.jit, static_argnames=("module", "loss", "steps"))
def fit_full_batch(
    module: nn.Module,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    x: jax.Array,
    y: jax.Array,
    steps: int,
    learning_rate: float,
    weight_decay: float,
) -> dict:
    """`steps` full-batch AdamW steps of `module` on (x, y) under `loss`; returns the params."""
    params = module.init(jax.random.PRNGKey(0), x[:1])
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)

    def body(_: int, carry: tuple) -> tuple:
        p, s = carry
        grads = jax.grad(lambda q: loss(module.apply(q, x), y))(p)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    params, _ = jax.lax.fori_loop(0, steps, body, (params, tx.init(params)))
    return params


@functools.partial(jax.jit, static_argnames=("module", "steps"))
def fit_early_stopped(
    module: nn.Module,
    x: jax.Array,
    y: jax.Array,
    val_x: jax.Array,
    val_y: jax.Array,
    steps: int,
    learning_rate: float,
    weight_decay: float,
    seed: int,
) -> tuple[dict, jax.Array, jax.Array]:
    """`steps` full-batch AdamW steps on the MSE of (x, y); returns (the params of the step with
    the lowest validation MSE, that MSE, that step)."""
    params = module.init(jax.random.PRNGKey(seed), x[:1])
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)

    def val_loss(p: dict) -> jax.Array:
        return _mean_squared_error(module.apply(p, val_x), val_y)

    def body(i: int, carry: tuple) -> tuple:
        p, s, best, best_loss, best_step = carry
        grads = jax.grad(lambda q: _mean_squared_error(module.apply(q, x), y))(p)
        updates, s = tx.update(grads, s, p)
        p = optax.apply_updates(p, updates)
        loss = val_loss(p)
        better = loss < best_loss
        best = jax.tree.map(lambda b, n: jnp.where(better, n, b), best, p)
        return p, s, best, jnp.where(better, loss, best_loss), jnp.where(better, i + 1, best_step)

    start = (params, tx.init(params), params, val_loss(params), jnp.zeros((), jnp.int32))
    _, _, best, best_loss, best_step = jax.lax.fori_loop(0, steps, body, start)
    return best, best_loss, best_step


def linear_probe_logits(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    num_classes: int,
    *,
    steps: int = 500,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    feature_scaling: str = DEFAULT_FEATURE_SCALING,
) -> tuple[np.ndarray, np.ndarray]:
    """Fits a linear softmax classifier on frozen train features; (train logits, test logits).

    Only `train_x` / `train_y` reach the fit (and the standardisation): `test_x` may stack several
    held-out sets (in distribution and OOD) without any of them touching the probe.
    `feature_scaling`: `standardise`'s `scaling`.
    """
    train_x, test_x = standardise(train_x, test_x, scaling=feature_scaling)
    model = nn.Dense(num_classes)
    params = fit_full_batch(
        model,
        _cross_entropy,
        jnp.asarray(train_x, jnp.float32),
        jnp.asarray(train_y, jnp.int32),
        steps,
        learning_rate,
        weight_decay,
    )
    train_logits = np.asarray(model.apply(params, jnp.asarray(train_x, jnp.float32)))
    test_logits = np.asarray(model.apply(params, jnp.asarray(test_x, jnp.float32)))
    return train_logits, test_logits


def linear_probe_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    *,
    steps: int = 500,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
) -> dict[str, float]:
    """Fits a linear softmax classifier on frozen train features; top-1 (%) on both splits."""
    train_logits, test_logits = linear_probe_logits(
        train_x,
        train_y,
        test_x,
        num_classes,
        steps=steps,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
    )
    return {
        "train_accuracy": metrics.top1_accuracy(train_y, train_logits),
        "accuracy": metrics.top1_accuracy(test_y, test_logits),
    }


def fit_regressor(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    *,
    head: str = "mlp",
    hidden: int = 1024,
    steps: int = 500,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    ridge_alpha: float = 1.0,
    standardise_targets: bool = False,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    selection: ProbeSelection = ProbeSelection(),
    seed: int = 0,
    feature_scaling: str = DEFAULT_FEATURE_SCALING,
) -> np.ndarray:
    """Fits a regressor on frozen, standardised train features; returns its test predictions.

    `head` is "mlp" (the official rotation / crop / jitter regressor in→h→h→out, spec §7.1),
    trained with full-batch AdamW on the MSE, or "linear" (the official colour, blur and
    saccade-position regressors, spec §7.1-§7.2), solved in closed form as ridge regression with
    `ridge_alpha` (scikit-learn `Ridge`'s objective): the optimum that the official AdamW loop on a
    linear layer approaches, with no learning rate or step count to tune.

    With `validation` = (inputs, targets) of held-out probe-training objects, the hyperparameters
    are chosen on it (module docstring): the MLP's weight decay from `selection.weight_decays`
    and its step by early stopping (`weight_decay` is then unused), ridge's penalty from
    `selection.ridge_alphas` (`ridge_alpha` unused). `seed` initialises the MLP.
    `feature_scaling`: `standardise`'s `scaling`.

    `standardise_targets` fits the MLP on per-column z-scored targets (train statistics) and maps
    its predictions back. Not the official protocol (raw targets, spec §12.2): with raw targets a
    low-variance column, such as a quaternion's w for small rotations, gets almost no weight in the
    MSE, and its R² (and so the uniform average) reflects under-fitting more than the features
    (docs/evaluation.md). Ridge predictions are the same either way (linear in the targets).
    """
    if head not in REGRESSION_HEADS:
        raise ValueError(f"Unknown regression head {head!r}; use one of {REGRESSION_HEADS}.")
    if validation is None:
        train_x, test_x = standardise(train_x, test_x, scaling=feature_scaling)
    else:
        train_x, test_x, val_x = standardise(
            train_x, test_x, validation[0], scaling=feature_scaling
        )
        val_y = validation[1]
    if head == "linear":
        if validation is None:
            return ridge_predictions(train_x, train_y, test_x, ridge_alpha)
        errors = [
            np.mean((ridge_predictions(train_x, train_y, val_x, alpha) - val_y) ** 2)
            for alpha in selection.ridge_alphas
        ]
        alpha = selection.ridge_alphas[int(np.argmin(errors))]
        both_x, both_y = np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y])
        return ridge_predictions(both_x, both_y, test_x, alpha)
    shift, scale = 0.0, 1.0
    if standardise_targets:
        shift, scale = train_y.mean(axis=0), train_y.std(axis=0) + 1e-6
    model = MLPRegressor(train_y.shape[-1], hidden)
    x = jnp.asarray(train_x, jnp.float32)
    y = jnp.asarray((train_y - shift) / scale, jnp.float32)
    if validation is None:
        params = fit_full_batch(
            model, _mean_squared_error, x, y, steps, learning_rate, weight_decay
        )
    else:
        val = (jnp.asarray(val_x, jnp.float32), jnp.asarray((val_y - shift) / scale, jnp.float32))
        fits = [
            fit_early_stopped(model, x, y, *val, steps, learning_rate, decay, seed)
            for decay in selection.weight_decays
        ]
        params = min(fits, key=lambda fit: float(fit[1]))[0]
    return np.asarray(model.apply(params, jnp.asarray(test_x, jnp.float32))) * scale + shift


def ridge_predictions(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, alpha: float
) -> np.ndarray:
    """min_W,b |X W + b - Y|² + alpha |W|² (intercept unpenalised), solved in float64."""
    x = np.asarray(train_x, np.float64).reshape(len(train_x), -1)
    y = np.asarray(train_y, np.float64).reshape(len(train_y), -1)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc = x - x_mean
    gram = xc.T @ xc + alpha * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, xc.T @ (y - y_mean))
    test = np.asarray(test_x, np.float64).reshape(len(test_x), -1)
    return ((test - x_mean) @ weights + y_mean).astype(np.float32)


def r2_scores(targets: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Both R² definitions of `metrics.py`, by name."""
    return {
        "r2_uniform": metrics.r2_uniform(targets, predictions),
        "r2_pooled": metrics.r2_pooled(targets, predictions),
    }


def mlp_regression_r2(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    hidden: int = 1024,
    steps: int = 500,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
) -> dict[str, float]:
    """Fits the MLP regressor with MSE on frozen train features; R² (both definitions) on test."""
    predictions = fit_regressor(
        train_x,
        train_y,
        test_x,
        head="mlp",
        hidden=hidden,
        steps=steps,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
    )
    return r2_scores(test_y, predictions)
