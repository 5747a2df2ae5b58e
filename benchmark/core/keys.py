"""Stable text for values that become keys: a cell's hash, a parameter set in a table."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces (anything else as its ``str``): equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
