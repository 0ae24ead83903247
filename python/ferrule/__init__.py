"""ferrule: a WSGI (PEP 3333) server whose request path is written in Rust.

Run an application from the shell with ``ferrule module:app`` or from Python code
with :func:`serve`; :func:`ferrule.simple_server.make_server` is a drop-in for
:func:`wsgiref.simple_server.make_server`.
"""

from ferrule._ferrule import FileWrapper, __version__
from ferrule.server import serve

__all__ = ["FileWrapper", "__version__", "serve"]
