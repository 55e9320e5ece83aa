"""The tiny config's real step compiled for a TPU slice on a CPU-only machine (seqjepa_jax/aot.py).

Needs libtpu (the `test` extra installs `jax[tpu]`, which brings the libtpu matching jax): the
topology is libtpu's compile-only description of a v5e-4 (`v5e:2x2`), nothing runs on a TPU.
"""

import json
import os
import subprocess
import sys

import jax
import pytest

pytest.importorskip("libtpu", reason="pip install -e '.[test]' (jax[tpu]) brings libtpu")

from seqjepa_jax import accelerators, aot, compile_plan  # noqa: E402
from seqjepa_jax.config_defaults import load_config_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED_KEYS = (
    "topology", "n_devices", "global_batch", "fits", "hbm_bytes_per_device",
    "hbm_capacity_bytes", "flops_per_device", "bytes_per_device", "roofline_step_seconds",
    "images_per_second", "collectives",
)  # fmt: skip


def tiny_config():
    return load_config_file(os.path.join(ROOT, "configs", "default.py"), "tiny")


@pytest.fixture(scope="module")
def v5e4_report():
    return aot.plan(tiny_config(), accelerators.parse_topology("v5e:2x2"))


def test_tiny_step_compiles_for_v5e4_with_the_report_fields(v5e4_report):
    report = v5e4_report
    assert set(REQUIRED_KEYS) <= set(report)
    assert json.loads(json.dumps(report))["topology"] == "v5e:2x2"
    assert (report["n_devices"], report["n_hosts"], report["global_batch"]) == (4, 1, 8)
    assert report["device_kind"] == "TPU v5 lite"
    assert report["per_device_batch"] == 2 and report["views_per_sequence"] == 4
    assert report["fits"] and 0 < report["hbm_bytes_per_device"] < report["hbm_capacity_bytes"]
    assert report["hbm_capacity_bytes"] == 16 * 2**30
    # The report's need is the training phase here: the step's own need plus one prefetched batch.
    step = report["hbm_breakdown"]["train_step"]
    assert report["hbm_bytes_per_device"] >= step["total"] > step["temporaries"] > 0
    assert step["aliased"] > 0  # the state is donated
    assert report["flops_per_device"] > 0 and report["bytes_per_device"] > 0
    assert report["eval_flops_per_device"] > 0
    assert set(report["compile_seconds"]) == {"train_step", "eval_features"}
    # images/s is the global batch x views over the roofline step time.
    assert report["images_per_second"] == pytest.approx(8 * 4 / report["roofline_step_seconds"])
    assert report["images_per_second_per_chip"] == pytest.approx(report["images_per_second"] / 4)
    assert 0 < report["mfu"] <= 1


def test_data_parallel_step_has_only_all_reduces_carrying_the_gradients(v5e4_report):
    """One gradient all-reduce plus the BatchNorm statistics (and metric) reductions: no
    all-gather, permute or all-to-all (the SVD of the effective rank once brought all three)."""
    collectives = v5e4_report["collectives"]
    assert set(collectives) == {"all-reduce"}
    config = tiny_config()
    mesh = compile_plan.topology_mesh(accelerators.parse_topology("v5e:2x2"))
    inputs = compile_plan.build_inputs(config, mesh)[0]
    param_bytes = aot.tree_bytes(inputs.state.params)  # float32 gradients of every parameter
    # Every gradient is all-reduced once; BN moments, the Gram matrix and metrics add a little.
    assert param_bytes <= collectives["all-reduce"]["bytes"] < 1.5 * param_bytes
    assert collectives["all-reduce"]["count"] >= 2


def test_batch_not_divisible_fails_before_compiling():
    config = tiny_config()
    config.train.batch_size = 6
    with pytest.raises(ValueError, match="batch_size=6 is not a positive multiple of the 4"):
        aot.plan(config, accelerators.parse_topology("v5e:2x2"))


def test_command_line_names_a_bad_topology():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "seqjepa_jax.aot", "--config=configs/default.py:tiny",
         "--topology=v9:2x2"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown chip 'v9'" in result.stderr.strip().splitlines()[-1]
    assert jax.default_backend() == "cpu"  # nothing here touched a TPU
