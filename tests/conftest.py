"""Shared test settings.

Tests run on the CPU. XLA's optimisation passes dominate the run time of tiny models, so they are
disabled for the suite (as the Flax ImageNet example's tests do); numerics stay within float32
rounding of the optimised build. Multi-device checks start their own subprocess with XLA_FLAGS set
before JAX is imported (tests/multidevice_worker.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)
