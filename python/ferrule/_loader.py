"""Import strings: ``"package.module:attribute"`` to a WSGI application object."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any


class AppLoadError(Exception):
    """The application named on the command line cannot be loaded.

    The message is one line that names what to fix; the CLI prints it and exits
    with status 4 (gunicorn's ``APP_LOAD_ERROR``). When the application's own
    code raised while it was imported, :attr:`details` holds the traceback (the
    CLI prints it with ``--log-level debug``).
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def load_app(spec: str, *, factory: bool = False) -> Any:
    """Import ``spec`` (``module:attribute``, attribute defaulting to ``application``).

    The current directory goes first on ``sys.path``, as gunicorn does, so
    ``ferrule examples.hello:app`` works from a checkout.

    :param spec: ``module`` or ``module:attribute``; the attribute may be dotted.
    :param factory: call the attribute with no arguments and serve what it returns.
    :raises AppLoadError: the module or attribute is missing or not callable.
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or "application"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise AppLoadError(
            f"{spec!r} is not an application spec: write MODULE:APP, e.g. examples.hello:app"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(
                f"no module named {exc.name!r}: run ferrule from the directory that "
                f"contains it, or add that directory to PYTHONPATH"
            ) from exc
        package = (exc.name or "").split(".")[0]
        raise AppLoadError(
            f"importing {module_name!r} failed: no module named {exc.name!r}: install the "
            f"package that provides it (e.g. pip install {package})",
            traceback.format_exc(),
        ) from exc
    except Exception as exc:
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc} "
            f"(--log-level debug shows the traceback)",
            traceback.format_exc(),
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(
                f"module {module_name!r} has no attribute {attr!r}: "
                f"check the name after the colon in {spec!r}"
            ) from None
    if factory:
        if not callable(obj):
            raise AppLoadError(f"{spec!r} is not callable, so it cannot be a --factory")
        obj = obj()
    if not callable(obj):
        raise AppLoadError(
            f"{spec!r} is a {type(obj).__name__}, not a WSGI application: "
            f"name a callable app(environ, start_response)"
        )
    return obj
