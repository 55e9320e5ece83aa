"""Two local processes (multi-host on CPU) train exactly like one process on the same batch.

Each process feeds its half of the global batch; BatchNorm statistics, the loss and the gradients
are global, so the losses and the updated parameters match a single-process run (DESIGN.md:
"tested on CPU with two local processes").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run(num_processes: int, tmp_path) -> list[dict]:
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    outs = [str(tmp_path / f"n{num_processes}_p{i}.npz") for i in range(num_processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, str(i), str(num_processes), port, outs[i]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(num_processes)
    ]
    for proc in procs:
        log, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, log[-3000:]
    return [dict(np.load(out)) for out in outs]


def test_two_processes_match_one(tmp_path):
    (single,) = run(1, tmp_path)
    host0, host1 = run(2, tmp_path)
    np.testing.assert_array_equal(host0["losses"], host1["losses"])  # one global computation
    np.testing.assert_allclose(host0["losses"], single["losses"], rtol=1e-5)
    np.testing.assert_array_equal(host0["encoder"], host1["encoder"])
    relative = np.linalg.norm(host0["encoder"] - single["encoder"]) / np.linalg.norm(
        single["encoder"]
    )
    assert relative < 1e-4
    assert not np.allclose(single["losses"][0], single["losses"][2])
