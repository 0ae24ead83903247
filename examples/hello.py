"""The README's application: a plain PEP 3333 app answering ``Hello, World!``.

Serve it with ``ferrule examples.hello:app`` and fetch ``http://127.0.0.1:8000/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b"Hello, World!\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with ``Hello, World!`` as text/plain."""
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]
