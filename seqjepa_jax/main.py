"""Command line of seq-JEPA training: `python -m seqjepa_jax.main --config=... --workdir=...`.

Thin on purpose (Flax examples' layout): parse flags, optionally initialise multi-host JAX, set up
logging, and hand over to `train.train_and_evaluate`. Any config field can be overridden with
`--config.<group>.<field>=value`; unknown fields and wrong types are rejected by ml_collections.
Overrides are checked first (`config_overrides.py`) so that a misspelt field or a bad value is
named with the fix. Rerunning with the same `--workdir` resumes from its newest intact checkpoint,
unless another run holds the workdir or the config changed in a way that alters the training
(`--allow_config_change`). Mistakes in the input end as one `ERROR:` line with exit status 1,
without a traceback (`user_errors.py`; SEQJEPA_TRACEBACK=1 shows it).

The config file is executed as Python (ml_collections): it is the user's own code, like a
training script, so only pass config files you trust.
"""

from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

from seqjepa_jax.config_overrides import parse_flags_checked
from seqjepa_jax.user_errors import entry_point

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/default.py.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results.json go.")
flags.DEFINE_bool(
    "distributed",
    None,
    "Call jax.distributed.initialize() (multi-host). Default: decided from the environment "
    "(SEQJEPA_DISTRIBUTED, JAX_COORDINATOR_ADDRESS, SLURM); see seqjepa_jax/distributed.py.",
)
flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-host without auto-detection)."
)
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.DEFINE_bool(
    "xla_cpu_fast",
    True,
    "Append --xla_cpu_experimental_ynn_fusion_type=reduce to XLA_FLAGS before JAX starts: it "
    "multi-threads the BatchNorm reductions on XLA:CPU (1.4-2.4x faster steps measured on a "
    "2-core Xeon, experiments/results/bench_step_cpu.jsonl). Other backends ignore it.",
)
flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume a workdir whose config.json differs in fields that change the training trajectory "
    "(batch size, schedule, model, seed, epochs...); the old config.json is kept as "
    "config.step<N>.json. Logging, checkpoint cadence, evaluation settings and the data's "
    "location never need it (seqjepa_jax/run_config.py).",
)
flags.mark_flags_as_required(["config", "workdir"])

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=reduce"


def xla_flags_with_ynn(xla_flags: str, enabled: bool) -> str:
    """XLA_FLAGS with YNN_FLAG appended when `enabled` and no ynn_fusion_type is set already.

    A ynn_fusion_type the user put in XLA_FLAGS wins; `--noxla_cpu_fast` leaves XLA_FLAGS
    untouched (docs/benchmarks.md).
    """
    if not enabled or "ynn_fusion_type" in xla_flags:
        return xla_flags
    return f"{xla_flags} {YNN_FLAG}".strip()


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, after `config_overrides.check_config_overrides` (clear errors)."""
    return parse_flags_checked(argv)


@entry_point
def main(argv: list[str]) -> None:
    """Entry point for absl; user errors end as one `ERROR:` line (`user_errors.py`)."""
    del argv
    # At the entry point, not at import: XLA reads its flags when JAX starts, which is below.
    xla_flags = xla_flags_with_ynn(os.environ.get("XLA_FLAGS", ""), FLAGS.xla_cpu_fast)
    if xla_flags:
        os.environ["XLA_FLAGS"] = xla_flags
    from seqjepa_jax import distributed

    distributed.initialize(
        FLAGS.distributed,
        os.environ,
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
    )
    from seqjepa_jax import checkpointing, train

    checkpointing.quiet_orbax_logs()

    train.train_and_evaluate(
        FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change
    )


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
