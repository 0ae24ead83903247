"""Logging set-up for the ``ferrule.error`` and ``ferrule.access`` loggers.

The error log (``ferrule.error``, and ``ferrule`` above it) uses gunicorn's line
format; the access log (``ferrule.access``) writes each line as it was formatted
in Rust from ``--access-logformat``. An application that configured logging
itself keeps its configuration: ferrule then adds no error handler.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"


def _level(level: str | int) -> str | int:
    if isinstance(level, str):
        name = level.upper()
        if name not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {level!r}")
        return name
    return level


def configure_default(level: str | int = "INFO") -> None:
    """Send ``ferrule.*`` records to stderr unless logging is already configured.

    :param level: a :mod:`logging` level name or number, e.g. ``"info"``.
    :raises ValueError: ``level`` is not a logging level.
    """
    configure(level)


def configure(
    level: str | int = "INFO",
    *,
    error_logfile: str = "-",
    access_logfile: str | None = None,
    log_config: str | os.PathLike[str] | None = None,
) -> None:
    """Set up the error and access logs as the command line asks.

    :param level: lowest level of the error log (``--log-level``).
    :param error_logfile: ``"-"`` for stderr, else a file appended to (``--error-logfile``).
    :param access_logfile: ``"-"`` for stdout, a file, or ``None`` for no access log.
    :param log_config: an INI file for :func:`logging.config.fileConfig`, or a ``.json``
        file for :func:`logging.config.dictConfig`; it replaces the two options above.
    :raises ValueError: ``level`` is not a logging level, or ``log_config`` is invalid.
    :raises OSError: a log file cannot be opened.
    """
    if log_config is not None:
        path = os.fspath(log_config)
        try:
            if path.endswith(".json"):
                with open(path, encoding="utf-8") as f:
                    logging.config.dictConfig(json.load(f))
            else:
                logging.config.fileConfig(path, disable_existing_loggers=False)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ValueError(f"--log-config {path}: {exc}") from None
        return
    logger = logging.getLogger("ferrule")
    logger.setLevel(_level(level))
    if not logger.handlers and not logging.getLogger().handlers:
        if error_logfile in ("-", ""):
            handler: logging.Handler = logging.StreamHandler(sys.stderr)
        else:
            handler = logging.FileHandler(error_logfile, encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        logger.addHandler(handler)
        logger.propagate = False
    if access_logfile is not None:
        access = logging.getLogger("ferrule.access")
        access.setLevel(logging.INFO)
        if access_logfile == "-":
            access_handler: logging.Handler = logging.StreamHandler(sys.stdout)
        else:
            access_handler = logging.FileHandler(access_logfile, encoding="utf-8")
        access_handler.setFormatter(logging.Formatter("%(message)s"))
        access.handlers[:] = [access_handler]
        access.propagate = False
