"""The seq-JEPA training loop: data, state, checkpoints, metrics, evaluation, summary.

`train_and_evaluate(config, workdir)` is the whole job of `python -m seqjepa_jax.main`. It is a
composition of small functions that the tests call one by one:

1. validate the config against the devices (before anything compiles);
2. build the run's data (`data/datasets.py`: rendered or on-disk objects, or image datasets whose
   views are made on the devices) and the model; check that the data fits the batches, that a
   checkpoint already in the workdir fits the model, and that the workdir is writable, all before
   anything compiles or is written (issue 7.5);
3. create the state directly with its sharding, or restore the newest intact checkpoint in the
   workdir (`checkpointing.Checkpointer.restore` skips unreadable ones);
4. run the jitted step over the data stream starting at the state's step (data order is a
   function of (seed, step), so a resumed run sees exactly the batches it would have seen);
   stop cleanly on SIGTERM and on non-finite metrics (`faults.py`);
5. every `eval_every_epochs`, score the online probes on the held-out split;
6. at the end, save a final checkpoint, fit frozen-feature probes on the trained model and on a
   randomly initialised one of the same architecture, and write `results.json`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import flax.linen as nn
import jax
import ml_collections
from absl import logging
from clu import metric_writers
from etils import epath
from tqdm.auto import tqdm

from seqjepa_jax import checkpointing, faults, methods, schedules, startup_checks
from seqjepa_jax.config_checks import validate_config
from seqjepa_jax.data import kinds
from seqjepa_jax.data.datasets import RunData, build_data
from seqjepa_jax.evaluation import features as features_lib
from seqjepa_jax.evaluation import report as report_lib
from seqjepa_jax.evaluation import scoring, tables
from seqjepa_jax.models.heads import OnlineProbes
from seqjepa_jax.optimizers import build_optimizer
from seqjepa_jax.run_config import check_config_change, save_config
from seqjepa_jax.sharding import make_mesh, replicated
from seqjepa_jax.state import TrainState, init_train_state
from seqjepa_jax.train_step import jit_train_step, make_train_step
from seqjepa_jax.training_history import (
    TRAINING_CURVES_FILE,
    TrainingHistory,
    training_curves_figure,
)
from seqjepa_jax.workdir_lock import hold_for_run


def build_model(config: ml_collections.ConfigDict) -> tuple[nn.Module, OnlineProbes]:
    """The online module of `config.method` (`methods.py`) and its online probes, for the
    data's action width."""
    action_dim = kinds.action_dim(config.data)
    model = methods.build_method_model(config, action_dim)
    probes = OnlineProbes(config.data.num_classes, action_dim, config.model.probe_hidden)
    return model, probes


def build_schedules(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[schedules.Schedule, schedules.Schedule]:
    """(learning-rate schedule, EMA τ schedule), both functions of the global step."""
    t = config.train
    learning_rate = schedules.learning_rate_schedule(
        t.lr_schedule,
        base_lr=t.learning_rate,
        initial_lr=t.initial_learning_rate,
        warmup_epochs=t.warmup_epochs,
        total_epochs=t.num_epochs,
        steps_per_epoch=steps_per_epoch,
        final_lr=t.final_learning_rate,
    )
    ema_decay = schedules.ema_decay_schedule(
        t.ema_schedule_unit,
        tau_base=t.ema_tau_base,
        total_epochs=t.num_epochs,
        steps_per_epoch=steps_per_epoch,
    )
    return learning_rate, ema_decay


def state_initializer(
    config: ml_collections.ConfigDict, model: nn.Module, probes: OnlineProbes, optimizer: Any
) -> Any:
    """The function key -> initial TrainState of this config (jit it or `jax.eval_shape` it)."""
    size = config.data.image_size

    def init(key: jax.Array) -> TrainState:
        return init_train_state(
            key,
            model,
            probes,
            optimizer,
            num_obs_views=methods.training_views(config) - 1,
            image_shape=(size, size, 3),
            use_ema=config.train.use_ema,
            identical_layer_init=config.model.identical_layer_init,
        )

    return init


def create_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    probes: OnlineProbes,
    optimizer: Any,
    mesh: jax.sharding.Mesh,
    *,
    seed: int | None = None,
) -> TrainState:
    """Initialises the state directly with a replicated sharding (no host copy)."""
    init = state_initializer(config, model, probes, optimizer)
    key = jax.random.PRNGKey(config.seed if seed is None else seed)
    return jax.jit(init, out_shardings=replicated(mesh))(key)


def abstract_state(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    probes: OnlineProbes,
    optimizer: Any,
    mesh: jax.sharding.Mesh,
) -> TrainState:
    """Shapes, dtypes and (replicated) shardings of the state, traced without compiling: what a
    checkpoint is checked against and restored into."""
    init = state_initializer(config, model, probes, optimizer)
    shapes = jax.eval_shape(lambda: init(jax.random.PRNGKey(0)))
    sharding = replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def log_startup(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, **info: Any) -> None:
    """Logs devices, hosts and the batch arithmetic (big_vision's start-up message)."""
    devices = mesh.devices.size
    logging.info(
        "Process %d/%d, %d local / %d global devices (%s), mesh %s",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        devices,
        jax.devices()[0].platform,
        dict(mesh.shape),
    )
    batch = config.train.batch_size
    logging.info(
        "Method %s (%s); global batch %d = %d per host = %d per device; %d views per sequence",
        config.method,
        methods.method_info(config.method).learns,
        batch,
        batch // jax.process_count(),
        batch // devices,
        methods.training_views(config),
    )
    for key, value in info.items():
        logging.info("%s: %s", key, value)


def describe_views(config: ml_collections.ConfigDict) -> str:
    """'M_tr = 3' for a sequence method, '2 views' for the others (titles and logs)."""
    if methods.method_info(config.method).views is None:
        return f"M_tr = {config.train.seq_len}"
    return f"{methods.training_views(config)} views"


def final_report(
    config: ml_collections.ConfigDict,
    feature_fn: Any,
    states: dict[str, TrainState],
    data: RunData,
) -> dict[str, dict[str, float]]:
    """The evaluation program's probes (`scoring.score_state`, same names and protocol) for each
    named state (e.g. trained and random init); path integration is left to the program."""
    return {
        name: scoring.score_state(
            config,
            feature_fn,
            state,
            data,
            knn_k=config.eval.knn_k,
            online=name == "trained",
            path_integration=False,
        )[0]
        for name, state in states.items()
    }


# Collapse warnings (train batches, `train_step.embedding_spread` / `effective_rank`).
COLLAPSE_SPREAD = 0.05
COLLAPSE_EFFECTIVE_RANK = 2.0


def log_train_metrics(
    writer: metric_writers.MetricWriter,
    bar: Any,
    step: int,
    metrics: dict[str, float],
    history: TrainingHistory | None = None,
) -> None:
    """Writes mean train metrics (TensorBoard, `history`), updates the progress bar, and warns when
    the encoder's embeddings collapse: to a point (spread) or onto a line (effective rank)."""
    if not metrics:
        return
    writer.write_scalars(step, {f"train/{k}": v for k, v in metrics.items()})
    if history is not None:
        history.add(step, "train", metrics)
    bar.set_postfix(
        loss=f"{metrics['ssl_loss']:.3f}",
        acc=f"{metrics['probe_accuracy']:.2f}",
        spread=f"{metrics['encoder_spread']:.2f}",
        rank=f"{metrics['encoder_effective_rank']:.1f}",
    )
    spread, rank = metrics["encoder_spread"], metrics["encoder_effective_rank"]
    if spread < COLLAPSE_SPREAD or rank < COLLAPSE_EFFECTIVE_RANK:
        logging.warning(
            "Step %d: encoder embeddings are collapsing (spread %.3f, effective rank %.2f; "
            "healthy runs stay near spread 1 and well above rank %.0f).",
            step,
            spread,
            rank,
            COLLAPSE_EFFECTIVE_RANK,
        )


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False
) -> dict[str, Any]:
    """Trains seq-JEPA as configured, resuming from `workdir` if it holds a checkpoint.

    Refuses a workdir that another run holds (`workdir_lock.py`) and, unless
    `allow_config_change`, a resume whose config changes the training trajectory
    (`run_config.py`). Start-up errors are the user's; a full disk is one `DiskFullError`
    (`startup_checks.RunGuard`).
    """
    guard = startup_checks.RunGuard(workdir, checkpointing.checkpoint_dir(workdir))
    with guard:
        return _train_and_evaluate(config, workdir, guard, allow_config_change)


def _train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    guard: startup_checks.RunGuard,
    allow_config_change: bool,
) -> dict[str, Any]:
    """`train_and_evaluate` inside its guard (which releases the workdir lock on return)."""
    mesh = make_mesh()
    validate_config(config, device_count=mesh.devices.size, process_count=jax.process_count())
    data = build_data(config, mesh)
    data.check_fits()
    steps_per_epoch = data.steps_per_epoch(config.train.batch_size)
    total_steps = steps_per_epoch * config.train.num_epochs
    model, probes = build_model(config)
    learning_rate, ema_decay = build_schedules(config, steps_per_epoch)
    optimizer = build_optimizer(config.train.optimizer, learning_rate, config.train.weight_decay)
    log_startup(
        config,
        mesh,
        **data.describe(),
        steps=f"{steps_per_epoch} per epoch x {config.train.num_epochs} epochs = {total_steps}",
    )
    checkpoint_dir = checkpointing.checkpoint_dir(workdir)
    abstract = abstract_state(config, model, probes, optimizer, mesh)
    checkpointing.check_compatible(checkpoint_dir, abstract)
    resume_step = max(checkpointing.saved_steps(checkpoint_dir), default=None)
    changes = check_config_change(config, workdir, resume_step, allow_change=allow_config_change)
    startup_checks.check_workdir_writable(workdir)
    hold_for_run(workdir, guard.stack)  # until the run returns or fails
    guard.inputs_checked()
    # Everything above only reads; from here on the run writes into the workdir, once every host
    # has passed the checks (else a fast host's writes would change what a slow one checks).
    startup_checks.wait_for_all_hosts("seqjepa_startup_checks_passed")
    if jax.process_index() == 0:  # atomic: a full disk leaves the previous config.json whole
        save_config(config, workdir, resume_step, changes)

    ckpt = checkpointing.Checkpointer(
        checkpoint_dir,
        save_every_steps=config.train.checkpoint_every_steps,
        keep=config.train.keep_checkpoints,
        async_save=config.train.async_checkpoints,
    )
    if ckpt.latest_step() is not None:
        state = ckpt.restore(abstract)
    else:
        state = create_state(config, model, probes, optimizer, mesh)
    start_step = int(state.step)
    train_step = make_train_step(model, probes, optimizer, learning_rate, ema_decay)
    if config.train.on_nonfinite == "skip":
        train_step = faults.skip_nonfinite_updates(train_step)
    step_fn = jit_train_step(train_step, mesh)
    feature_fn = features_lib.config_feature_fn(config, model, probes)
    writer = metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0, asynchronous=True
    )
    eval_every = max(1, config.train.eval_every_epochs) * steps_per_epoch
    monitor = faults.NonFiniteMonitor(config.train.on_nonfinite)
    last_metrics: dict[str, float] = {}
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        disable=not config.train.progress_bar or jax.process_index() > 0,
        unit="step",
        dynamic_ncols=True,
    )
    history = TrainingHistory(workdir, start_step, write=jax.process_index() == 0)
    started = time.time()
    stream = faults.named_read_errors(data.train_batches(start_step), start_step)
    try:
        with faults.PreemptionWatcher() as preemption:
            for step in range(start_step, total_steps):
                state, metrics = step_fn(state, next(stream))
                done = step + 1
                monitor.add(done, metrics)
                bar.update(1)
                if done % config.train.log_every_steps == 0 or done == total_steps:
                    last_metrics = monitor.take_mean() or last_metrics
                    log_train_metrics(writer, bar, done, last_metrics, history)
                if done % eval_every == 0 and done != total_steps:
                    online = report_lib.online_probe_report(
                        features_lib.extract_features(
                            feature_fn,
                            state.params,
                            state.batch_stats,
                            data.probe_batches("eval", config.eval.max_eval_objects),
                        )
                    )
                    writer.write_scalars(done, {f"eval/{k}": v for k, v in online.items()})
                    history.add(done, "eval", online)
                stop = preemption.should_stop(done)
                if stop or ckpt.should_save(done):
                    monitor.check()  # never checkpoint a state reached through a bad step
                    ckpt.save(done, state, force=stop)
                if stop:
                    break
        monitor.check()
    except BaseException as error:
        faults.keep_progress(error, ckpt, state, start_step, monitor)  # unreadable data
        ckpt.close()  # let a pending save of an earlier (good) state finish
        writer.flush()
        raise
    bar.close()
    train_seconds = time.time() - started
    ckpt.save(int(state.step), state, force=True)
    ckpt.wait()
    if preemption.received:
        writer.flush()
        ckpt.close()
        logging.warning("Preempted: checkpoint at step %d saved; rerun to resume.", state.step)
        return {"preempted": True, "step": int(state.step)}

    states = {"trained": state}
    if config.eval.compare_random_init:
        states["random_init"] = create_state(config, model, probes, optimizer, mesh)
    probe_results = final_report(config, feature_fn, states, data)
    final_online = {k: v for k, v in probe_results["trained"].items() if k.startswith("online_")}
    history.add(int(state.step), "eval", final_online)
    if jax.process_index() == 0:
        curves = str(epath.Path(workdir) / TRAINING_CURVES_FILE)
        training_curves_figure(
            history,
            probe_results,
            accuracy_key=report_lib.online_probe_counterpart(
                methods.has_aggregate(config), config.train.seq_len
            ),
            r2_key=tables.R2_COLUMNS[kinds.dataset_kind(config.data.name)][0][1],
            path=curves,
            title=f"{config.method}, {config.data.name} data, {describe_views(config)}, "
            f"seed {config.seed}",
        )
        logging.info("Training curves: %s", curves)
    for name, values in probe_results.items():
        writer.write_scalars(int(state.step), {f"final_{name}/{k}": v for k, v in values.items()})
    writer.flush()
    results = {
        "step": int(state.step),
        "steps_trained_this_run": int(state.step) - start_step,
        "train_seconds_this_run": train_seconds,
        "final_train_metrics": last_metrics,
        "nonfinite_skipped_steps": monitor.skipped_steps,
        "probes": probe_results,
    }
    if jax.process_index() == 0:
        epath.Path(workdir, "results.json").write_text(json.dumps(results, indent=2))
    ckpt.close()
    logging.info("Results: %s", json.dumps(probe_results, indent=2))
    return results
