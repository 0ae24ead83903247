"""Signals to the master, with requests in flight (gunicorn's semantics, README's table).

- USR1 reopens the log files in the master and every worker; no worker is replaced and no
  request in flight is dropped (logrotate's ``postrotate kill -USR1``).
- QUIT, or a second TERM, stops at once even while a worker's application call runs (with
  ``--threads 1`` the event loop's own thread is inside it).
- TERM stops accepting at once: a new client is refused while the requests in flight
  finish. HUP does not: the new workers accept on the same listeners.

Every case runs with ``--threads 1`` (the inline mode) and ``--threads 4``. Deadlines are
generous bounds for a loaded two-core machine, never speed claims.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from apps import events
from apps.procs import get, wait_until, wait_workers, workers

APP = "apps.workers_apps:app"
TIMEOUT = 30.0


# --------------------------------------------------------------------------- helpers


class Request(threading.Thread):
    """``GET path`` on its own connection, in a thread: ``result`` is ``(status, body)``
    or the exception's name."""

    def __init__(self, server, path: str) -> None:
        super().__init__(daemon=True)
        self.server, self.path = server, path
        self.result: tuple[int, bytes] | str | None = None
        self.start()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=TIMEOUT)
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
            self.result = (response.status, response.read())
        except (OSError, http.client.HTTPException) as exc:
            self.result = type(exc).__name__
        finally:
            conn.close()


def in_flight(server, state: Path, seconds: float, token: str) -> Request:
    """A ``/sleep`` request that the application has started to run."""
    request = Request(server, f"/sleep?s={seconds}&t={token}")
    wait_until("the slow request runs", lambda: events(state, token))
    return request


def exit_code(server, within: float) -> int:
    try:
        return server.proc.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the master still ran {within} s after the signal:\n{server.log()}")


def refused(connect: Callable[[], socket.socket], within: float = 5.0) -> float:
    """Connect until refused; return how long that took (fail after ``within`` s).

    A connect that the kernel still completes (a queued connection nobody will accept),
    or that races the stop (completed, then reset as the listener closes), is tried again.
    """
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            connect().close()
        except (ConnectionRefusedError, FileNotFoundError):
            return time.monotonic() - start
        except ConnectionResetError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"new connections were still accepted {within} s after TERM")


def tcp(server) -> Callable[[], socket.socket]:
    return lambda: socket.create_connection((server.host, server.port), timeout=2)


# --------------------------------------------------------------------------- USR1


def test_usr1_reopens_the_access_log_without_replacing_a_worker(ferrule_server, tmp_path, mode):
    # logrotate renames the file, then sends USR1: the request in flight finishes, no
    # worker is replaced, and the next request goes to a new file at the original path.
    access = tmp_path / "access.log"
    server = ferrule_server(
        APP, "-w", "2", *mode, "--access-logfile", str(access),
        env={"FERRULE_TEST_STATE": str(tmp_path)},
    )  # fmt: skip
    master = server.proc.pid
    before = wait_workers(master, 2)
    assert get(server, "/?before")[0] == 200
    slow = in_flight(server, tmp_path, 2, "usr1")
    rotated = tmp_path / "access.log.1"
    access.rename(rotated)
    server.proc.send_signal(signal.SIGUSR1)
    wait_until("both workers reopened", lambda: server.log().count("log files reopened") >= 2)
    assert get(server, "/?after")[0] == 200
    slow.join(TIMEOUT)
    assert slow.result is not None and slow.result[0] == 200, (slow.result, server.log())
    assert workers(master) == before, server.log()
    assert "Booting worker" not in server.log().split("Handling signal: usr1")[1]
    assert "killed by signal" not in server.log()

    def logged() -> bool:
        return access.exists() and "/?after" in access.read_text()

    wait_until("the new request is logged in a new file", logged)
    assert "/?before" in rotated.read_text()
    assert "/?after" not in rotated.read_text()
    assert server.stop() == 0, server.log()


def test_usr1_while_a_worker_boots_does_not_kill_it(ferrule_server, tmp_path, mode):
    # USR1 right after TTIN reaches a worker that may not have started to serve yet: it
    # is blocked until the worker's handler is in place, never the default action (exit).
    server = ferrule_server(APP, *mode, "--access-logfile", str(tmp_path / "access.log"))
    master = server.proc.pid
    wait_workers(master, 1)
    for _ in range(3):
        server.proc.send_signal(signal.SIGTTIN)
        server.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.01)
    wait_workers(master, 4)
    time.sleep(1)
    assert len(workers(master)) == 4, server.log()
    assert "killed by signal" not in server.log()
    assert server.stop() == 0, server.log()


# --------------------------------------------------------------------------- fast stop


@pytest.mark.parametrize("how", ["QUIT", "TERM-TERM"])
def test_fast_stop_does_not_wait_for_the_application(ferrule_server, tmp_path, mode, how):
    server = ferrule_server(APP, *mode, env={"FERRULE_TEST_STATE": str(tmp_path)})
    slow = in_flight(server, tmp_path, 30, "fast")
    if how == "QUIT":
        server.proc.send_signal(signal.SIGQUIT)
    else:
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_log("finishing in-flight requests")
        server.proc.send_signal(signal.SIGTERM)
    assert exit_code(server, 10) == 0, server.log()
    assert "SIGQUIT: stopping now" in server.log()
    slow.join(TIMEOUT)
    assert slow.result is not None and not isinstance(slow.result, tuple), slow.result


# --------------------------------------------------------------------------- stop accepting


@pytest.mark.parametrize("count", [1, 2])
def test_term_refuses_new_clients_while_in_flight_requests_finish(
    ferrule_server, tmp_path, mode, count
):
    sock = tmp_path / "app.sock"
    server = ferrule_server(
        APP, "-w", str(count), *mode, "--bind", f"unix:{sock}",
        env={"FERRULE_TEST_STATE": str(tmp_path)},
    )  # fmt: skip
    wait_workers(server.proc.pid, count)
    slow = in_flight(server, tmp_path, 6, "drain")
    server.proc.send_signal(signal.SIGTERM)
    took = refused(tcp(server))
    print(f"TCP refused {took:.3f} s after TERM")
    # Refused because the server stopped accepting, not because everything had ended.
    assert slow.is_alive(), (slow.result, server.log())

    def unix() -> socket.socket:
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(2)
        try:
            client.connect(str(sock))
        except OSError:
            client.close()
            raise
        return client

    refused(unix)
    assert not sock.exists()
    assert slow.is_alive(), (slow.result, server.log())
    slow.join(TIMEOUT)
    assert slow.result is not None and slow.result[0] == 200, (slow.result, server.log())
    assert exit_code(server, TIMEOUT) == 0, server.log()


def test_hup_keeps_accepting_new_clients(ferrule_server, mode):
    # A new connection per request across a reload: none is refused or dropped.
    server = ferrule_server(APP, "-w", "2", *mode)
    master = server.proc.pid
    old = wait_workers(master, 2)
    outcomes: list[str] = []
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            try:
                status, body = get(server)
                outcomes.append("ok" if status == 200 else f"status {status}")
            except OSError as exc:
                outcomes.append(type(exc).__name__)
            time.sleep(0.01)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until("requests before the reload", lambda: len(outcomes) >= 10)
    server.proc.send_signal(signal.SIGHUP)
    wait_until("the old workers gone", lambda: not (workers(master) & old))
    wait_until("new workers serve", lambda: len(workers(master)) == 2)
    settled = len(outcomes)
    wait_until("requests after the reload", lambda: len(outcomes) >= settled + 10)
    done.set()
    for thread in threads:
        thread.join(TIMEOUT)
    failures = [o for o in outcomes if o != "ok"]
    assert not failures, f"{len(failures)} of {len(outcomes)} failed: {failures[:5]}"
    assert os.path.exists(f"/proc/{master}")
    assert server.stop() == 0, server.log()
