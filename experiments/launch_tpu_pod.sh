#!/usr/bin/env bash
# Train seq-JEPA on every worker of a Cloud TPU VM pod slice (multi-host), e.g. a v4-32.
#
# Usage (from a machine with gcloud set up; the repository must already be on every worker, at
# the same path, with its Python environment installed, e.g. via a startup script or a first
# `--command="git clone ... && pip install -e ."`):
#
#   TPU_NAME=my-pod ZONE=us-central2-b \
#   WORKDIR=gs://my-bucket/seqjepa/3diebench DATA_DIR=/mnt/disks/data/3DIEBench \
#   experiments/launch_tpu_pod.sh --config=configs/3diebench.py --config.train.batch_size=512
#
# Every extra argument is passed unchanged to `python -m seqjepa_jax.main` on every worker.
# Each worker runs one process; `--distributed` makes it call jax.distributed.initialize(), which
# finds the coordinator and the process ids from the TPU metadata. WORKDIR must be shared by all
# workers (a gs:// bucket); each worker reads only its own shard of the data (data/pipeline.py),
# so DATA_DIR may be a local copy on every worker or a shared path.
#
# Preemption / maintenance: the TPU VM sends SIGTERM; all workers agree on one step, save a
# checkpoint there and exit with status 0 (seqjepa_jax/faults.py). Rerun this script with the
# same WORKDIR to resume (docs/fault_tolerance.md).
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
: "${WORKDIR:?set WORKDIR to a path all workers share, e.g. gs://bucket/run}"
REPO_DIR="${REPO_DIR:-~/seqjepa_jax}"     # where the repository lives on the workers
PYTHON="${PYTHON:-python3}"
DATA_ARG=()
if [[ -n "${DATA_DIR:-}" ]]; then
  DATA_ARG=("--config.data.data_dir=${DATA_DIR}")
fi

# Quote every argument for the remote shell.
remote_args=$(printf ' %q' --distributed "--workdir=${WORKDIR}" ${DATA_ARG[@]+"${DATA_ARG[@]}"} "$@")

gcloud compute tpus tpu-vm ssh "${TPU_NAME}" \
  --zone="${ZONE}" \
  --worker=all \
  --command="cd ${REPO_DIR} && ${PYTHON} -m seqjepa_jax.main${remote_args}"
