"""A drop-in for :mod:`wsgiref.simple_server`, served by ferrule's Rust core.

Change one import and a wsgiref program runs on ferrule::

    from ferrule.simple_server import make_server   # was: from wsgiref.simple_server

    httpd = make_server("", 8000, app)
    httpd.serve_forever()

What carries over from wsgiref: ``serve_forever()``, ``handle_request()`` (serves one
request), ``shutdown()`` from another thread, ``server_close()``, ``server_address``
(with the real port when 0 was asked), ``server_port``, ``server_name``,
``get_app()``/``set_app()`` and use as a context manager. Host ``""`` means every
IPv4 interface, as in wsgiref.

What does not: ferrule parses HTTP in Rust, so ``server_class`` and ``handler_class``
are accepted for compatibility but cannot change how requests are handled. A
``server_class`` that is a subclass of :class:`WSGIServer` is instantiated, so its
extra attributes and methods are there; a ``handler_class`` is stored on the server
as ``RequestHandlerClass`` and otherwise unused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ferrule import _ferrule
from ferrule._logging import configure_default

__all__ = ["WSGIRequestHandler", "WSGIServer", "make_server"]

Application = Callable[..., Any]


class WSGIRequestHandler:
    """Placeholder for wsgiref's handler class; ferrule handles requests in Rust."""


class WSGIServer:
    """A bound ferrule server with wsgiref's ``WSGIServer`` interface.

    :param server_address: ``(host, port)``; port 0 picks a free port.
    :param RequestHandlerClass: accepted for compatibility, unused.
    :param threads: Python threads running the application. Default is 1.
    :raises OSError: the address cannot be bound.
    """

    def __init__(
        self,
        server_address: tuple[str, int],
        RequestHandlerClass: type | None = None,  # noqa: N803 (wsgiref's name)
        *,
        threads: int = 1,
    ) -> None:
        host, port = server_address
        self.RequestHandlerClass = RequestHandlerClass
        self._threads = threads
        self._app: Application | None = None
        self._core = _ferrule.Server(
            _unset_app, [_ferrule.format_bind(host, port)], threads=threads
        )
        self.server_address: tuple[str, int] = self._core.server_address
        self.server_name: str = self.server_address[0]
        self.server_port: int = self.server_address[1]
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    def set_app(self, application: Application) -> None:
        """Set the WSGI application this server calls."""
        self._app = application
        self._core.set_app(application)

    def get_app(self) -> Application | None:
        """Return the WSGI application this server calls."""
        return self._app

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve requests until :meth:`shutdown` is called from another thread.

        ``poll_interval`` is accepted for compatibility: shutdown is immediate.
        """
        self._stopped.clear()
        self._serving.set()
        try:
            self._core.serve()
        finally:
            self._serving.clear()
            self._stopped.set()

    def handle_request(self) -> None:
        """Serve one request, then return (its connection is closed after it)."""
        self._core.serve(max_requests=1)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has returned."""
        self._core.shutdown()
        if self._serving.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket."""
        self._core.close()

    def fileno(self) -> int:
        """Return the listening socket's file descriptor."""
        return self._core.fileno()

    def __enter__(self) -> WSGIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server_close()


def _unset_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"No application set: call set_app() on the server.\n"]


def make_server(
    host: str,
    port: int,
    app: Application,
    server_class: type[WSGIServer] = WSGIServer,
    handler_class: type = WSGIRequestHandler,
) -> WSGIServer:
    """Create a server for ``app`` bound to ``host:port`` (wsgiref's signature).

    :raises OSError: the address cannot be bound.
    """
    configure_default()
    server = server_class((host, port), handler_class)
    server.set_app(app)
    return server
