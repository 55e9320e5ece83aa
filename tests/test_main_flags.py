"""main.py sets the XLA:CPU YNN flag at the entry point only, and lets the user switch it off."""

from __future__ import annotations

import os
import subprocess
import sys

from seqjepa_jax.main import YNN_FLAG, xla_flags_with_ynn

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def test_ynn_flag_is_appended_once_and_user_values_win():
    assert xla_flags_with_ynn("", True) == YNN_FLAG
    assert xla_flags_with_ynn("--xla_foo=1", True) == f"--xla_foo=1 {YNN_FLAG}"
    assert xla_flags_with_ynn("--xla_foo=1", False) == "--xla_foo=1"  # --noxla_cpu_fast
    own = "--xla_cpu_experimental_ynn_fusion_type=none"
    assert xla_flags_with_ynn(own, True) == own
    assert xla_flags_with_ynn(YNN_FLAG, True) == YNN_FLAG


def test_importing_and_parsing_flags_neither_sets_xla_flags_nor_loads_jax():
    code = (
        "import os, sys\n"
        "from seqjepa_jax import main\n"
        "main.parse_flags(['main', '--config=configs/default.py', '--workdir=unused'])\n"
        "assert 'XLA_FLAGS' not in os.environ, os.environ['XLA_FLAGS']\n"
        "assert 'jax' not in sys.modules, 'jax imported before main() could set XLA_FLAGS'\n"
        "assert main.FLAGS.xla_cpu_fast\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.path.abspath(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
