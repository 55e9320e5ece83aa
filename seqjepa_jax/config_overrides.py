"""Checks `--config.<path>=value` overrides before absl applies them (issue 7.5).

ml_collections rejects an unknown field with a bare `AttributeError: 'name'` traceback and a bad
value with "invalid literal for int()"; `check_config_overrides` instead names every bad override,
the fields that do exist (with a did-you-mean) and the expected type, in one ValueError, before JAX
is imported. Like `main`, it executes the config file: config files are Python, the user's own
code, so only run config files you trust (docs/fault_tolerance.md).
"""

from __future__ import annotations

import ast
import difflib
import os
import sys
from collections.abc import Sequence

import ml_collections

from seqjepa_jax.config_defaults import load_config_file
from seqjepa_jax.config_types import tuple_problem

BOOL_WORDS = ("true", "false", "1", "0")


def config_file_argument(argv: Sequence[str], flag: str = "config") -> str | None:
    """The value of `--config=...` (or `--config ...`) in `argv`, or None."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            return arg.split("=", 1)[1]
        if arg == f"--{flag}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def overrides(argv: Sequence[str], flag: str = "config") -> list[tuple[str, str | None]]:
    """[(dotted field, value or None)] of every `--config.<field>[=value]` in `argv`."""
    found = []
    for arg in argv:
        if arg.startswith(f"--{flag}."):
            name, has_value, value = arg[len(flag) + 3 :].partition("=")
            found.append((name, value if has_value else None))
    return found


def _tuple_value_problem(field: str, current: tuple, value: str) -> str | None:
    """Why `value` cannot become the tuple field config.<field>, parsed as ml_collections does
    (a Python literal such as 1,3,5 or (1, 3); anything else becomes a one-string tuple)."""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    if not isinstance(parsed, (tuple, list)):
        parsed = (parsed,)
    problem = tuple_problem(f"config.{field}", current, tuple(parsed))
    return problem.removesuffix(".") if problem else None


def _value_problem(field: str, current: object, value: str) -> str | None:
    """Why `value` cannot become config.<field> (whose current value is `current`), or None."""
    if isinstance(current, tuple):
        return _tuple_value_problem(field, current, value)
    if isinstance(current, bool):
        if value.lower() not in BOOL_WORDS:
            return f"config.{field} is a bool; pass true or false, not {value!r}"
        return None
    for kind, convert, example in ((int, int, "an integer"), (float, float, "a number")):
        if isinstance(current, kind):
            try:
                convert(value)
            except ValueError:
                return f"config.{field} is {example} (now {current!r}); {value!r} is not {example}"
            return None
    return None


def _field_problem(config: ml_collections.ConfigDict, field: str, value: str | None) -> str | None:
    node: object = config
    parts = field.split(".")
    for depth, part in enumerate(parts):
        parent = ".".join(["config", *parts[:depth]])
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            if not isinstance(node, ml_collections.ConfigDict):
                return f"{parent} is a {type(node).__name__}, it has no field {part!r}"
            names = sorted(node.keys())
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            return f"{parent} has no field {part!r}; {hint}its fields are {names}"
        node = node[part]
    if value is None:
        return None
    return _value_problem(field, node, value)


def check_config_overrides(argv: Sequence[str], flag: str = "config") -> None:
    """Raises ValueError naming every bad `--config.*` override (module docstring)."""
    spec = config_file_argument(argv, flag)
    if spec is None:
        return
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ValueError(
            f"--{flag}={spec}: config file {path!r} does not exist; pass a file such as "
            "configs/default.py (relative to the current directory)."
        )
    config = load_config_file(path, arg or None)
    problems = []
    for field, value in overrides(argv, flag):
        problem = _field_problem(config, field, value)
        if problem:
            shown = f"--{flag}.{field}" + ("" if value is None else f"={value}")
            problems.append(f"{shown}: {problem}.")
    if problems:
        raise ValueError(
            "Invalid config overrides (fields and defaults: seqjepa_jax/config_defaults.py):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def parse_flags_checked(argv: list[str]) -> list[str]:
    """absl's flag parsing after `check_config_overrides`: a bad override or config file is named
    with the fix (exit status 1) instead of an ml_collections traceback. The `flags_parser` of the
    command lines (`main`, `evaluate`, `convert`)."""
    from absl import app

    try:
        check_config_overrides(argv)
    except ValueError as error:
        sys.stderr.write(f"FATAL Flags parsing error:\n{error}\n")
        sys.exit(1)
    return app.parse_flags_with_usage(argv)
