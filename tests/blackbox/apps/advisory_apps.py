"""Applications for the advisory regression tests (``test_advisories.py``).

- ``redirect``: the shape of gunicorn CVE-2018-1000164's proof of concept: a redirect whose
  ``Location`` reflects the (percent-decoded) request path, so a client that sends
  ``/%0d%0aSet-Cookie:...`` makes the application hand the server a header value with
  CR/LF in it. The server, not the application, must refuse to emit it.
"""

from __future__ import annotations

import os
from pathlib import Path


def redirect(environ, start_response):
    location = "http://example.invalid" + environ["PATH_INFO"] + "/"
    start_response(
        "302 Found",
        [("Location", location), ("Content-Type", "text/plain"), ("Content-Length", "2")],
    )
    return [b"->"]


# ------------------------------------------------------------------ test side: /proc


def worker_pids(master_pid: int) -> list[int]:
    """The children of ``master_pid`` (ferrule's workers), from /proc."""
    pids: list[int] = []
    for task in Path(f"/proc/{master_pid}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def fd_count(pid: int) -> int:
    """How many file descriptors ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
