"""The pre-fork master under load (issue 4): dead and hung workers are replaced, signals
stop, reload and resize without failing a request, ``--max-requests`` recycles cleanly.

The load comes from :class:`Load`: a few threads, each with one ``http.client`` keep-alive
connection on 127.0.0.1, a small pause between requests and a bounded request count. Like
urllib3's pool it drops a kept-alive connection the server has already closed before
reusing it (:func:`_dropped`), so a failure is a request the server lost, not a
stale connection.
Worker processes are read from ``/proc`` (the master's live, non-zombie children).
Deadlines are generous: they bound behaviour on a loaded 2-core machine, not speed.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from apps import events
from apps.procs import free_port, get, wait_until, wait_workers, workers
from apps.wire import connect
from apps.workers_apps import block

BLACKBOX = Path(__file__).resolve().parent
APP = "apps.workers_apps:app"
CLIENT_TIMEOUT = 30.0
LISTENING = re.compile(rb"Listening at: http://([^\s]+):(\d+)")


# --------------------------------------------------------------------------- processes


# --------------------------------------------------------------------------- load


@dataclass
class Outcome:
    """One request of the load: when it was sent and finished, and how it ended."""

    client: int
    conn: int
    #: when the client began to send it
    sent: float
    #: when the whole request had been written to the socket (None: writing failed)
    written: float | None
    done: float
    pid: int | None
    error: str | None
    #: the worker that answered the previous request on this connection, if any
    conn_pid: int | None


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection was closed by the server (urllib3's check)."""
    if conn.sock is None:
        return True
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)


class Load:
    """``clients`` threads sending ``GET path`` on keep-alive connections until stopped.

    With ``fresh``, every request goes on a new connection, with ``Connection: close``.
    """

    def __init__(
        self,
        server,
        clients: int = 4,
        path: str = "/",
        pace: float = 0.01,
        budget: int = 3000,
        fresh: bool = False,
    ):
        self.host, self.port = server.host, server.port
        self.clients, self.path, self.pace, self.budget = clients, path, pace, budget
        self.headers = {"Connection": "close"} if fresh else {}
        self.outcomes: list[Outcome] = []
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._conn_ids = itertools.count()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, timeout: float = 60.0) -> None:
        """Send no new request; wait (bounded) for the ones in flight."""
        self.stopped.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "a load client hung"

    def _client(self, client: int) -> None:
        conn: http.client.HTTPConnection | None = None
        conn_id, conn_pid = -1, None
        for _ in range(self.budget):
            if self.stopped.is_set():
                break
            if conn is None or _dropped(conn):
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=CLIENT_TIMEOUT)
                conn_id, conn_pid = next(self._conn_ids), None
            sent = time.monotonic()
            written = pid = error = None
            try:
                conn.request("GET", self.path, headers=self.headers)
                written = time.monotonic()
                response = conn.getresponse()
                body = response.read()
                if response.status == 200 and body.startswith(b"pid="):
                    pid = int(body[4:])
                else:
                    error = f"status {response.status}: {body[:100]!r}"
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
            done = time.monotonic()
            outcome = Outcome(client, conn_id, sent, written, done, pid, error, conn_pid)
            with self._lock:
                self.outcomes.append(outcome)
            if error is not None:
                conn.close()
                conn = None
            else:
                conn_pid = pid
            time.sleep(self.pace)
        if conn is not None:
            conn.close()

    # ---- views of the outcomes

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def ok(self) -> list[Outcome]:
        return [o for o in self.snapshot() if o.error is None]

    def failed(self) -> list[Outcome]:
        return [o for o in self.snapshot() if o.error is not None]

    def wait_ok(self, count: int, after: float = 0.0, timeout: float = 30.0) -> None:
        """Wait until ``count`` requests sent after ``after`` succeeded."""
        wait_until(
            f"{count} successful requests sent after t={after:.2f}",
            lambda: sum(o.sent > after for o in self.ok()) >= count,
            timeout,
        )

    def report(self, label: str) -> str:
        outcomes = self.snapshot()
        failed = [o for o in outcomes if o.error]
        pids = sorted({o.pid for o in outcomes if o.pid})
        lines = [
            f"[{label}] {len(outcomes)} requests, {len(failed)} failed, "
            f"{self.clients} connections, pids seen {pids}"
        ]
        lines += [
            f"  failed: client {o.client} conn {o.conn} (last answered by {o.conn_pid}) "
            f"sent t={o.sent:.3f} after {o.done - o.sent:.3f} s: {o.error}"
            for o in failed[:20]
        ]
        print("\n".join(lines))
        return "\n".join(lines)


def boots(log: str) -> list[int]:
    return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log)]


# --------------------------------------------------------------------------- dead workers


def test_sigkilled_worker_is_replaced_and_only_its_in_flight_requests_fail(
    ferrule_server, tmp_path
):
    # 50 ms requests: most of the time each connection has one in flight
    server = ferrule_server(APP, "-w", "2", env={"FERRULE_TEST_STATE": str(tmp_path)})
    master = server.proc.pid
    first = wait_workers(master, 2)
    with Load(server, clients=4, path="/sleep?s=0.05") as load:
        load.wait_ok(40)
        latest = {o.client: o.pid for o in load.ok()}
        # the worker most connections were last answered by
        victim = max(first, key=lambda pid: list(latest.values()).count(pid))
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        new = wait_until("a replacement worker", lambda: workers(master) - first, 10)
        forked_in = time.monotonic() - killed_at
        (replacement,) = new
        wait_until(
            "the replacement importing the app",
            lambda: f"imported pid={replacement}" in events(tmp_path, "imports"),
            10,
        )
        ready_in = time.monotonic() - killed_at
        load.wait_ok(40, after=killed_at + ready_in)
    report = load.report("SIGKILL")
    print(
        f"replacement worker {replacement} forked {forked_in:.3f} s and had imported "
        f"the app {ready_in:.3f} s after the SIGKILL; {len(load.failed())} request(s) failed"
    )
    assert ready_in <= 2.0, report
    assert victim not in workers(master)
    assert wait_workers(master, 2) == (first - {victim}) | {replacement}
    log = server.wait_for_log(f"Worker (pid:{victim}) was killed by signal 9")
    assert replacement in boots(log), log
    failed = load.failed()
    assert len(failed) <= load.clients, report
    # A failure is a request in flight on the killed worker: on a connection it had
    # answered before (or a fresh one), at most one per connection, around the kill.
    assert all(o.conn_pid in (victim, None) for o in failed), report
    assert len({o.conn for o in failed}) == len(failed), report
    assert all(o.sent <= killed_at + 5.0 for o in failed), report


def test_worker_running_past_timeout_is_killed_and_named(ferrule_server, tmp_path):
    server = ferrule_server(
        APP,
        "-w",
        "2",
        "--threads",
        "2",
        "--timeout",
        "2",
        env={"FERRULE_TEST_STATE": str(tmp_path)},
    )
    master = server.proc.pid
    first = wait_workers(master, 2)
    slow: dict[str, object] = {}

    def slow_request():
        start = time.monotonic()
        try:
            slow["status"] = get(server, "/sleep?s=30&t=slow", timeout=60)
        except (OSError, http.client.HTTPException) as exc:
            slow["error"] = f"{type(exc).__name__}: {exc}"
        slow["took"] = time.monotonic() - start

    with Load(server, clients=3) as load:
        load.wait_ok(50)
        thread = threading.Thread(target=slow_request, daemon=True)
        thread.start()
        sleeping = wait_until(
            "the slow request in the application", lambda: events(tmp_path, "slow"), 20
        )
        hung = int(sleeping[0].removeprefix("sleeping pid="))
        hung_at = time.monotonic()
        # while it hangs, the other requests are answered
        load.wait_ok(50, after=hung_at)
        log = server.wait_for_log("WORKER TIMEOUT", timeout=20)
        killed_at = time.monotonic()
        thread.join(60)
        wait_until("the hung worker gone", lambda: hung not in workers(master), 10)
        now = wait_workers(master, 2)
        load.wait_ok(50, after=killed_at)
    report = load.report("timeout")
    print(f"slow request: {slow}")
    line = next(x for x in log.splitlines() if "WORKER TIMEOUT" in x)
    print(line)
    match = re.search(
        r"WORKER TIMEOUT \(pid:(\d+)\): GET /sleep\?s=30&t=slow ran (\d+(?:\.\d+)?) s "
        r"\(--timeout 2(?:\.0)? s\)",
        line,
    )
    assert match, line
    assert int(match.group(1)) == hung, (line, hung)
    assert 2.0 <= float(match.group(2)) <= 10.0, line
    assert hung in first and hung not in now and len(now - first) == 1, (first, now)
    assert "status" not in slow and slow["took"] < 20, slow
    failed = load.failed()
    assert len(failed) <= load.clients, report
    assert all(o.conn_pid in (hung, None) for o in failed), report


# --------------------------------------------------------------------------- slow clients

#: One worker, killed when a request runs 2 s; each test runs with --threads 2 and with
#: --threads 1, whose inline path sends a response itself but hands a body over 64 KiB and
#: a file over TLS to a worker thread.
SLOW_CLIENT = ("-w", "1", "--timeout", "2")
THREADS = pytest.mark.parametrize("threads", ["2", "1"])
#: How long each slow client keeps its response or its body waiting: three times --timeout.
STALL = 6.0
#: Blocks of 64 KiB in the slow downloads: 16 MiB, far more than the connection's
#: channel and the kernel's socket buffers hold, so the thread waits for the whole stall.
BLOCKS = 256


def _one_worker(server) -> set[int]:
    return wait_workers(server.proc.pid, 1)


def _assert_not_killed(server, before: set[int]) -> None:
    """No WORKER TIMEOUT, the same worker, and it still answers."""
    log = server.log()
    assert "WORKER TIMEOUT" not in log, log
    assert workers(server.proc.pid) == before, (before, log)
    assert get(server, "/") == (200, f"pid={next(iter(before))}".encode())


def _slow_download(sock: socket.socket, path: str) -> tuple[bytes, bytes, float]:
    """``GET path`` on ``sock``; read a few KiB now and then for :data:`STALL` s, then
    the rest at full speed. Returns the head, the body (as far as it came) and the time."""
    start = time.monotonic()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = bytearray()
    try:
        while time.monotonic() - start < STALL:
            piece = sock.recv(4096)
            if not piece:
                break
            data += piece
            time.sleep(0.05)
        else:
            while piece := sock.recv(65536):
                data += piece
    except (OSError, ssl.SSLError) as exc:  # the worker was killed mid-body
        print(f"download ended by {type(exc).__name__}: {exc}")
    took = time.monotonic() - start
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head, body, took


#: A slow reader's receive buffer, in bytes (``apps.wire.connect``).
SMALL_WINDOW = 8192


@THREADS
def test_a_slow_download_does_not_count_toward_timeout(ferrule_server, threads):
    server = ferrule_server(APP, *SLOW_CLIENT, "--threads", threads)
    before = _one_worker(server)
    with connect((server.host, server.port), SMALL_WINDOW, CLIENT_TIMEOUT) as sock:
        head, body, took = _slow_download(sock, f"/stream?chunks={BLOCKS}")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) == BLOCKS * 64 * 1024, (len(body), took, server.log())
    assert body == b"".join(block(i) for i in range(BLOCKS))
    assert took >= STALL
    _assert_not_killed(server, before)


@THREADS
def test_a_slow_upload_does_not_count_toward_timeout(ferrule_server, threads):
    server = ferrule_server(APP, *SLOW_CLIENT, "--threads", threads)
    before = _one_worker(server)
    # One piece every 0.5 s, 6 s in all; over 64 KiB in all, so the body is not read
    # whole before the application is called (src/http/dispatch.rs, INLINE_BODY_MAX).
    pieces, size = 13, 16 * 1024
    reply = b""
    start = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=CLIENT_TIMEOUT) as sock:
        try:
            sock.sendall(
                b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % (pieces * size)
            )
            for i in range(pieces):
                time.sleep(STALL / (pieces - 1) if i else 0)
                sock.sendall(b"u" * size)
            while piece := sock.recv(65536):
                reply += piece
        except OSError as exc:  # the worker was killed mid-body
            print(f"upload ended by {type(exc).__name__}: {exc}")
    took = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 200"), (reply, took, server.log())
    assert reply.endswith(b"\r\n\r\nlength=%d" % (pieces * size)), reply
    assert took >= STALL
    _assert_not_killed(server, before)


@THREADS
def test_a_slow_tls_download_of_a_file_does_not_count_toward_timeout(
    ferrule_server, tls_pems, tmp_path, threads
):
    # A worker thread reads and sends a wsgi.file_wrapper file only where the connection
    # cannot sendfile(2) it: over TLS (a HEAD sends no body, so it never waits).
    content = b"".join(block(i) for i in range(BLOCKS))
    (tmp_path / "big").write_bytes(content)
    server = ferrule_server(
        "apps.files:app",
        *SLOW_CLIENT,
        "--threads",
        threads,
        "--certfile",
        str(tls_pems["cert"]),
        "--keyfile",
        str(tls_pems["key"]),
        env={"FERRULE_TEST_FILE": str(tmp_path / "big")},
    )
    before = _one_worker(server)
    context = ssl.create_default_context(cafile=str(tls_pems["ca"]))
    raw = connect((server.host, server.port), SMALL_WINDOW, CLIENT_TIMEOUT)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        head, body, took = _slow_download(sock, "/whole")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) == len(content), (len(body), took, server.log())
    assert body == content
    assert took >= STALL
    log = server.log()
    assert "WORKER TIMEOUT" not in log, log
    assert workers(server.proc.pid) == before, (before, log)


# --------------------------------------------------------------------------- signals


def test_sigterm_under_load_finishes_every_request_sent(ferrule_server):
    # 8 keep-alive connections on 2 workers x 2 threads with 0.3 s requests: at the
    # signal some requests run and others wait in the workers' queues. Two more
    # clients open a new connection per request, so some have just been accepted.
    # Every request written before the signal must be answered.
    server = ferrule_server(APP, "-w", "2", "--threads", "2")
    master = server.proc.pid
    wait_workers(master, 2)
    slow = Load(server, clients=8, path="/sleep?s=0.3", pace=0.0, budget=200)
    fresh = Load(server, clients=2, fresh=True, budget=2000)
    with slow, fresh:
        slow.wait_ok(16)
        fresh.wait_ok(20)
        slow.stopped.set()  # no new requests from here on
        fresh.stopped.set()
        before = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        slow.stop()
        fresh.stop()
    try:
        code = server.proc.wait(45)
    except subprocess.TimeoutExpired:
        pytest.fail("the master did not exit within 45 s of SIGTERM:\n" + server.log())
    report = slow.report("SIGTERM, keep-alive") + "\n" + fresh.report("SIGTERM, fresh")
    outcomes = slow.snapshot() + fresh.snapshot()
    in_flight = [o for o in outcomes if o.sent <= before <= o.done]
    lost = [o for o in outcomes if o.error and o.written is not None and o.written < before]
    racing = [o for o in outcomes if o.written is None or o.written >= before]
    print(
        f"{len(in_flight)} requests in flight at the signal, {len(lost)} of those written "
        f"before it failed; {len(racing)} raced the signal "
        f"({sum(o.error is not None for o in racing)} failed); master exited {code}"
    )
    assert not lost, report + "\n" + server.log()
    assert not slow.failed(), report + "\n" + server.log()
    assert len(in_flight) >= 2, report
    assert code == 0, server.log()
    assert "Handling signal: term" in server.log()


def test_sighup_under_load_replaces_every_worker_without_a_failure(ferrule_server):
    server = ferrule_server(APP, "-w", "2")
    master = server.proc.pid
    old = wait_workers(master, 2)
    with Load(server, clients=4) as load:
        load.wait_ok(100)
        server.proc.send_signal(signal.SIGHUP)
        hup_at = time.monotonic()

        def new_generation():
            now = workers(master)
            return now if len(now) == 2 and not now & old else None

        new = wait_until("a new generation of 2 workers", new_generation, 30, interval=0.05)
        print(
            f"new generation {sorted(new)} replaced {sorted(old)} in "
            f"{time.monotonic() - hup_at:.2f} s"
        )
        settled = time.monotonic()
        load.wait_ok(100, after=settled)
    report = load.report("SIGHUP")
    assert not load.failed(), report + "\n" + server.log()
    served_after = {o.pid for o in load.ok() if o.sent > settled}
    assert served_after <= new, (served_after, new)
    status, body = get(server)
    assert status == 200 and int(body[4:]) in new
    assert server.proc.poll() is None
    assert "Handling signal: hup" in server.log()


def test_max_requests_recycles_workers_without_a_failure(ferrule_server):
    server = ferrule_server(APP, "-w", "2", "--max-requests", "50")
    master = server.proc.pid
    first = wait_workers(master, 2)
    with Load(server, clients=4, budget=150) as load:
        wait_until("600 requests done", lambda: len(load.snapshot()) >= 600, 90, 0.05)
    report = load.report("--max-requests 50")
    pids = {o.pid for o in load.ok()}
    booted = boots(server.log())
    print(f"{len(pids)} worker pids answered; {len(booted)} workers booted")
    assert not load.failed(), report + "\n" + server.log()
    # 600 requests at no more than 50 per worker: at least 12 workers served
    assert len(pids) >= 12, report
    assert pids - first, report
    assert len(wait_workers(master, 2)) == 2


def test_ttin_and_ttou_change_the_number_of_workers(ferrule_server):
    server = ferrule_server(APP, "-w", "2")
    master = server.proc.pid
    wait_workers(master, 2)
    counts = []
    for sig, want in [
        (signal.SIGTTIN, 3),
        (signal.SIGTTIN, 4),
        (signal.SIGTTOU, 3),
        (signal.SIGTTOU, 2),
        (signal.SIGTTOU, 1),
    ]:
        server.proc.send_signal(sig)
        counts.append(len(wait_workers(master, want)))
    server.wait_for_log("Handling signal: ttin (4 workers)")
    server.wait_for_log("Handling signal: ttou (1 workers)")
    # never fewer than one worker
    server.proc.send_signal(signal.SIGTTOU)
    time.sleep(1.5)
    assert len(workers(master)) == 1
    print(f"worker counts after each signal: {counts}")
    status, _ = get(server)
    assert status == 200


_VERSIONED_APP = """import os


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"VERSION %d" % os.getpid()]
"""


def test_a_reload_whose_code_does_not_import_keeps_the_running_workers(ferrule_server, tmp_path):
    # gunicorn stops the whole server when a HUP's new workers cannot import the
    # application; ferrule keeps the workers that serve the code they loaded.
    module = tmp_path / "hup_app.py"
    module.write_text(_VERSIONED_APP.replace("VERSION", "v1"))
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    server = ferrule_server("hup_app:app", "-w", "2", cwd=tmp_path, env=env)
    master = server.proc.pid
    old = wait_workers(master, 2)
    # Both have imported v1 (a worker still booting would import what comes next).
    answered: set[int] = set()

    def both_answered():
        answered.add(int(get(server)[1][3:]))
        return answered == old

    wait_until("both workers answering", both_answered, 30, interval=0.01)
    broken = _VERSIONED_APP.replace("VERSION", "v2") + "import ferrule_no_such_module\n"
    module.write_text(broken)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log("2 running worker(s) keep serving the code they loaded", timeout=30)
    assert wait_workers(master, 2) == old, server.log()
    for _ in range(10):
        status, body = get(server)
        assert status == 200 and body.startswith(b"v1 "), (status, body)
        assert int(body[3:]) in old
    assert server.proc.poll() is None
    assert "[ERROR] importing 'hup_app' failed: no module named 'ferrule_no_such_module'" in (
        server.log()
    )

    # A worker that dies while the code is broken is tried again after 10 s, once
    # per period (no respawn loop); the other goes on serving.
    failed_before = server.log().count("could not load the application")
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    assert wait_workers(master, 1) == old - {victim}
    status, body = get(server)
    assert status == 200 and body.startswith(b"v1 ")
    wait_until(
        f"a second try; log:\n{server.log()}",
        lambda: server.log().count("could not load the application") > failed_before,
        40,
        interval=0.2,
    )
    assert server.log().count("could not load the application") <= failed_before + 2
    assert server.proc.poll() is None

    # Fixed, and a HUP: a new generation of two serves the new code.
    module.write_text(_VERSIONED_APP.replace("VERSION", "v3"))
    server.proc.send_signal(signal.SIGHUP)

    def new_generation():
        now = workers(master)
        return now if len(now) == 2 and not now & old else None

    new = wait_until("a new generation of 2 workers", new_generation, 30, interval=0.05)
    status, body = get(server)
    assert status == 200 and body.startswith(b"v3 ") and int(body[3:]) in new


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
def test_broken_app_exits_4_with_one_line(preload):
    args = [sys.executable, "-m", "ferrule", "--bind", "127.0.0.1:0", "-w", "2"]
    args += ["--preload"] if preload else []
    out = subprocess.run(
        [*args, "apps.broken_import:app"],
        cwd=BLACKBOX,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert out.returncode == 4, (out.returncode, out.stdout, out.stderr)
    assert len(lines) == 1, lines
    assert "broken_import fails on purpose" in lines[0]
    assert "Traceback" not in lines[0]


def test_pid_file_holds_the_master_pid_and_is_removed(ferrule_server, tmp_path):
    pidfile = tmp_path / "ferrule.pid"
    server = ferrule_server(APP, "-w", "2", "-p", str(pidfile))
    wait_workers(server.proc.pid, 2)
    assert pidfile.read_text().strip() == str(server.proc.pid)
    assert server.stop() == 0, server.log()
    assert not pidfile.exists()


def test_web_concurrency_sets_the_number_of_workers(ferrule_server):
    server = ferrule_server(APP, env={"WEB_CONCURRENCY": "3"})
    assert len(wait_workers(server.proc.pid, 3)) == 3
    assert "with 3 worker(s)" in server.log()
    time.sleep(0.5)
    assert len(workers(server.proc.pid)) == 3
    assert get(server)[0] == 200


def test_port_environment_variable_without_bind():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "WEB_CONCURRENCY"}
    env.update(PORT=str(port), PYTHONUNBUFFERED="1")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferrule", APP], cwd=BLACKBOX, env=env, stdout=log, stderr=log
        )
        try:

            def listening():
                log.seek(0)
                return LISTENING.search(log.read()) or proc.poll() is not None

            wait_until("the server listening", listening, 30, interval=0.05)
            log.seek(0)
            text = log.read().decode(errors="replace")
            assert f"Listening at: http://0.0.0.0:{port}" in text, text
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200 and response.read().startswith(b"pid=")
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 0
