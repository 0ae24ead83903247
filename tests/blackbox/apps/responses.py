"""``app`` exercises ``start_response``, ``write()`` and the response iterable.

One path per behaviour (see ``ROUTES``); a ``t`` query token makes the app record
``close`` calls and other invisible effects (see :func:`apps.record`).
"""

from __future__ import annotations

import sys
import threading
import time

from apps import query, record

TEXT = [("Content-Type", "text/plain")]


class Closing:
    """An iterable with ``close()`` that records ``next``/``close`` events.

    :param chunks: the chunks to yield.
    :param fail_after: raise RuntimeError after this many chunks (None: never).
    :param endless: keep yielding ``chunks[0]`` (bounded to 60 s) until closed.
    """

    def __init__(self, environ, chunks, fail_after=None, endless=False):
        self.environ = environ
        self.chunks = list(chunks)
        self.fail_after = fail_after
        self.endless = endless
        self.sent = 0
        self.started = time.monotonic()

    def __iter__(self):
        return self

    def __next__(self):
        if self.fail_after is not None and self.sent >= self.fail_after:
            record(self.environ, "raise")
            raise RuntimeError("closing-iterable-failed-on-purpose")
        if self.endless:
            if time.monotonic() - self.started > 60:
                record(self.environ, "exhausted")
                raise StopIteration
            time.sleep(0.005)
            self.sent += 1
            return self.chunks[0]
        if self.sent >= len(self.chunks):
            raise StopIteration
        self.sent += 1
        return self.chunks[self.sent - 1]

    def close(self):
        record(self.environ, "close")


def one(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"one element body"]


def generator(environ, start_response):
    start_response("200 OK", TEXT)

    def gen():
        yield b"gen-a;"
        yield b""
        yield b"gen-b;"
        yield b"gen-c"

    return gen()


def write(environ, start_response):
    w = start_response("200 OK", TEXT)
    w(b"write-1;")
    w(b"write-2;")
    return [b"iter-1;", b"iter-2"]


def write_only(environ, start_response):
    w = start_response("200 OK", [*TEXT, ("Content-Length", "10")])
    w(b"0123456789")
    return []


def exc_before(environ, start_response):
    start_response("200 OK", [*TEXT, ("X-First", "1")])
    try:
        raise ValueError("exc-before-headers")
    except ValueError:
        start_response("500 Internal Server Error", [*TEXT, ("X-Second", "2")], sys.exc_info())
    return [b"replaced by exc_info"]


def exc_after(environ, start_response):
    start_response("200 OK", [*TEXT, ("X-First", "1")])

    def gen():
        yield b"partial;"
        try:
            raise ValueError("exc-after-headers-sentinel")
        except ValueError:
            try:
                start_response("500 Internal Server Error", TEXT, sys.exc_info())
            except ValueError:
                record(environ, "reraised")
                raise
            record(environ, "not-reraised")
        yield b"must-never-be-sent"

    return gen()


BAD = {
    "status-crlf": ("200 OK\r\nX-Injected: 1", TEXT),
    "status-lf": ("200 OK\nX-Injected: 1", TEXT),
    "status-nonnumeric": ("abc Not A Status", TEXT),
    "status-nul": ("200 O\x00K", TEXT),
    "header-value-crlf": ("200 OK", [*TEXT, ("X-Evil", "a\r\nX-Injected: 1")]),
    "header-value-lf": ("200 OK", [*TEXT, ("X-Evil", "a\nX-Injected: 1")]),
    "header-value-cr": ("200 OK", [*TEXT, ("X-Evil", "a\rX-Injected: 1")]),
    "header-value-nul": ("200 OK", [*TEXT, ("X-Evil", "a\x00X-Injected: 1")]),
    "header-name-crlf": ("200 OK", [*TEXT, ("X-Injected: 1\r\nX-Evil", "v")]),
    "header-name-colon": ("200 OK", [*TEXT, ("X-Injected: 1", "v")]),
}


def bad(environ, start_response):
    status, headers = BAD[query(environ)["case"]]
    start_response(status, headers)
    return [b"should not be sent"]


def str_chunk(environ, start_response):
    start_response("200 OK", TEXT)
    return ["a str, not bytes"]


def raise_before(environ, start_response):
    raise RuntimeError(f"app-error-sentinel-{query(environ).get('tag', '')}")


def raise_in_generator(environ, start_response):
    start_response("200 OK", TEXT)

    def gen():
        raise RuntimeError("raised-before-first-chunk")
        yield b"unreachable"

    return gen()


def closing(environ, start_response):
    start_response("200 OK", TEXT)
    return Closing(environ, [b"closing-a;", b"closing-b"])


def closing_error(environ, start_response):
    start_response("200 OK", TEXT)
    return Closing(environ, [b"closing-a;", b"closing-b;"], fail_after=1)


def closing_endless(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Closing(environ, [b"x" * 65536], endless=True)


def status(environ, start_response):
    code = query(environ).get("code", "200")
    reasons = {"204": "No Content", "304": "Not Modified", "200": "OK"}
    headers = [] if code in ("204", "304") else TEXT
    start_response(f"{code} {reasons.get(code, 'Whatever')}", headers)
    return [query(environ).get("body", "").encode()]


def short(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "10")])
    return [b"12345"]


def long(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "5")])
    return [b"12345", b"EXTRA-BYTES"]


def slow(environ, start_response):
    record(environ, "start")
    time.sleep(float(query(environ).get("s", "2")))
    record(environ, "end")
    start_response("200 OK", TEXT)
    return [b"slow request finished"]


def ok(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "2")])
    return [b"ok"]


def many_writes(environ, start_response):
    """``n`` write() calls of ``size`` bytes (1 KiB; byte ``i % 256`` repeated),
    Content-Length if ``cl=1``."""
    params = query(environ)
    n = int(params.get("n", "20"))
    size = int(params.get("size", "1024"))
    headers = [*TEXT, ("Content-Length", str(n * size))] if params.get("cl") == "1" else TEXT
    w = start_response("200 OK", headers)
    for i in range(n):
        w(bytes([i % 256]) * size)
    return []


def list_blocks(environ, start_response):
    """A list of ``n`` 64 KiB blocks (byte ``i % 256`` repeated), Content-Length if ``cl=1``."""
    params = query(environ)
    n = int(params.get("n", "16"))
    headers = [*TEXT, ("Content-Length", str(n * 65536))] if params.get("cl") == "1" else TEXT
    start_response("200 OK", headers)
    return [bytes([i % 256]) * 65536 for i in range(n)]


def big_generator(environ, start_response):
    """``n`` chunks of 64 KiB (byte ``i % 256`` repeated), no Content-Length."""
    n = int(query(environ).get("n", "64"))
    start_response("200 OK", TEXT)
    return (bytes([i % 256]) * 65536 for i in range(n))


def paced(environ, start_response):
    """``first``, then ``s`` seconds of sleep in the generator, then ``second``."""
    pause = float(query(environ).get("s", "1"))
    start_response("200 OK", TEXT)

    def gen():
        yield b"first;"
        time.sleep(pause)
        yield b"second"

    return gen()


TICKS = 0
TICKER: list[threading.Thread] = []


def ticks(environ, start_response):
    """How often a Python thread of the app's own has woken up, every 5 ms, so far.

    The first call starts that thread (a daemon that sleeps 5 ms, then counts).
    """
    if not TICKER:

        def tick():
            global TICKS
            while True:
                time.sleep(0.005)
                TICKS += 1

        TICKER.append(threading.Thread(target=tick, daemon=True))
        TICKER[0].start()
    start_response("200 OK", TEXT)
    return [str(TICKS).encode()]


ROUTES = {
    "/ticks": ticks,
    "/many-writes": many_writes,
    "/big-generator": big_generator,
    "/list-blocks": list_blocks,
    "/paced": paced,
    "/one": one,
    "/generator": generator,
    "/write": write,
    "/write-only": write_only,
    "/exc-before": exc_before,
    "/exc-after": exc_after,
    "/bad": bad,
    "/str-chunk": str_chunk,
    "/raise": raise_before,
    "/raise-in-generator": raise_in_generator,
    "/closing": closing,
    "/closing-error": closing_error,
    "/closing-endless": closing_endless,
    "/status": status,
    "/short": short,
    "/long": long,
    "/slow": slow,
    "/ok": ok,
}


def app(environ, start_response):
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        start_response("404 Not Found", TEXT)
        return [b"no such path\n"]
    return route(environ, start_response)
