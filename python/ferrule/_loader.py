"""Import strings: ``"package.module:attribute"`` to a WSGI application object."""

from __future__ import annotations

import ast
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
    ``ferrule examples.hello:app`` works from a checkout. As in gunicorn, the
    attribute may be a call of a factory with literal arguments,
    ``"module:create_app()"`` or ``"module:create_app('prod', debug=False)"``.

    :param spec: ``module`` or ``module:attribute``; the attribute may be dotted.
    :param factory: call the attribute with no arguments and serve what it returns.
    :raises AppLoadError: the module or attribute is missing or not callable, or
        ``spec`` is a file path or a call that is not of literals.
    """
    module_name, colon, attr = spec.partition(":")
    attr = attr or "application"
    if module_name.endswith(".py") or "/" in module_name:
        module = module_name.removesuffix(".py").strip("/").replace("/", ".")
        raise AppLoadError(
            f"{spec!r} is a file path: name the module instead, e.g. {module}:{attr} "
            f"(run from the directory that contains it, or use --chdir)"
        )
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise AppLoadError(
            f"{spec!r} is not an application spec: write MODULE:APP, e.g. examples.hello:app"
        )
    attr, args, kwargs = _parse_call(spec, attr)
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
            if colon:
                fix = f"check the name after the colon in {spec!r}"
            else:
                fix = f"without a colon ferrule looks for 'application': write {spec}:NAME"
            raise AppLoadError(
                f"module {module_name!r} has no attribute {attr!r}: {fix}"
            ) from None
    if args is not None or factory:
        if not callable(obj):
            raise AppLoadError(f"{spec!r}: {attr!r} is not callable, so it cannot be a factory")
        try:
            obj = obj(*(args or ()), **(kwargs or {}))
        except Exception as exc:
            raise AppLoadError(
                f"calling the factory {attr!r} failed: {type(exc).__name__}: {exc} "
                f"(--log-level debug shows the traceback)",
                traceback.format_exc(),
            ) from exc
    if not callable(obj):
        raise AppLoadError(
            f"{spec!r} is {_a(type(obj).__name__)}, not a WSGI application: "
            f"name a callable app(environ, start_response)"
        )
    return obj


def _parse_call(spec: str, attr: str) -> tuple[str, tuple | None, dict | None]:
    """Split ``name(args)`` into the dotted name and its literal arguments
    (``None`` and ``None`` when ``attr`` is no call).

    :raises AppLoadError: the call is not valid Python, or an argument is not a
        literal (:func:`ast.literal_eval`'s rule, as gunicorn's).
    """
    if "(" not in attr:
        return attr, None, None
    try:
        call = ast.parse(attr, mode="eval").body
    except SyntaxError:
        call = None
    if not isinstance(call, ast.Call):
        raise AppLoadError(
            f"{spec!r}: {attr!r} is not a name or a call such as create_app() "
            f"or create_app('prod')"
        )
    parts = []
    func = call.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        raise AppLoadError(f"{spec!r}: call a name, e.g. create_app()")
    parts.append(func.id)
    try:
        args = tuple(ast.literal_eval(arg) for arg in call.args)
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except ValueError:
        raise AppLoadError(
            f"{spec!r}: a factory's arguments must be literals (strings, numbers, "
            f"True/False/None, lists, dicts)"
        ) from None
    if any(kw.arg is None for kw in call.keywords):
        raise AppLoadError(f"{spec!r}: **kwargs is not allowed in a factory call")
    return ".".join(reversed(parts)), args, kwargs


def _a(noun: str) -> str:
    """``noun`` with its indefinite article: ``an int``, ``a str``."""
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"
