"""The log line formats the server and the SDK worker share (``--log-format text|json``).

It lives beside the wire format because both programs write it and log shippers parse it: one JSON
object per line with ``ts`` (epoch seconds), ``level``, ``logger``, ``msg`` and, with a traceback,
``exc``; or the text line ``<time> <LEVEL> <logger>: <message>``.
"""

from __future__ import annotations

import json
import logging
import sys

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at ``level`` as text or JSON lines (``fmt`` "text" or "json"), replacing any
    handlers configured before.

    :raises ValueError: an unknown level or format (the message names the choices).
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    if level.upper() not in LEVELS:
        raise ValueError(f"log level must be debug, info, warning or error, not {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
