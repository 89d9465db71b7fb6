"""JSON as RFC 8259 defines it, wherever the mock reads JSON it was given (request bodies, admin calls,
files named on the command line, recordings, upstream answers).

Python's `json` also reads `NaN`, `Infinity` and `-Infinity`, which are not JSON, and reads a number too
large for a float (`1e400`) as infinity. A schema's bounds do not catch NaN (every comparison with it is
false): a fault rule with `"probability": NaN` was stored, answered as null, and never fired.
"""

from __future__ import annotations

import json
import math
from typing import Any


def loads(data: str | bytes) -> Any:
    """`json.loads`, refusing what is not JSON or not a finite number (ValueError, naming it)."""
    return json.loads(data, parse_constant=_not_json, parse_float=_finite)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value
