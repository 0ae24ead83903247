"""Run a WSGI application from Python code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferrule import _ferrule
from ferrule._logging import configure_default


def serve(
    app: Callable[..., Any],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    threads: int = 1,
    root_path: str = "",
) -> None:
    """Serve ``app`` on ``host:port`` until interrupted.

    Blocks the calling thread. ``KeyboardInterrupt`` (Ctrl-C) stops the server after
    the requests in flight finish, then propagates.

    :param app: a PEP 3333 application, ``app(environ, start_response)``.
    :param host: interface to listen on; ``""`` or ``"0.0.0.0"`` means every IPv4 one.
    :param port: TCP port; ``0`` picks a free one (it is logged).
    :param threads: Python threads that run the application (``--threads``).
    :param root_path: the SCRIPT_NAME prefix, stripped from PATH_INFO (``--root-path``).
    :raises OSError: the address cannot be bound.
    """
    configure_default()
    server = _ferrule.Server(
        app, [_ferrule.format_bind(host, port)], threads=threads, root_path=root_path
    )
    try:
        server.serve()
    finally:
        server.close()
