"""Serve MODULE:APP with a server that has no command line of its own: bjoern or fastwsgi.

Usage (from ``benchmarks/run.py``)::

    python benchmarks/peer_server.py bjoern|fastwsgi HOST:PORT MODULE:APP

Both are run with their defaults: one process, one thread, keep-alive on.
"""

from __future__ import annotations

import importlib
import sys


def load(spec: str):
    module_name, _, attribute = spec.partition(":")
    target = importlib.import_module(module_name)
    for name in (attribute or "application").split("."):
        target = getattr(target, name)
    return target


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("bjoern", "fastwsgi"):
        sys.exit(__doc__)
    server, address, spec = sys.argv[1:]
    host, _, port = address.rpartition(":")
    app = load(spec)
    if server == "bjoern":
        import bjoern

        bjoern.run(app, host, int(port))
    else:
        import fastwsgi

        fastwsgi.run(wsgi_app=app, host=host, port=int(port))


if __name__ == "__main__":
    main()
