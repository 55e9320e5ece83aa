"""Imports a script of experiments/ (not a package) as a module, for the tests of those scripts."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

EXPERIMENTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments")


def load_experiment(name: str) -> ModuleType:
    """experiments/<name>.py, executed as a fresh module named `name`."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXPERIMENTS_DIR, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module
