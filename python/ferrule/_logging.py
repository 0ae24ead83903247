"""Default logging set-up for the ``ferrule.error`` and ``ferrule.access`` loggers."""

from __future__ import annotations

import logging
import sys

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"


def configure_default(level: str | int = "INFO") -> None:
    """Send ``ferrule.*`` records to stderr unless the application configured logging.

    :param level: a :mod:`logging` level name or number, e.g. ``"info"``.
    :raises ValueError: ``level`` is not a logging level.
    """
    if isinstance(level, str):
        name = level.upper()
        if name not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {level!r}")
        level = name
    logger = logging.getLogger("ferrule")
    logger.setLevel(level)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    logger.addHandler(handler)
    logger.propagate = False
