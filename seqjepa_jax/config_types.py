"""Element types of tuple config fields, checked before any other config check (issue 20).

ml_collections keeps a field's type (an int field refuses a string), but a tuple field takes any
tuple: `--config.eval.m_val=abc` becomes `('abc',)` and `--config.model.stage_sizes=two` becomes
`('two',)`, which later fail deep inside a comparison or a ResNet loop with a TypeError. The
reference for each field is its default in `config_defaults.base_config()`: a tuple of ints must
stay ints, a tuple of numbers numbers, a tuple of strings strings. Fields that recipes add, and
empty defaults, are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ml_collections

KIND_NAMES = {int: "integers", float: "numbers", str: "strings"}


def _element_kind(values: tuple[Any, ...]) -> type | None:
    """int, float or str when every element of a default tuple has that kind, else None."""
    if not values:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return int
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return float
    if all(isinstance(v, str) for v in values):
        return str
    return None


def element_fits(kind: type, value: Any) -> bool:
    """Whether one tuple element has the kind of its field (ints are numbers; bools are not)."""
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def example(values: tuple[Any, ...]) -> str:
    """How to pass a tuple on the command line: '1,3,5' (ml_collections parses it as a tuple)."""
    return ",".join(repr(v) if isinstance(v, str) else str(v) for v in values)


def tuple_problem(name: str, reference: tuple[Any, ...], value: Any) -> str | None:
    """Why `value` cannot be the tuple field `name` whose default is `reference`, or None."""
    kind = _element_kind(reference)
    if kind is None:
        return None
    items = value if isinstance(value, (tuple, list)) else None
    if items is not None and all(element_fits(kind, v) for v in items):
        return None
    return (
        f"{name}={value!r} must be a tuple of {KIND_NAMES[kind]} such as {reference!r}; on "
        f"the command line pass e.g. --{name}={example(reference)}."
    )


def _leaves(node: ml_collections.ConfigDict, prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def tuple_type_problems(
    config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict | None = None
) -> list[str]:
    """A sentence for each tuple field of `config` whose elements do not fit its default's."""
    if reference is None:
        from seqjepa_jax.config_defaults import base_config

        reference = base_config()
    problems = []
    for name, default in _leaves(reference, ""):
        if not isinstance(default, tuple):
            continue
        node: Any = config
        for part in name.split("."):
            node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
        if node is not None:
            problem = tuple_problem(f"config.{name}", default, node)
            if problem:
                problems.append(problem)
    return problems
