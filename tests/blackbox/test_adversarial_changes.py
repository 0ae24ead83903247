"""Adversarial black-box tests of two changes (app: ``apps/adv_apps.py``).

1. A raw head's field spans come from a thread-local spare list (``src/http/head.rs``),
   built on the event loop's thread and dropped on a worker thread: every response must
   echo exactly its own request's fields, over keep-alive and pipelined connections, with
   0 to 129 fields, repeated names, bodies framed by length or chunked, ``Expect``, and
   HTTP/1.0.
2. A connection whose file did not fit in its socket at once gets ``TCP_NOTSENT_LOWAT``
   (``src/http/sendfile.rs``): big files to slow, stalling and fast readers, then streamed
   and small responses on the same connection, pipelined, over TCP and a Unix socket.

Each runs with ``--threads 1`` (inline) and ``--threads 4``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import pytest
from apps.adv_apps import pattern
from apps.wire import connect

APP = "apps.adv_apps:app"
CLIENT_TIMEOUT = 30.0


class Conn:
    """A raw HTTP/1.1 connection (TCP or Unix) that reads responses into bytes."""

    def __init__(self, addr, rcvbuf: int | None = None, rate: float | None = None) -> None:
        self.sock = connect(addr, rcvbuf, CLIENT_TIMEOUT)
        self.buf = bytearray()
        self.rate = rate  # bytes/s, for a slow reader
        self.stall_at: int | None = None  # received bytes after which to stop for 1.5 s
        self.received = 0

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(16384 if self.rate else 1 << 20)
        if not data:
            raise EOFError(f"closed; unparsed {bytes(self.buf[:200])!r}")
        self.buf += data
        self.received += len(data)
        if self.rate:
            time.sleep(len(data) / self.rate)
        if self.stall_at is not None and self.received >= self.stall_at:
            self.stall_at = None
            time.sleep(1.5)

    def _until(self, needle: bytes) -> bytes:
        while needle not in self.buf:
            self._fill()
        at = self.buf.index(needle)
        out = bytes(self.buf[:at])
        del self.buf[: at + len(needle)]
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next final response: status, fields (lower-cased names) and body."""
        while True:
            lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            fields = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            if status >= 200:
                break
        if head or status in (204, 304):
            return status, fields, b""
        if "content-length" in fields:
            return status, fields, self._exactly(int(fields["content-length"]))
        assert "chunked" in fields.get("transfer-encoding", ""), fields
        body = bytearray()
        while True:
            size = int(self._until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                assert self._until(b"\r\n") == b"", "no trailers expected"
                return status, fields, bytes(body)
            body += self._exactly(size)
            assert self._exactly(2) == b"\r\n", "chunk ends with CRLF"


# --------------------------------------------------------------------------- 1. field spans

FIELD_COUNTS = [0, 1, 2, 31, 32, 33, 64, 100, 129]


def echo_case(rng: random.Random, rid: int) -> tuple[bytes, dict]:
    """A random ``/echo`` request and the JSON it must get back."""
    fields: list[tuple[str, str]] = []
    for k in range(rng.choice(FIELD_COUNTS)):
        r = rng.random()
        if r < 0.15:
            name = rng.choice(["X-Dup", "x-dup", "X-DUP"])
        elif r < 0.22:
            name = "Cookie"
        else:
            name = f"X-F{k}-{rng.choice(['a', 'Bb', 'ccc'])}"
        tail = "".join(rng.choice("abcXYZ0189=/.") for _ in range(rng.randint(0, 20)))
        fields.append((name, f"v{rid}-{tail}"))
    kind = rng.choice(["get", "get", "length", "chunked", "expect", "http10"])
    version = "HTTP/1.0" if kind == "http10" else "HTTP/1.1"
    body = b""
    if kind in ("length", "chunked", "expect"):
        body = rng.randbytes(rng.choice([0, 1, 100, 5000]))
    if rng.random() < 0.3:
        fields.insert(rng.randint(0, len(fields)), ("Content-Type", f"ct/{rid}"))
    extra = {
        "length": [("Content-Length", str(len(body)))],
        "expect": [("Content-Length", str(len(body))), ("Expect", "100-continue")],
        "chunked": [("Transfer-Encoding", "chunked")],
        "http10": [("Connection", "keep-alive")],
    }.get(kind, [])
    for field in [*extra, ("Host", f"h{rid}")]:
        fields.insert(rng.randint(0, len(fields)), field)
    method = "POST" if kind in ("length", "chunked", "expect") else "GET"
    lines = [f"{method} /echo?id={rid} {version}", *(f"{n}: {v}" for n, v in fields)]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if kind == "chunked":
        at = 0
        while at < len(body):
            piece = body[at : at + rng.randint(1, 2000)]
            raw += b"%x\r\n%s\r\n" % (len(piece), piece)
            at += len(piece)
        raw += b"0\r\n\r\n"
    else:
        raw += body
    expected: dict[str, str] = {}
    for name, value in fields:
        key = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}.get(
            name.lower(), "HTTP_" + name.upper().replace("-", "_")
        )
        if key in expected:
            expected[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            expected[key] = value
    return raw, {
        "id": str(rid),
        "method": method,
        "protocol": version,
        "fields": expected,
        "body_len": len(body),
        "body_sha": hashlib.sha256(body).hexdigest()[:16],
    }


def echo_connection(port: int, seed: int, requests: int, failures: list) -> None:
    rng = random.Random(seed)
    rid = seed * 100_000
    try:
        with Conn(("127.0.0.1", port)) as conn:
            done = 0
            while done < requests:
                batch = [echo_case(rng, rid + i) for i in range(rng.choice([1, 1, 2, 5, 20]))]
                rid += len(batch)
                blob = b"".join(raw for raw, _ in batch)
                if rng.random() < 0.3:  # dribbled, so heads straddle reads
                    for at in range(0, len(blob), 700):
                        conn.send(blob[at : at + 700])
                else:
                    conn.send(blob)
                for raw, expected in batch:
                    status, _, body = conn.response()
                    got = json.loads(body) if status == 200 else {"status": status}
                    if got != expected:
                        failures.append((seed, expected["id"], got, expected, raw[:300]))
                        return
                done += len(batch)
    except Exception as exc:  # noqa: BLE001 - reported with the seed
        failures.append((seed, repr(exc)))


def test_every_response_echoes_exactly_its_own_fields(pool, mode):
    server = pool.get(APP, "--limit-request-fields", "300", *mode)
    failures: list = []
    threads = [
        threading.Thread(target=echo_connection, args=(server.port, seed, 60, failures))
        for seed in range(1, 25)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, str(failures[:2])[:3000]
    assert "panicked" not in server.log()


def test_the_field_limit_boundary_then_the_next_requests(ferrule_server, mode):
    server = ferrule_server(APP, *mode)

    def head(n: int, rid: str) -> bytes:
        lines = [f"GET /echo?id={rid} HTTP/1.1", "Host: x"]
        lines += [f"X-N{i}: {i}" for i in range(n)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    # 100 fields (Host and 99 more) pass, with the smaller heads after them.
    with Conn(("127.0.0.1", server.port)) as conn:
        conn.send(head(99, "a") + head(0, "b") + head(31, "c") + head(1, "d"))
        for rid, n in [("a", 99), ("b", 0), ("c", 31), ("d", 1)]:
            status, _, body = conn.response()
            got = json.loads(body)
            assert (status, got["id"]) == (200, rid)
            assert got["fields"] == {
                "HTTP_HOST": "x",
                **{f"HTTP_X_N{i}": str(i) for i in range(n)},
            }
    # 101 get a 431, and a new connection is served as before.
    with Conn(("127.0.0.1", server.port)) as conn:
        conn.send(head(100, "e"))
        assert conn.response()[0] == 431
    with Conn(("127.0.0.1", server.port)) as conn:
        conn.send(head(2, "f"))
        status, _, body = conn.response()
        assert (status, json.loads(body)["fields"]["HTTP_X_N1"]) == (200, "1")


# --------------------------------------------------------------------------- 2. sendfile


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[Path, bytes]]:
    folder = tmp_path_factory.mktemp("adv-files")
    out = {}
    for name, size in [("f8m", 8 * 1024 * 1024 + 123), ("f3m", 3 * 1024 * 1024 + 7)]:
        data = random.Random(size).randbytes(size)
        (folder / name).write_bytes(data)
        out[name] = (folder / name, data)
    return out


def file_plan(files, rng: random.Random) -> list[tuple[str, str, bytes | None]]:
    big, big_data = files["f8m"]
    mid, mid_data = files["f3m"]
    offset = rng.choice([1, 4095, 65536, 1 << 20])
    length = rng.choice([1, 1000, 1_000_000])
    size = rng.choice([5 * 1024 * 1024 + 3, 777_777])
    items = [
        ("GET", f"/file?path={big}", big_data),
        ("GET", f"/gen?size={size}&chunk=65536&seed=3", pattern(size, 3)),
        ("GET", "/small?id=a", b"small:a"),
        ("GET", f"/file?path={mid}&offset={offset}&cl={length}", mid_data[offset:][:length]),
        ("HEAD", f"/file?path={big}", None),
        ("GET", f"/file?path={big}&offset={offset}", big_data[offset:]),
        ("GET", "/gen?size=100", pattern(100)),
        ("GET", "/small?id=b", b"small:b"),
    ]
    rng.shuffle(items)
    return items


def download(addr, files, seed: int, reader: str, pipelined: bool, failures: list) -> None:
    rng = random.Random(seed)
    items = file_plan(files, rng)
    kwargs = {"slow": {"rcvbuf": 8192, "rate": 8e6}, "stall": {"rcvbuf": 16384}}.get(reader, {})
    try:
        with Conn(addr, **kwargs) as conn:
            if reader == "stall":
                conn.stall_at = rng.randint(100_000, 6_000_000)

            def request(method: str, target: str) -> bytes:
                return f"{method} {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()

            if pipelined:
                conn.send(b"".join(request(m, t) for m, t, _ in items))
            for method, target, want in items:
                if not pipelined:
                    conn.send(request(method, target))
                status, _, body = conn.response(head=method == "HEAD")
                if status != 200 or (want is not None and body != want):
                    failures.append((seed, reader, pipelined, target, status, len(body)))
                    return
    except Exception as exc:  # noqa: BLE001 - reported with the seed
        failures.append((seed, reader, pipelined, repr(exc)))


def downloads(addr, files, readers: list[str], seed: int) -> list:
    failures: list = []
    threads = [
        threading.Thread(
            target=download, args=(addr, files, seed + i, reader, i % 2 == 0, failures)
        )
        for i, reader in enumerate(readers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    return failures


def test_big_files_then_streams_and_small_responses_on_one_connection(pool, mode, files):
    server = pool.get(APP, *mode)
    readers = ["slow", "stall", "fast"] * 2 + ["fast", "stall"] * 5
    assert not downloads(("127.0.0.1", server.port), files, readers, 100)
    assert "panicked" not in server.log()


def test_big_files_over_a_unix_socket(ferrule_server, mode, files):
    folder = tempfile.mkdtemp(prefix="adv-unix-")
    path = os.path.join(folder, "s.sock")
    server = ferrule_server(APP, "--bind", f"unix:{path}", *mode)
    assert not downloads(path, files, ["slow", "stall", "fast", "fast"], 200)
    assert "panicked" not in server.log()
