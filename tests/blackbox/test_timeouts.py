"""--header-timeout (408 for a head that does not finish) and --keep-alive (idle close)."""

from __future__ import annotations

import socket
import time

import pytest

TIMEOUT = 15


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def timed(ferrule_server):
    return ferrule_server("--header-timeout", "1", "--keep-alive", "1", "apps.environ_echo:app")


def test_slow_head_gets_408_and_close(timed):
    sock = connect(timed.port)
    start = time.monotonic()
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    reply = read_all(sock)
    elapsed = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), reply
    assert b"connection: close" in reply.lower()
    assert 0.5 < elapsed < TIMEOUT


def test_idle_keep_alive_connection_is_closed_quietly(timed):
    sock = connect(timed.port)
    sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    start = time.monotonic()
    rest = read_all(sock)
    assert rest == b"", rest  # no 408 for a connection that was only idle
    assert 0.5 < time.monotonic() - start < TIMEOUT


def test_a_busy_connection_stays_open(timed):
    sock = connect(timed.port)
    for i in range(5):
        sock.sendall(f"GET /busy/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200"), (i, reply)
        assert f"/busy/{i}".encode() in reply
        time.sleep(0.4)
    sock.close()
