"""``wsgi.file_wrapper`` over real files, sent with sendfile(2) on plain connections.

Every file is fetched through a real ferrule (``--threads 1``, the inline path, and
``--threads 4``) with curl, httpx or raw sockets, and compared byte for byte: sizes around
the block and buffer boundaries, offsets, declared lengths shorter and longer than the
file, HEAD, 204/304, HTTP/1.0, ``Connection: close``, pipelining, a slow reader, a client
that leaves mid-file, a file truncated while it is being sent, many stalled clients (no
file bytes held in memory), a Unix socket, and TLS (which keeps the read path).
"""

from __future__ import annotations

import random
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from apps import wait_events
from apps.advisory_apps import fd_count, worker_pids
from apps.wire import connect
from conftest import ServerPool

TIMEOUT = 30
APP = "apps.sendfile_apps:app"
MIB = 1024 * 1024
SIZES = {"s0": 0, "s1": 1, "s65535": 65535, "s65537": 65537, "s1m": MIB, "s5m3": 5 * MIB + 3}
CURL = shutil.which("curl")


@dataclass
class Files:
    """The served directory and the bytes of each file in it."""

    dir: Path
    data: dict[str, bytes]

    def add(self, size: int) -> tuple[str, bytes]:
        """A new file of ``size`` random bytes: (name, bytes)."""
        name = f"x-{uuid.uuid4().hex}"
        data = random.Random(name).randbytes(size)
        (self.dir / name).write_bytes(data)
        return name, data


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    folder = tmp_path_factory.mktemp("served")
    data = {name: random.Random(name).randbytes(size) for name, size in SIZES.items()}
    for name, blob in data.items():
        (folder / name).write_bytes(blob)
    return Files(folder, data)


@pytest.fixture(scope="module")
def pool(tmp_path_factory, files):
    p = ServerPool(
        tmp_path_factory.mktemp("sendfile-state"), "--env", f"FERRULE_TEST_DIR={files.dir}"
    )
    yield p
    p.stop()


@pytest.fixture(params=["1", "4"], ids=["threads1", "threads4"])
def srv(request, pool):
    return pool.get("--threads", request.param, APP)


# --------------------------------------------------------------------------- a raw client


class Conn:
    """A raw HTTP/1.1 connection with an optional small receive buffer (a slow reader)."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = connect(("127.0.0.1", port), rcvbuf, TIMEOUT)
        self.buf = bytearray()
        self.eof = False

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, target: str, method: str = "GET", version: str = "HTTP/1.1") -> None:
        self.send(f"{method} {target} {version}\r\nHost: t\r\n\r\n".encode())

    def fill(self, size: int = 256 * 1024) -> bool:
        """Receive more; False at EOF or reset."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(size)
        except ConnectionResetError:
            data = b""
        self.buf += data
        self.eof = not data
        return bool(data)

    def head(self) -> tuple[int, dict[str, str]]:
        """The next response head: status and fields (lowercase names)."""
        while b"\r\n\r\n" not in self.buf:
            assert self.fill(), f"closed before a head: {bytes(self.buf[:200])!r}"
        end = self.buf.index(b"\r\n\r\n")
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), fields

    def body(self, length: int, pace: float = 0.0, size: int = 256 * 1024) -> bytes:
        """Up to ``length`` body bytes (fewer if the server closes first)."""
        reads = 0
        while len(self.buf) < length and self.fill(size):
            reads += 1
            if pace and reads % 64 == 0:
                time.sleep(pace)
        out = bytes(self.buf[:length])
        del self.buf[:length]
        return out

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status, fields = self.head()
        return status, fields, self.body(int(fields.get("content-length", "0")))

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        """True if the server closes the connection without sending more."""
        self.sock.settimeout(timeout)
        try:
            return not self.fill() and not self.buf
        except TimeoutError:
            return False


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --------------------------------------------------------------------------- whole files


def test_every_size_with_httpx(srv, files):
    with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as client:  # one keep-alive connection
        for name, data in files.data.items():
            r = client.get(f"/{name}")
            assert r.status_code == 200, name
            assert r.headers["content-length"] == str(len(data))
            assert r.content == data, name


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_every_size_with_curl(srv, files, tmp_path):
    for name, data in files.data.items():
        out = tmp_path / name
        done = subprocess.run(
            [
                CURL,
                "-sS",
                "-o",
                str(out),
                "-w",
                "%{http_code} %{size_download}",
                f"{srv.url}/{name}",
            ],
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
        assert done.stdout.decode() == f"200 {len(data)}", name
        assert out.read_bytes() == data, name


@pytest.mark.parametrize(
    ("query", "start", "end"),
    [
        ("seek=1", 1, None),
        ("seek=65535", 65535, None),
        ("seek=1048575", MIB - 1, None),
        ("seek=1048576", MIB, None),  # at the end: an empty body
        ("seek=2000000", MIB, None),  # past the end: an empty body too
        ("length=1", 0, 1),
        ("length=65536", 0, 65536),
        ("seek=1000&length=5000", 1000, 6000),
        ("seek=65535&length=900000", 65535, 965535),
        ("length=1048576", 0, MIB),
    ],
)
def test_offsets_and_shorter_declared_lengths(srv, files, query, start, end):
    data = files.data["s1m"][start:end]
    r = httpx.get(f"{srv.url}/s1m?{query}", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(data))
    assert r.content == data


def test_a_shorter_declared_length_keeps_the_connection(srv, files):
    with Conn(srv.port) as c:
        c.get("/s5m3?length=100000")
        status, fields, body = c.response()
        assert (status, fields["content-length"]) == (200, "100000")
        assert body == files.data["s5m3"][:100000]
        c.get("/-/ok")
        assert c.response()[2] == b"ok", "no stray file bytes before the next response"


def test_a_longer_declared_length_closes_the_connection(srv, files):
    data = files.data["s65537"]
    with Conn(srv.port) as c:
        c.get(f"/s65537?length={len(data) + 10}")
        status, fields = c.head()
        assert (status, fields["content-length"]) == (200, str(len(data) + 10))
        body = c.body(len(data) + 10)
        assert c.eof, "the connection closes before the declared length"
        assert body == data[: len(body)]
    srv.wait_for_log("shorter than its Content-Length")


# --------------------------------------------------------------------------- framing


def test_head_sends_no_body_and_keeps_the_connection(srv, files):
    with Conn(srv.port) as c:
        c.get("/s1m", method="HEAD")
        status, fields = c.head()
        assert (status, fields["content-length"]) == (200, str(MIB))
        c.get("/-/ok")
        status, _, body = c.response()
        assert (status, body) == (200, b"ok"), "no file bytes after the HEAD response"


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_statuses_send_no_body(srv, status):
    with Conn(srv.port) as c:
        c.get(f"/s65537?status={status}")
        got, fields = c.head()
        assert got == status
        assert "transfer-encoding" not in fields
        c.get("/-/ok")
        assert c.response()[::2] == (200, b"ok"), "nothing of the file was sent"


def test_http10_gets_the_file_then_a_close(srv, files):
    with Conn(srv.port) as c:
        c.get("/s65537?seek=3", version="HTTP/1.0")
        status, fields, body = c.response()
        assert status == 200
        assert body == files.data["s65537"][3:]
        assert c.closed_by_server()


def test_connection_close_from_the_app(srv, files):
    with Conn(srv.port) as c:
        c.get("/s1m?close=1")
        status, fields, body = c.response()
        assert (status, fields["connection"]) == (200, "close")
        assert body == files.data["s1m"]
        assert c.closed_by_server()


def test_pipelined_requests_after_a_file(srv, files):
    with Conn(srv.port) as c:
        c.send(
            b"GET /s1m HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /-/ok HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /s65537?seek=3 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /s0 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /s5m3 HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert c.response()[2] == files.data["s1m"]
        assert c.response()[2] == b"ok"
        assert c.response()[2] == files.data["s65537"][3:]
        assert c.response()[1]["content-length"] == "0"
        assert c.response()[2] == files.data["s5m3"]


# ---------------------------------------------------------------- slow and leaving clients


def test_a_slow_reader_gets_every_byte(srv, files):
    data = files.data["s5m3"]
    with Conn(srv.port, rcvbuf=4096) as c:
        c.get("/s5m3")
        status, fields = c.head()
        assert (status, fields["content-length"]) == (200, str(len(data)))
        time.sleep(0.3)  # the server meets a full socket
        body = c.body(len(data), pace=0.002, size=4096)
        assert len(body) == len(data)
        assert body == data
        c.get("/-/ok")
        assert c.response()[2] == b"ok"


@pytest.mark.parametrize("read_first", [0, 200_000], ids=["at-once", "mid-file"])
def test_a_client_that_leaves_mid_file(srv, pool, files, read_first):
    name, data = files.add(32 * MIB)
    (worker,) = worker_pids(srv.proc.pid)
    fds = fd_count(worker)
    token = f"leave{read_first}{srv.argv[-2]}"
    with Conn(srv.port, rcvbuf=4096) as c:
        c.get(f"/{name}?t={token}")
        status, _ = c.head()
        assert status == 200
        got = c.body(read_first, size=4096)
        assert got == data[: len(got)]
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")  # reset
    assert wait_events(pool.state, token, "close") == ["close"], "close() exactly once"
    r = httpx.get(f"{srv.url}/s1m", timeout=TIMEOUT)
    assert r.content == files.data["s1m"], "the worker serves on"
    deadline = time.monotonic() + 10
    while fd_count(worker) > fds and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fd_count(worker) <= fds, "the file's descriptor was released"
    assert worker_pids(srv.proc.pid) == [worker]
    assert "panick" not in srv.log()


def test_a_file_truncated_while_sent_ends_in_a_close(srv, files):
    name, data = files.add(32 * MIB)
    with Conn(srv.port, rcvbuf=4096) as c:
        c.get(f"/{name}")
        status, fields = c.head()
        assert (status, fields["content-length"]) == (200, str(len(data)))
        time.sleep(0.3)  # the server is blocked on a full socket, far from the end
        (files.dir / name).open("r+b").truncate(6 * MIB)
        body = c.body(len(data))
        assert c.eof, "the connection was closed"
        assert len(body) < len(data), "never a response that looks complete"
        assert body == data[: len(body)]
    assert httpx.get(f"{srv.url}/-/ok", timeout=TIMEOUT).content == b"ok"


def test_stalled_clients_hold_no_thread_and_no_file_bytes(srv, files):
    """16 clients that read nothing of a 16 MiB file hold no Python thread (others are
    served meanwhile, with ``--threads 1`` too) and cost the worker no file-sized memory
    (the read path held up to 2 MiB of file per response, in every busy thread)."""
    name, data = files.add(16 * MIB)
    (worker,) = worker_pids(srv.proc.pid)
    for _ in range(3):
        httpx.get(f"{srv.url}/s1m", timeout=TIMEOUT)
    before = rss_kib(worker)
    stalled = [Conn(srv.port, rcvbuf=4096) for _ in range(16)]
    try:
        for c in stalled:
            c.get(f"/{name}")
        time.sleep(1.0)
        grown = rss_kib(worker) - before
        r = httpx.get(f"{srv.url}/s65537", timeout=5)
        assert r.content == files.data["s65537"], "a file response while 16 clients stall"
        status, _, body = stalled[0].response()
        assert status == 200 and body == data
    finally:
        for c in stalled:
            c.sock.close()
    assert grown < 6 * 1024, f"the worker grew by {grown} KiB for 16 stalled responses"


# --------------------------------------------------------------------------- other transports


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_unix_socket(ferrule_server, files, tmp_path):
    sock = tmp_path / "s.sock"
    srv = ferrule_server("--bind", f"unix:{sock}", "--env", f"FERRULE_TEST_DIR={files.dir}", APP)
    for name in ("s0", "s65537", "s5m3"):
        out = tmp_path / name
        subprocess.run(
            [CURL, "-sS", "--unix-socket", str(sock), "-o", str(out), f"http://x/{name}?seek=1"],
            timeout=TIMEOUT,
            check=True,
        )
        assert out.read_bytes() == files.data[name][1:], name
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://x", timeout=TIMEOUT) as client:
        assert client.get("/s1m").content == files.data["s1m"]
        assert client.get("/-/ok").content == b"ok"
    assert srv.proc.poll() is None


@pytest.mark.parametrize("threads", ["1", "4"])
def test_tls_keeps_the_read_path(ferrule_server, files, tls_pems, threads, tmp_path):
    srv = ferrule_server(
        "--certfile", str(tls_pems["cert"]), "--keyfile", str(tls_pems["key"]),
        "--threads", threads, "--env", f"FERRULE_TEST_DIR={files.dir}", APP,
    )  # fmt: skip
    url = f"https://127.0.0.1:{srv.port}"
    trusted = ssl.create_default_context(cafile=str(tls_pems["ca"]))
    with httpx.Client(base_url=url, verify=trusted, timeout=TIMEOUT) as client:
        for name, data in files.data.items():
            assert client.get(f"/{name}").content == data, name
        assert client.get("/s1m?seek=5&length=70000").content == files.data["s1m"][5:70005]
        assert client.head("/s1m").headers["content-length"] == str(MIB)
        assert client.get("/-/ok").content == b"ok"
    if CURL:
        out = tmp_path / "out"
        subprocess.run(
            [CURL, "-sS", "--cacert", str(tls_pems["ca"]), "-o", str(out), f"{url}/s5m3"],
            timeout=TIMEOUT,
            check=True,
        )
        assert out.read_bytes() == files.data["s5m3"]
