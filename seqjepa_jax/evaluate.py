r"""Offline evaluation: `python -m seqjepa_jax.evaluate --config=... --workdir=...`.

Reuses the training config (with the same `--config.*` overrides as the training run) and the
newest checkpoint in `--workdir` (or `--step`), extracts frozen features once and fits every probe
(`evaluation/program.py`, docs/evaluation.md). Writes `results.json`, `table1.md` and PNG figures
into `--out` (default `<workdir>/eval`). Example:

  python -m seqjepa_jax.evaluate --config=configs/default.py --workdir=workdirs/default \
      --m_val=1,3,5,8 --knn_k=20 --ood --config.data.procedural.num_ood_objects=120
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from seqjepa_jax.config_overrides import parse_flags_checked
from seqjepa_jax.user_errors import checking_inputs, entry_point

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "The training run's config file, e.g. configs/default.py.", lock_config=True
)
flags.DEFINE_string("workdir", None, "The training run's workdir (holds checkpoints/).")
flags.DEFINE_list(
    "m_val",
    None,
    "Observation counts of the aggregate probes, e.g. 1,3,5. Default: 1..8, capped by the views "
    "per object of rendered data.",
)
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate. Default: the newest.")
flags.DEFINE_bool(
    "official_bn_train_mode",
    False,
    "Q8 fidelity: extract features with the frozen model in train mode (BN batch statistics, "
    "dropout), as the official offline evaluation does; nothing saved is updated.",
)
flags.DEFINE_integer(
    "knn_k", None, "Neighbours of the cosine k-NN classifier (default: config.eval.knn_k, 20)."
)
flags.DEFINE_string("out", None, "Output folder. Default: <workdir>/eval.")
flags.DEFINE_bool(
    "compare_random_init",
    None,
    "Also probe a randomly initialised model. Default: config.eval.compare_random_init.",
)
flags.DEFINE_bool(
    "ood",
    None,
    "Also score every probe (fitted in distribution) on the OOD split (spec §6.2): the built-in "
    "data's num_ood_objects, or the 3DIEBench-OOD tree of config.data.ood_dir. Default: "
    "config.eval.ood.",
)
flags.DEFINE_bool(
    "path_integration",
    True,
    "Fit the path-integration probes (cumulative transform view 0 -> M_val-1 from the aggregate, "
    "from the first and last encoder embeddings, and from the actions alone).",
)
flags.DEFINE_bool("plots", True, "Write the feature projections and the view strip (PNG).")
flags.DEFINE_bool("umap", True, "Project with umap-learn when installed (else PCA).")
flags.DEFINE_list(
    "heatmap_runs",
    [],
    "Other runs (workdirs, eval folders or results.json) for the M_tr x M_val heatmap.",
)
flags.mark_flags_as_required(["config", "workdir"])


def parse_m_val(values: list[str] | None) -> tuple[int, ...] | None:
    """`--m_val` as integers; ValueError naming a bad entry."""
    if values is None:
        return None
    try:
        return tuple(int(v) for v in values)
    except ValueError as error:
        raise ValueError(f"--m_val={','.join(values)} must be integers, e.g. 1,3,5.") from error


@entry_point
def main(argv: list[str]) -> None:
    """Entry point for absl. Evaluation reads a config, a checkpoint and data and writes reports,
    so its ValueErrors and OSErrors are the user's: one `ERROR:` line (`user_errors.py`)."""
    del argv
    from seqjepa_jax import checkpointing
    from seqjepa_jax.evaluation import program

    checkpointing.quiet_orbax_logs()
    with checking_inputs():
        options = program.EvalOptions(
            m_val=parse_m_val(FLAGS.m_val),
            step=FLAGS.step,
            official_bn_train_mode=FLAGS.official_bn_train_mode,
            knn_k=FLAGS.knn_k,
            out_dir=FLAGS.out,
            compare_random_init=FLAGS.compare_random_init,
            plots=FLAGS.plots,
            use_umap=FLAGS.umap,
            heatmap_runs=tuple(FLAGS.heatmap_runs),
            ood=FLAGS.ood,
            path_integration=FLAGS.path_integration,
        )
        program.evaluate_checkpoint(FLAGS.config, FLAGS.workdir, options)
    logging.info("Wrote the results to %s", options.out_dir or f"{FLAGS.workdir}/eval")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_checked)
