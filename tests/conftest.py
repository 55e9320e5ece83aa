"""Shared test settings.

Tests run on the CPU. XLA's optimisation passes dominate the run time of tiny models, so they are
disabled for the suite (as the Flax ImageNet example's tests do); numerics stay within float32
rounding of the optimised build. Multi-device checks start their own subprocess with XLA_FLAGS set
before JAX is imported (tests/multidevice_worker.py).

The `test` extra installs libtpu (tests/test_aot.py compiles for TPU topologies without a TPU);
with it installed, every JAX process would first try to start a TPU and log the failure, so the
suite (and the subprocesses it starts, which inherit the environment) uses JAX_PLATFORMS=cpu
unless the caller sets it (e.g. JAX_PLATFORMS=cuda for the `gpu`-marked tests).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
