"""Parsing ``--param key=value`` against a model's defaults."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from xraybench.errors import ParamError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"--param {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``; a ParamError naming both when impossible.

    bool: true/false, yes/no, on/off, 1/0; int: a whole number; float: a finite number;
    str: the text as given; list/dict: JSON of that kind; None: JSON if it parses, else
    the text. Values that are not text (Optuna's suggestions) are taken as they are.
    """
    if not isinstance(value, str):
        return value
    expected = f"expected {type(default).__name__} like the default {default!r}"
    try:
        if isinstance(default, bool):
            low = value.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            number = float(value)
            if not math.isfinite(number):
                expected = f"expected a finite number like the default {default!r}"
                raise ValueError
            return number
        if isinstance(default, str):
            return value
        if isinstance(default, (list, tuple, dict)):
            parsed = json.loads(value)
            if not isinstance(parsed, list if isinstance(default, (list, tuple)) else dict):
                raise ValueError
            return parsed
        if default is None:
            try:
                return json.loads(value)
            except (ValueError, RecursionError):
                return value
    except (ValueError, RecursionError):
        if isinstance(default, (list, tuple, dict)):
            kind = "list" if isinstance(default, (list, tuple)) else "object"
            expected = f"expected a JSON {kind} like the default {default!r}"
        raise ParamError(f"--param {key}={value!r}: {expected}") from None
    return value


def resolve(defaults: Mapping[str, Any], overrides: Mapping[str, Any], model: str = "model") -> dict[str, Any]:
    """Defaults updated with overrides, each override checked against the known keys and types."""
    params = dict(defaults)
    for key, value in overrides.items():
        if key not in params:
            known = ", ".join(sorted(params)) or "none"
            raise ParamError(f"unknown parameter {key!r} for {model}; known: {known}")
        params[key] = coerce(key, value, params[key])
    for key in ("epochs", "batch_size"):
        if key in params and (not isinstance(params[key], int) or params[key] < 1):
            raise ParamError(f"{key} must be a positive integer, got {params[key]!r}")
    return params
