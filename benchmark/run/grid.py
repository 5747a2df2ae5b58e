"""Parameter grids, benchopt-style: ``dip[iterations=500,2000]`` names one method instance per
combination of the listed values (``dip[iterations=500]``, ``dip[iterations=2000]``).

Syntax of a method spec: ``name`` or ``name[key=v1,v2,...,key2=w1,...]``; a new key starts at
the first comma-separated token holding ``=``, so a value list needs no brackets of its own
(``[v1,v2]`` around it is accepted too, as benchopt writes it). Values are read as integers,
floats, booleans (``true``/``false``), ``null``, else strings; quotes keep a string as written.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from benchmark.core.errors import UserError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class MethodSpec:
    """A method name and, per parameter, the values to sweep (one value: an override)."""

    name: str
    grid: dict[str, list[Any]] = field(default_factory=dict)

    def combinations(self) -> Iterator[dict[str, Any]]:
        """Every combination of the grid's values, first key varying slowest."""
        keys = list(self.grid)
        for values in itertools.product(*(self.grid[k] for k in keys)):
            yield dict(zip(keys, values, strict=True))


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: ``"tv,dip[iterations=5,10]"`` → two specs."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise UserError(f"unbalanced ']' in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise UserError(f"unbalanced '[' in {text!r}")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_value(token: str) -> Any:
    """A scalar as a user means it: ``500`` → 500, ``0.01``/``1e-3`` → float, ``true`` → True."""
    text = token.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _values(where: str, key: str, tokens: list[str]) -> list[Any]:
    text = ",".join(tokens).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    values = [parse_value(t) for t in text.split(",") if t.strip()]
    if not values:
        raise UserError(f"{where}: parameter {key!r} has no value")
    return values


def parse_spec(text: str) -> MethodSpec:
    """``dip[iterations=500,2000]`` → MethodSpec("dip", {"iterations": [500, 2000]})."""
    where = f"method {text!r}"
    text = text.strip()
    if "[" not in text:
        if not _NAME.match(text):
            raise UserError(f"{where}: expected a method name, optionally followed by [param=value,...]")
        return MethodSpec(text)
    name, _, rest = text.partition("[")
    name = name.strip()
    if not _NAME.match(name) or not rest.endswith("]"):
        raise UserError(f"{where}: expected name[param=value,...], e.g. dip[iterations=500,2000]")
    body = rest[:-1]
    grid: dict[str, list[Any]] = {}
    key: str | None = None
    tokens: list[str] = []
    for token in split_top_level(body) if body.strip() else []:
        head, eq, tail = token.partition("=")
        if eq and _NAME.match(head.strip()):
            if key is not None:
                grid[key] = _values(where, key, tokens)
            key = head.strip()
            if key in grid:
                raise UserError(f"{where}: parameter {key!r} given twice")
            tokens = [tail]
        elif key is None:
            raise UserError(f"{where}: expected param=value, got {token!r}")
        else:
            tokens.append(token)
    if key is not None:
        grid[key] = _values(where, key, tokens)
    return MethodSpec(name, grid)


def parse_setting(text: str) -> tuple[str, str, list[Any]]:
    """``--set dip.iterations=500`` → ("dip", "iterations", [500]); several values sweep."""
    target, eq, value = text.partition("=")
    method, dot, key = target.strip().partition(".")
    if not (eq and dot and _NAME.match(method) and _NAME.match(key)):
        raise UserError(f"--set {text!r}: expected METHOD.PARAM=VALUE, e.g. --set dip.iterations=500")
    return method, key, _values(f"--set {text!r}", key, split_top_level(value))


def format_value(value: Any) -> str:
    """How a parameter value is written in a label (the grid syntax reads it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def label(name: str, params: dict[str, Any]) -> str:
    """``dip[iterations=500,lr=0.001]``: the name plus the given parameters, sorted by key."""
    if not params:
        return name
    return f"{name}[{','.join(f'{k}={format_value(params[k])}' for k in sorted(params))}]"
