"""A small raw-socket HTTP/1.1 client for edge cases that real clients smooth over.

:class:`Wire` sends exact bytes and parses responses itself, so a test sees what the
server really wrote: 1xx responses, the framing (Content-Length, chunked or
close-delimited), truncated bodies and whether the connection was closed.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

TIMEOUT = 20.0


def connect(addr, rcvbuf: int | None = None, timeout: float | None = TIMEOUT) -> socket.socket:
    """A socket connected to ``addr``: a ``(host, port)`` pair, or a Unix socket's path.

    With ``rcvbuf``, its receive buffer is that many bytes, set before connecting so the
    window the server sees stays small (a slow reader). ``timeout`` is in seconds (None:
    blocking).
    """
    family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(addr)
    return sock


@dataclass
class Response:
    """One parsed response; ``complete`` is False when the body was cut short."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = True
    framing: str = "none"  # none | length | chunked | close

    def header(self, name: str) -> str | None:
        """The first value of the field ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Wire:
    """A TCP connection to 127.0.0.1 with a receive buffer."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = TIMEOUT,
        rcvbuf: int | None = None,
    ) -> None:
        """``rcvbuf``: the socket's receive buffer in bytes, as :func:`connect` sets it."""
        self.sock = connect((host, port), rcvbuf, timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> bool:
        """Receive more bytes; False at EOF (or a reset, which is an EOF too)."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_response(self, head: bool = False) -> Response:
        """Read one response (1xx included: call again for the final one).

        :param head: the request was HEAD, so the response has no body.
        :raises EOFError: the connection closed before a whole head arrived.
        """
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; unparsed bytes: {self.buf[:200]!r}")
        raw_head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw_head.split(b"\r\n")
        version, _, rest = lines[0].decode("latin-1").partition(" ")
        code, _, reason = rest.partition(" ")
        resp = Response(version, int(code), reason)
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            resp.headers.append((name, value.strip(" \t")))
        if head or resp.status < 200 or resp.status in (204, 304):
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if "chunked" in te:
            resp.framing = "chunked"
            self._read_chunked(resp)
        elif cl is not None:
            resp.framing = "length"
            n = int(cl)
            while len(self.buf) < n and self._fill():
                pass
            resp.body = self._take(n)
            resp.complete = len(resp.body) == n
        else:
            resp.framing = "close"
            while self._fill():
                pass
            resp.body = self._take(len(self.buf))
        return resp

    def _read_chunked(self, resp: Response) -> None:
        body = b""
        while True:
            line = self._line()
            if line is None:
                resp.body, resp.complete = body, False
                return
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailer section up to the empty line
                    trailer = self._line()
                    if trailer is None:
                        resp.body, resp.complete = body, False
                        return
                    if trailer == b"":
                        resp.body = body
                        return
            while len(self.buf) < size + 2 and self._fill():
                pass
            if len(self.buf) < size + 2:
                resp.body, resp.complete = body + self._take(size), False
                return
            body += self._take(size)
            self._take(2)

    def read_final(self, head: bool = False) -> tuple[list[Response], Response]:
        """Read past any 1xx responses; return (interim, final)."""
        interim = []
        while True:
            resp = self.read_response(head=head)
            if resp.status >= 200:
                return interim, resp
            interim.append(resp)

    def read_to_eof(self, timeout: float = TIMEOUT) -> bytes:
        """Everything until the server closes (bounded); raises TimeoutError if it won't."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._fill():
                return self._take(len(self.buf))
        raise TimeoutError(f"server kept the connection open; got {self.buf[:200]!r}")

    def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """True if the server closes the connection (without sending more) in time."""
        try:
            extra = self.read_to_eof(timeout)
        except TimeoutError:
            return False
        return extra == b""


def request(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str | None = "127.0.0.1",
) -> bytes:
    """Bytes of one request; adds Host (unless None) and Content-Length for a body."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    hdrs = list(headers or [])
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    lines += [f"{k}: {v}" for k, v in hdrs]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def chunked(body: bytes, size: int = 65536, trailers: bytes = b"") -> bytes:
    """``body`` in the chunked transfer coding, with an optional trailer section."""
    out = bytearray()
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return bytes(out) + b"0\r\n" + trailers + b"\r\n"
