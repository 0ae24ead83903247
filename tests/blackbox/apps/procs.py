"""A ferrule master's worker processes, and requests to it, for the black-box tests."""

from __future__ import annotations

import http.client
import resource
import socket
import time
from collections.abc import Callable
from pathlib import Path

CLIENT_TIMEOUT = 30.0


def _state_and_ppid(pid: int) -> tuple[str, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def workers(master: int) -> set[int]:
    """The live (not zombie) child processes of ``master``."""
    candidates: set[int] = set()
    try:
        for task in Path(f"/proc/{master}/task").iterdir():
            candidates.update(int(p) for p in (task / "children").read_text().split())
    except OSError:  # no /proc/<pid>/task/*/children: scan every process
        candidates = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    live = set()
    for pid in candidates:
        info = _state_and_ppid(pid)
        if info and info[1] == master and info[0] not in ("Z", "X"):
            live.add(pid)
    return live


def wait_until(what: str, check: Callable[[], object], timeout: float = 30.0, interval=0.01):
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def wait_workers(master: int, count: int, timeout: float = 30.0) -> set[int]:
    """Wait until ``master`` has exactly ``count`` live children; return them."""

    def check():
        now = workers(master)
        return now if len(now) == count else None

    try:
        return wait_until(f"{count} workers", check, timeout, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; children now: {sorted(workers(master))}") from None


def get(server, path: str = "/", timeout: float = CLIENT_TIMEOUT) -> tuple[int, bytes]:
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raise_fd_limit(need: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE (the server, started after, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == resource.RLIM_INFINITY or soft >= need, f"RLIMIT_NOFILE {soft} < {need}"


def free_port() -> int:
    """A TCP port free on every IPv4 address, for a server told to bind it.

    Probed on ``""`` (all addresses), as a server binding ``0.0.0.0`` or ``:PORT`` takes
    it: a port free on 127.0.0.1 alone may still be held on another loopback address (a
    client's TIME_WAIT from 127.0.0.2, say), and such a server's bind would fail. Another
    process may still take it before the server binds.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]
