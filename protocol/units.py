"""Durations and sizes as people write them on a command line (``1h30m``, ``500ms``, ``64MiB``),
shared by the ``spitfire`` and ``spitfire-server`` commands (both may import this package)."""

from __future__ import annotations

import math
import re

__all__ = ["DURATION_EXAMPLES", "SIZE_EXAMPLES", "parse_duration", "parse_size"]

DURATION_EXAMPLES = "30, 30s, 500ms, 10m, 1h30m, 2h or 7d"
SIZE_EXAMPLES = "4096, 1k, 512KiB, 64MiB, 10MB or 1G"

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d|w)")
_PARTS = re.compile(rf"^(?:{_NUMBER}(?:ms|s|m|h|d|w))+$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(rf"^({_NUMBER})([a-z]*)$")
# k, m, g alone count in 1024s like dd and docker do; kb, mb, gb are decimal; kib, mib, gib binary.
_BYTES = {"": 1, "b": 1}
for _i, _p in enumerate("kmgt", start=1):
    _BYTES[_p] = _BYTES[_p + "i"] = _BYTES[_p + "ib"] = 1024**_i
    _BYTES[_p + "b"] = 1000**_i


def parse_duration(text: str) -> float:
    """Seconds in a duration: a bare number of seconds (``90``, ``2.5``) or one or more
    number-and-unit parts, largest first or not (``500ms``, ``10m``, ``1h30m``, ``1d12h``), with units
    ms, s, m, h, d and w.

    :raises ValueError: anything else, a negative duration included (the message says what to write).
    """
    s = text.strip().lower().replace(" ", "")
    if s.startswith("-"):
        raise ValueError(f"{text!r} is negative: a duration is 0 or more, e.g. {DURATION_EXAMPLES}")
    if re.fullmatch(_NUMBER, s):
        seconds = float(s)
    elif _PARTS.fullmatch(s):
        seconds = sum(float(n) * _SECONDS[unit] for n, unit in _PART.findall(s))
    else:
        raise ValueError(f"{text!r} is not a duration: write e.g. {DURATION_EXAMPLES}")
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too long a duration")
    return seconds


def parse_size(text: str) -> int:
    """Bytes in a size: ``4096``, ``1k`` (1024), ``512KiB``, ``64MiB``, ``10MB`` (10,000,000),
    ``1G``; case does not matter; k, m, g, t alone are binary (1024-based) like dd's.

    :raises ValueError: anything else, negative sizes included (the message says what to write).
    """
    s = text.strip().lower().replace(" ", "")
    if s.startswith("-"):
        raise ValueError(f"{text!r} is negative: a size is 0 or more, e.g. {SIZE_EXAMPLES}")
    match = _SIZE.fullmatch(s)
    if match is None or match.group(2) not in _BYTES:
        raise ValueError(f"{text!r} is not a size: write e.g. {SIZE_EXAMPLES}")
    value = float(match.group(1)) * _BYTES[match.group(2)]
    if value != int(value):
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return int(value)
