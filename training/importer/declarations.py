"""DIR/nbc.toml of an import: the channels and attributes the data declares, written as TOML."""

from __future__ import annotations

import json
import math
import re
from typing import Any


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if math.isfinite(float(value)) else "0.0"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def declarations_toml(channels: dict[str, float], attributes: dict[str, dict[str, Any]]) -> str:
    """DIR/nbc.toml: the channels and attributes this data declares (read by `nbc train`; copy them into the
    configuration that serves the model)."""
    lines = ["# Written by `nbc import`: what this data declares. `nbc train --source DIR` reads it.", ""]
    if channels:
        lines += ["[channels]", *(f"{_toml_key(n)} = {_toml_value(c)}" for n, c in channels.items()), ""]
    if attributes:
        lines.append("[attributes]")
        for name, spec in attributes.items():
            inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in spec.items() if v or k == "kind")
            lines.append(f"{name} = {{ {inner} }}")
        lines.append("")
    return "\n".join(lines)
