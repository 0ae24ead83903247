"""Issue 3, "Done when": a slowloris test.

1,000 connections each start a request head and then trickle one more header byte every
0.2 s, never finishing it. Meanwhile a normal client must still get its response
promptly; every trickling connection must be closed by the server once
``--header-timeout`` (2 s here) has run out (with a 408, RFC 9110 §15.5.9, or a bare
close); and the worker's open fd count must come back to its baseline without the
clients closing anything themselves. Everything runs on 127.0.0.1 and every wait is
bounded.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

from apps.advisory_apps import fd_count, worker_pids
from apps.procs import raise_fd_limit
from apps.wire import Wire

N = 1000
HEADER_TIMEOUT = 2.0
NORMAL_BOUND = 3.0  # "within 1 s" in the issue, bounded generously so it never flakes
CLOSE_SLACK = 4.0  # how long past the header timeout a close may take on a loaded machine
TRICKLE_EVERY = 0.2
TRICKLE = b"X-Trickle: " + b"t" * 40 + b"\r\n"


def _normal_request(port: int, path: str) -> float:
    """One ordinary request on a fresh connection; the seconds it took."""
    start = time.monotonic()
    with Wire(port, timeout=NORMAL_BOUND + 5) as w:
        w.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        resp = w.read_response()
    assert resp.status == 200 and path.encode() in resp.body, (resp.status, resp.body[:200])
    return time.monotonic() - start


def test_slowloris_trickling_connections_are_cut_and_normal_clients_served(ferrule_server):
    raise_fd_limit(2 * N + 512)
    server = ferrule_server(
        "apps.environ_echo:app",
        "--header-timeout", str(int(HEADER_TIMEOUT)),
        "--keep-alive", str(int(HEADER_TIMEOUT)),
        "--threads", "2",
    )  # fmt: skip
    _normal_request(server.port, "/warm-up")  # lazily opened fds belong to the baseline
    time.sleep(0.3)
    (worker,) = worker_pids(server.proc.pid)
    baseline = fd_count(worker)

    sel = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    progress: dict[socket.socket, int] = {}
    closed: dict[socket.socket, tuple[float, bytes]] = {}
    try:
        for i in range(N):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(f"GET /slow/{i} HTTP/1.1\r\nHost: x\r\n".encode())
            sock.setblocking(False)
            opened[sock] = time.monotonic()
            progress[sock] = 0
            sel.register(sock, selectors.EVENT_READ)
        all_open = time.monotonic()

        # The normal client, while every trickling head is still within its timeout.
        normal: list[float] = []
        errors: list[BaseException] = []

        def client() -> None:
            try:
                normal.append(_normal_request(server.port, "/normal-1"))
                time.sleep(0.3)
                normal.append(_normal_request(server.port, "/normal-2"))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        normal_thread = threading.Thread(target=client, daemon=True)
        normal_thread.start()

        peak = baseline
        deadline = max(opened.values()) + HEADER_TIMEOUT + CLOSE_SLACK
        next_trickle = time.monotonic()
        while len(closed) < N and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_trickle:
                for sock in opened.keys() - closed.keys():
                    byte = TRICKLE[progress[sock] % len(TRICKLE)]
                    try:
                        if sock.send(bytes([byte])):
                            progress[sock] += 1
                    except OSError:
                        pass  # closed by the server: the selector reports it
                next_trickle = now + TRICKLE_EVERY
                peak = max(peak, fd_count(worker))
            for key, _ in sel.select(timeout=0.05):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""  # reset
                closed[sock] = (time.monotonic(), data)
                sel.unregister(sock)

        normal_thread.join(NORMAL_BOUND + 6)
        assert not errors, f"the normal client failed: {errors[0]!r}"
        assert len(normal) == 2, "the normal client did not finish"

        # The server released its side itself: no client has closed anything yet.
        fd_deadline = time.monotonic() + 5
        while fd_count(worker) > baseline and time.monotonic() < fd_deadline:
            time.sleep(0.05)
        after = fd_count(worker)
    finally:
        sel.close()
        for sock in opened:
            sock.close()

    open_for = sorted(closed[s][0] - opened[s] for s in closed)
    replies = [closed[s][1] for s in closed]
    n408 = sum(r.startswith(b"HTTP/1.1 408") for r in replies)
    other = [r[:60] for r in replies if r and not r.startswith(b"HTTP/1.1 408")]
    print(
        f"\nslowloris: {N} connections opened in {all_open - min(opened.values()):.2f}s; "
        f"normal client {', '.join(f'{t:.3f}s' for t in normal)}; "
        f"worker fds baseline {baseline}, peak {peak}, after {after}; "
        f"closed {len(closed)}/{N} after {open_for[0] if open_for else 0:.2f}"
        f"-{open_for[-1] if open_for else 0:.2f}s, {n408} with a 408"
    )
    assert max(normal) < NORMAL_BOUND, f"normal client took {max(normal):.2f}s"
    assert peak >= baseline + N * 0.9, f"the server never held the connections (peak {peak})"
    assert len(closed) == N, f"{N - len(closed)} trickling connections still open"
    assert open_for[0] >= HEADER_TIMEOUT - 0.5, f"one was closed after {open_for[0]:.2f}s"
    assert open_for[-1] <= HEADER_TIMEOUT + CLOSE_SLACK
    assert not other, f"unexpected replies: {other[:3]}"
    assert after <= baseline, f"worker fds: baseline {baseline}, {after} after the timeouts"
