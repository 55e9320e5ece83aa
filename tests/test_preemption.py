"""SIGTERM during training: checkpoint at the current step, exit 0, and the rerun resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(__file__), "..")


def saved_steps(workdir: str) -> list[int]:
    folder = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    workdir = str(tmp_path / "work")
    command = [
        sys.executable,
        "-m",
        "seqjepa_jax.main",
        "--config=configs/default.py:tiny",
        f"--workdir={workdir}",
        f"--config.data.data_dir={tmp_path / 'data'}",
        "--config.train.num_epochs=200",
        "--config.train.checkpoint_every_steps=5",
    ]
    env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not saved_steps(workdir) and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert saved_steps(workdir), "no periodic checkpoint appeared"
    process.send_signal(signal.SIGTERM)
    sent = time.time()
    _, log = process.communicate(timeout=120)
    assert process.returncode == 0, log[-2000:]
    assert time.time() - sent < 60
    assert "Preempted: checkpoint at step" in log
    steps = saved_steps(workdir)
    stopped = int(log.split("Preempted: checkpoint at step ")[1].split(" saved")[0])
    assert steps[-1] == stopped and stopped < 6 * 200  # saved where it stopped, long before the end
    assert not os.path.exists(os.path.join(workdir, "results.json"))
