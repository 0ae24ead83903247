"""``app`` for the pre-fork tests: every answer names the worker process that served it.

``/`` answers ``pid=<worker pid>`` at once; ``/sleep?s=SECONDS`` first records
``sleeping pid=<pid>`` (see :func:`apps.record`, token ``t``) and sleeps that long.
Importing the module appends ``imported pid=<pid>`` to ``$FERRULE_TEST_STATE/imports.log``:
without ``--preload`` every worker imports it, so the line shows a worker loaded the app.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from wsgiref.validate import validator

from apps import query, record

if os.environ.get("FERRULE_TEST_STATE"):
    with open(Path(os.environ["FERRULE_TEST_STATE"]) / "imports.log", "a") as _f:
        _f.write(f"imported pid={os.getpid()}\n")


def _inner(environ, start_response):
    if environ["PATH_INFO"] == "/sleep":
        record(environ, f"sleeping pid={os.getpid()}")
        time.sleep(float(query(environ).get("s", "1")))
    body = f"pid={os.getpid()}".encode("ascii")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(_inner)
