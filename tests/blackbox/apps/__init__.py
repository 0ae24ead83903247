"""WSGI applications (and a raw-socket HTTP reader) for the black-box tests.

The server under test imports these as ``apps.<module>:app`` with ``cwd=tests/blackbox``.
Effects the wire cannot show (``close()`` calls, a re-raised ``exc_info``) are appended
by :func:`record` to ``$FERRULE_TEST_STATE/<token>.log``, where ``token`` is the ``t``
query parameter; tests read them back with :func:`events`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

_LOCK = threading.Lock()
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def query(environ: dict) -> dict[str, str]:
    """The query string as a dict (last value wins)."""
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def record(environ: dict, event: str) -> None:
    """Append ``event`` to the state file of this request's ``t`` token, if any."""
    token = query(environ).get("t", "")
    state = os.environ.get("FERRULE_TEST_STATE")
    if not state or not _TOKEN.fullmatch(token):
        return
    with _LOCK, open(Path(state) / f"{token}.log", "a", encoding="utf-8") as f:
        f.write(event + "\n")


def events(state_dir: Path, token: str) -> list[str]:
    """The events recorded so far for ``token`` (test side)."""
    path = Path(state_dir) / f"{token}.log"
    if not path.exists():
        return []
    return path.read_text(encoding="utf-8").splitlines()


def wait_events(
    state_dir: Path, token: str, needle: str, timeout: float = 30.0, settle: float = 0.5
) -> list[str]:
    """Wait (bounded) until ``needle`` was recorded, then a little longer; return all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in events(state_dir, token):
            time.sleep(settle)
            return events(state_dir, token)
        time.sleep(0.05)
    return events(state_dir, token)
