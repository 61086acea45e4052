"""Counts written the way researchers write them: ``1000000``, ``1e6``, ``2.5e5``.

YAML reads ``2e5`` as a string (YAML 1.1 floats need a dot) and ``2.0e5`` as a float;
both mean the integer 200000. A count that is not a whole number (``1.5``, ``1e-3``)
or not a number at all is an error, never rounded.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_count"]

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_count(value: object) -> object:
    """An integer from ``value`` if it is a whole number written as an int, float or string.

    Anything else is returned unchanged, so the caller's own validation reports it
    (e.g. pydantic's "valid integer" message).

    Raises:
        ValueError: ``value`` is a number that is not whole (``1.5``, ``"1e-3"``).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not _NUMBER.fullmatch(text):
            return value
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        value = float(text)
    if isinstance(value, float):
        if not math.isfinite(value) or value != math.floor(value):
            raise ValueError(f"{value!r} is not a whole number")
        if abs(value) > 2**53:
            raise ValueError(f"{value!r} is too large to be an exact count; write it as an integer")
        return int(value)
    return value
