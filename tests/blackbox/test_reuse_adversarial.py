"""Adversarial black-box tests of three per-connection reuses (apps: ``apps/adversarial.py``).

1. **environ reuse** (``src/py/environ.rs``): a keep-alive connection's next request
   reuses the last request's environ dict when the application neither kept nor changed
   it. Here an application keeps or changes its environ in every way it can (a global,
   a thread that writes to it later, a traceback, ``close()``, a generator, ``clear()``,
   writes that put the same values back, writes of the same objects, hunting other
   connections' dicts through ``gc.get_objects()``), and Flask and Django do what they
   do. Each request's environ, as the application got it, must equal the environ of the
   same request sent alone on a fresh connection, whatever came before it, on
   ferrule's exchange, after the hand-off to hyper (a chunked request), pipelined, and
   inline (``--threads 1``) or not (``--threads 4``); what an application kept must stay
   its own request's.
2. **start_response as a bound method** (``src/py/start_response.rs``): keyword
   arguments, ``__self__``, ``functools.partial``, another thread, ``wsgiref.validate``,
   a kept callable or object, a failed first call.
3. **a small body in the field-lines buffer** (``src/http/reply.rs``, ``h1.rs``):
   byte-exact responses on one connection, alternating many or long fields, small,
   4 KiB, larger and empty bodies, HEAD, 204, 304 and declared lengths shorter or
   longer than the body, compared with the same response on a fresh connection.

Every test runs in both modes. ``REMOTE_PORT`` is each connection's own: it is compared
as ``<client port>`` (or the ``0`` of a forwarded client).
"""

from __future__ import annotations

import json
import uuid

import pytest
from apps.wire import Response, Wire, chunked

TIMEOUT = 30.0
ENV_ARGS = ("--root-path", "/app", "--forwarded-allow-ips", "127.0.0.1")


# --- requests ---------------------------------------------------------------------------

BROWSER = (
    (b"Host", b"example.test:8000"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"Accept", b"text/html,application/xhtml+xml,*/*;q=0.8"),
    (b"Accept-Language", b"en-US,en;q=0.5"),
    (b"Accept-Encoding", b"gzip, deflate, br"),
    (b"Cookie", b"session=abc123"),
    (b"Sec-Fetch-Mode", b"navigate"),
)
HOST = (b"Host", b"example.test:8000")


def req(
    method: bytes = b"GET",
    target: bytes = b"/app/",
    *fields: tuple[bytes, bytes],
    body: bytes | None = None,
    version: bytes = b"HTTP/1.1",
) -> bytes:
    head = method + b" " + target + b" " + version + b"\r\n"
    lines = b"".join(n + b": " + v + b"\r\n" for n, v in fields)
    if body is None:
        return head + lines + b"\r\n"
    return head + lines + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def post_chunked(target: bytes, *fields: tuple[bytes, bytes], body: bytes = b"abc") -> bytes:
    """A request ferrule's exchange hands to hyper, with the rest of its connection."""
    head = b"POST " + target + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
    lines = b"".join(n + b": " + v + b"\r\n" for n, v in fields)
    return head + lines + b"\r\n" + chunked(body)


# What follows an action on its connection: each differs from the one before in what
# a reused dict would have to put back.
FOLLOW = [
    req(b"GET", b"/app/one?x=1", *BROWSER),
    req(b"GET", b"/app/two", HOST, (b"X-Odd", b"1"), (b"x-odd", b"2"), (b"X-ODD-2", b"3")),
    req(b"GET", b"/outside", HOST, (b"X_Odd", b"underscore"), (b"Accept", b"*/*")),
    req(
        b"POST",
        b"/app/json?y=2",
        HOST,
        (b"Content-Type", b"application/json"),
        body=b'{"a": 1}',
    ),
    req(b"POST", b"/app/unread?read=none", HOST, body=b"left unread"),
    req(b"GET", b"/app/after-unread", HOST),
    req(
        b"DELETE",
        b"/app/fwd",
        HOST,
        (b"X-Forwarded-For", b"203.0.113.9"),
        (b"X-Forwarded-Proto", b"https"),
    ),
    req(b"GET", b"/app/ten", (b"Connection", b"keep-alive"), version=b"HTTP/1.0"),
    req(b"PUT", b"/app/partial?read=3", HOST, (b"Content-Type", b"text/plain"), body=b"abcdef"),
    req(b"GET", b"/app/", *BROWSER),
    post_chunked(b"/app/chunked?z=1", *BROWSER, body=b"chunked body"),
    req(b"GET", b"/app/on-hyper?q=1", HOST, (b"X-Odd", b"hyper")),
    req(b"POST", b"/app/hyper-post", HOST, body=b"hyper body"),
    req(b"GET", b"/app/", *BROWSER),
]


def environ_of(resp: Response, wire: Wire) -> dict:
    assert resp.status == 200, (resp.status, resp.body[:500])
    data = json.loads(resp.body)
    env = data["environ"]
    if env.get("REMOTE_PORT") == str(wire.local_port):
        env["REMOTE_PORT"] = "<client port>"
    else:  # a trusted proxy's client: X-Forwarded-For
        assert env.get("REMOTE_PORT") == "0", env
    return data


def fresh(port: int, request: bytes) -> dict:
    with Wire(port, timeout=TIMEOUT) as wire:
        wire.send(request)
        return environ_of(wire.read_response(), wire)


def action(do: str, tag: str) -> bytes:
    target = f"/app/act-{do}?do={do}&tag={tag}".encode()
    return req(b"GET", target, *BROWSER, (b"X-Tag", tag.encode()))


def report(port: int, tag: str) -> dict:
    with Wire(port, timeout=TIMEOUT) as wire:
        wire.send(req(b"GET", f"/app/report?do=report&tag={tag}".encode(), HOST))
        return environ_of(wire.read_response(), wire)["report"]


ACTIONS = [
    "",
    "keep",
    "keep-input",
    "mutate",
    "restore",
    "same-value",
    "clear-refill",
    "clear",
    "del-add",
    "popitem",
    "middleware",
    "thread",
    "exc",
    "gen",
    "close-keep",
    "close-change",
    "weak-hunt",
]
# Not ``raise``: a 500 closes its connection, so nothing of it can be reused.


def check_sequence(port: int, requests: list[bytes], pipelined: bool) -> list[dict]:
    """Send ``requests`` on one connection (all at once if ``pipelined``); each answer
    must equal the same request's on a fresh connection."""
    with Wire(port, timeout=TIMEOUT) as wire:
        if pipelined:
            wire.send(b"".join(requests))
        answers = []
        for request in requests:
            if not pipelined:
                wire.send(request)
            answers.append(environ_of(wire.read_response(), wire))
    for i, (request, got) in enumerate(zip(requests, answers, strict=True)):
        want = fresh(port, request)
        # The action's own report may count other connections' state.
        got.pop("report"), want.pop("report")
        assert got == want, f"request {i}: {request[:120]!r}"
    return answers


@pytest.mark.parametrize("do", ACTIONS)
def test_what_an_application_does_to_its_environ_reaches_no_later_request(pool, mode, do):
    server = pool.get("apps.adversarial:app", *ENV_ARGS, *mode)
    tag = uuid.uuid4().hex
    first = action(do, tag)
    answers = check_sequence(server.port, [first, *FOLLOW, first, *FOLLOW[:3]], False)
    # What the application kept is still its own request's.
    got = report(server.port, tag)
    own = answers[0]
    if do in ("keep", "close-keep"):
        kept = got["kept"]
        assert kept["PATH_INFO"] == f"/act-{do}"
        assert kept["HTTP_X_TAG"] == tag
        # The kept dict is the second request with this action (the last kept).
        want = dict(answers[len(FOLLOW) + 1]["environ"])
        want.pop("REMOTE_PORT")
        kept.pop("REMOTE_PORT")
        assert kept == want
    if do == "keep-input":
        assert got["kept_input_rest"] == ""
    if do == "exc":
        frame_env = got["exc_environ"]
        assert frame_env["PATH_INFO"] == "/act-exc"
        assert frame_env["QUERY_STRING"] == f"do=exc&tag={tag}"
        assert frame_env["HTTP_X_TAG"] == tag
    if do == "thread":
        assert got["thread_saw"] == "/act-thread"
    assert own["environ"]["PATH_INFO"] == f"/act-{do}"


PIPELINED = ["", "mutate", "clear", "close-change", "thread", "keep", "gen"]


@pytest.mark.parametrize("do", PIPELINED)
def test_pipelined_requests_each_get_their_own_environ(pool, mode, do):
    """All requests sent at once: the next head is read while the last request may
    still be in its ``close()`` and its environ not yet let go."""
    server = pool.get("apps.adversarial:app", *ENV_ARGS, *mode)
    tag = uuid.uuid4().hex
    first = action(do, tag)
    requests = [first, *FOLLOW[:10], first, *FOLLOW[:4], first, FOLLOW[0]]
    check_sequence(server.port, requests, True)


def test_many_connections_interleaved_each_get_their_own_environ(pool, mode):
    """Eight connections, requests sent round-robin: a dict let go on one connection is
    never another's."""
    server = pool.get("apps.adversarial:app", *ENV_ARGS, *mode)
    tag = uuid.uuid4().hex
    per_conn = [
        [action(do, f"{tag}-{c}"), *FOLLOW[c % 5 : c % 5 + 6]]
        for c, do in enumerate(["", "mutate", "keep", "clear", "", "thread", "gen", "restore"])
    ]
    wires = [Wire(server.port, timeout=TIMEOUT) for _ in per_conn]
    try:
        answers: list[list[tuple[bytes, dict]]] = [[] for _ in per_conn]
        for step in range(max(len(r) for r in per_conn)):
            for c, requests in enumerate(per_conn):
                if step < len(requests):
                    wires[c].send(requests[step])
            for c, requests in enumerate(per_conn):
                if step < len(requests):
                    got = environ_of(wires[c].read_response(), wires[c])
                    answers[c].append((requests[step], got))
    finally:
        for wire in wires:
            wire.close()
    for c, pairs in enumerate(answers):
        for i, (request, got) in enumerate(pairs):
            want = fresh(server.port, request)
            got.pop("report"), want.pop("report")
            assert got == want, f"connection {c}, request {i}: {request[:100]!r}"


def test_environs_are_not_found_through_the_garbage_collector(pool, mode):
    """Another connection's let-go environ is not listed by ``gc.get_objects()`` (the
    server's dicts are untracked, src/py/environ.rs ``template``): hunting for it to
    change, hold, or change and put back finds none, and the connection's next
    requests equal a fresh connection's. (A found one is never reused: the Rust test
    ``a_released_environ_serves_the_connections_next_request``.)"""
    server = pool.get("apps.adversarial:app", *ENV_ARGS, *mode)
    tag = uuid.uuid4().hex

    def hunter(do: str) -> dict:
        with Wire(server.port, timeout=TIMEOUT) as wire:
            wire.send(req(b"GET", f"/app/h?do={do}&tag={tag}".encode(), HOST))
            return environ_of(wire.read_response(), wire)["report"]

    with Wire(server.port, timeout=TIMEOUT) as victim:

        def send(request: bytes) -> None:
            victim.send(request)
            got = environ_of(victim.read_response(), victim)
            want = fresh(server.port, request)
            got.pop("report"), want.pop("report")
            assert got == want, request

        # What a hunt finds are environs earlier tests' applications kept and
        # changed (tracked again), never the victim's.
        send(req(b"POST", b"/app/victim-1?x=1", *BROWSER, body=b"victim body"))
        hunter("hunt-mutate")
        send(req(b"GET", b"/app/victim-2", *BROWSER))
        hunter("hunt-hold")
        send(req(b"GET", b"/app/victim-3?y", HOST))
        held = report(server.port, tag)["hunted_paths"]
        assert not [p for p in held if p.startswith("/victim")], held
        hunter("hunt-drop")
        send(req(b"GET", b"/app/victim-4", *BROWSER))
        hunter("hunt-restore")
        send(req(b"GET", b"/app/victim-5", HOST, (b"X-Odd", b"5")))
        send(req(b"GET", b"/app/victim-6", *BROWSER))


def test_environ_templates_are_not_found_through_the_garbage_collector(ferrule_server):
    """The server's own templates (the listener's, each connection's) are not listed by
    ``gc.get_objects()``: an application cannot change another connection's requests
    through them (they are untracked, src/py/environ.rs ``template``)."""
    server = ferrule_server("apps.adversarial:app", *ENV_ARGS)
    with Wire(server.port, timeout=TIMEOUT) as victim:
        request = req(b"GET", b"/app/victim", *BROWSER)
        victim.send(request)
        environ_of(victim.read_response(), victim)
        with Wire(server.port, timeout=TIMEOUT) as hunter:
            hunter.send(req(b"GET", b"/app/h?do=hunt-templates", HOST))
            assert environ_of(hunter.read_response(), hunter)["report"]["hunted"] == 0


# --- frameworks ---------------------------------------------------------------------------

FRAMEWORK_REQUESTS = [
    req(b"GET", b"/app/a?x=1&x=2", *BROWSER),
    req(b"POST", b"/app/form", HOST, (b"Content-Type", b"application/x-www-form-urlencoded"),
        body=b"f=1&g=2"),
    req(b"GET", b"/app/b", HOST, (b"X-Custom", b"c")),
    req(b"PUT", b"/app/c?y", HOST, (b"Content-Type", b"text/plain"), body=b"put body"),
    req(b"GET", b"/app/d", HOST, (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-For", b"198.51.100.7")),
    req(b"GET", b"/app/a?x=1&x=2", *BROWSER),
    post_chunked(b"/app/e", HOST, (b"Content-Type", b"text/plain"), body=b"chunky"),
    req(b"GET", b"/app/f", *BROWSER),
    req(b"DELETE", b"/app/g?z=9", HOST),
    req(b"GET", b"/app/a?x=1&x=2", *BROWSER),
]  # fmt: skip


@pytest.mark.parametrize("app", ["flask_app", "django_app"])
def test_framework_requests_on_one_connection_equal_fresh_ones(pool, mode, app):
    server = pool.get(f"apps.adversarial:{app}", *ENV_ARGS, *mode)
    with Wire(server.port, timeout=TIMEOUT) as wire:
        answers = []
        for request in FRAMEWORK_REQUESTS:
            wire.send(request)
            answers.append(environ_of(wire.read_response(), wire))
    for i, (request, got) in enumerate(zip(FRAMEWORK_REQUESTS, answers, strict=True)):
        assert got == fresh(server.port, request), f"request {i}: {request[:100]!r}"
    flask = answers[1].get("flask")
    if flask is not None:
        assert flask["form"] == {"f": ["1"], "g": ["2"]}
        assert answers[6]["flask"]["data"] == "chunky"
    django = answers[1].get("django")
    if django is not None:
        assert django["body"] == "f=1&g=2"


# --- start_response -------------------------------------------------------------------


def sr_get(wire: Wire, how: str, tag: str = "-", app_path: str = "") -> Response:
    wire.send(req(b"GET", f"/app/{app_path}?how={how}&tag={tag}".encode(), HOST))
    return wire.read_response()


def fields(resp: Response) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.headers if k.lower() != "date"}


def test_start_response_called_in_unusual_ways(pool, mode):
    server = pool.get("apps.adversarial:sr_app", *mode)
    tag = uuid.uuid4().hex
    expected = {
        "plain": 200,
        "kwargs": 201,
        "kwargs-exc": 202,
        "self": 203,
        "partial": 206,
        "thread": 200,
        "bad-then-good": 200,
        "many-then-exc": 500,
    }
    with Wire(server.port, timeout=TIMEOUT) as wire:
        for _ in range(2):  # each again on a reused start_response
            for how, status in expected.items():
                resp = sr_get(wire, how)
                assert resp.status == status, (how, resp)
                assert resp.body == b"how=" + how.encode(), how
                assert fields(resp) == {
                    "content-type": "text/plain",
                    "x-how": how,
                    "content-length": str(len(resp.body)),
                }, how
        for keep in ("keep", "keep-self", "reduce"):
            assert sr_get(wire, keep, tag).status == 200
            resp = sr_get(wire, "use-kept", tag)
            assert resp.status == 200, resp
            assert "x-leak" not in fields(resp)
            result = json.loads(resp.body)
            if keep == "keep":
                assert result["kept_is_this"] is False
                assert result["sr"] == "RuntimeError"
            elif keep == "keep-self":
                assert result["self_is_this"] is False
                assert result["self"] == "RuntimeError"
            else:
                assert result["reduced_is_this"] is False


def test_start_response_under_wsgiref_validate(pool, mode):
    """``wsgiref.validate.validator`` wraps start_response, write and the body."""
    server = pool.get("apps.adversarial:validated", *mode)
    expected = {"plain": 200, "partial": 206, "thread": 200, "many-then-exc": 500}
    with Wire(server.port, timeout=TIMEOUT) as wire:
        for _ in range(3):
            for how, status in expected.items():
                resp = sr_get(wire, how)
                assert resp.status == status, (how, resp)
                assert resp.body == b"how=" + how.encode(), how
                got = fields(resp)
                got.pop("transfer-encoding", None), got.pop("content-length", None)
                assert got == {"content-type": "text/plain", "x-how": how}, how


# --- small bodies, byte-exact ---------------------------------------------------------


def small(target: str, method: bytes = b"GET", version: bytes = b"HTTP/1.1") -> bytes:
    fields_ = (b"Connection", b"keep-alive") if version == b"HTTP/1.0" else HOST
    return req(method, b"/?" + target.encode(), fields_, version=version)


def pattern(size: int, fill: str = "a") -> bytes:
    return bytes((ord(fill) + i) % 256 for i in range(size))


# (query, method, version): each follows the one before on one connection.
SMALL = [
    ("b=5", b"GET", b"HTTP/1.1"),
    ("b=100&n=100&v=100", b"GET", b"HTTP/1.1"),  # 10 KiB of fields, kept buffer
    ("b=3&fill=z", b"GET", b"HTTP/1.1"),
    ("b=4096&n=3", b"GET", b"HTTP/1.1"),
    ("b=4097&n=1", b"GET", b"HTTP/1.1"),
    ("b=0&n=2", b"GET", b"HTTP/1.1"),
    ("b=-1", b"GET", b"HTTP/1.1"),
    ("b=100&n=200&v=100", b"GET", b"HTTP/1.1"),  # 20 KiB of fields: buffer not kept
    ("b=7", b"GET", b"HTTP/1.1"),
    ("b=100", b"HEAD", b"HTTP/1.1"),
    ("b=9&fill=q", b"GET", b"HTTP/1.1"),
    ("b=10&s=204+No+Content", b"GET", b"HTTP/1.1"),
    ("b=11", b"GET", b"HTTP/1.1"),
    ("b=10&s=304+Not+Modified&n=2", b"GET", b"HTTP/1.1"),
    ("b=12", b"GET", b"HTTP/1.1"),
    ("b=10&cl=3", b"GET", b"HTTP/1.1"),  # declared shorter: cut off
    ("b=10&cl=10", b"GET", b"HTTP/1.1"),
    ("b=10&cl=0", b"GET", b"HTTP/1.1"),
    ("b=4000&cl=4000&n=50&v=60", b"GET", b"HTTP/1.1"),
    ("b=13&how=tuple", b"GET", b"HTTP/1.1"),
    ("b=14&how=two", b"GET", b"HTTP/1.1"),
    ("b=15&how=write", b"GET", b"HTTP/1.1"),
    ("b=17&s=201+Made+It", b"GET", b"HTTP/1.1"),
    ("b=18", b"GET", b"HTTP/1.0"),
    ("b=19&n=30&v=200", b"HEAD", b"HTTP/1.0"),
    ("b=20", b"GET", b"HTTP/1.1"),
    ("b=21&s=404+Not+Found&n=5", b"POST", b"HTTP/1.1"),
    ("b=4096&fill=0", b"GET", b"HTTP/1.1"),
    ("b=1", b"GET", b"HTTP/1.1"),
]


def read(wire: Wire, method: bytes) -> Response:
    return wire.read_response(head=method == b"HEAD")


def shape(resp: Response) -> tuple:
    """Everything but the date."""
    head = [(k.lower(), v) for k, v in resp.headers if k.lower() != "date"]
    return (resp.version, resp.status, resp.reason, head, resp.body, resp.complete, resp.framing)


def expect_small(query_: str, method: bytes, version: bytes, resp: Response) -> None:
    """The response ``small`` must have given for ``query_``."""
    q = dict(p.split("=") for p in query_.split("&"))
    size = int(q.get("b", "5"))
    body = pattern(size, q.get("fill", "a")) if size >= 0 else b""
    status = q.get("s", "200+OK").replace("+", " ")
    code = int(status.split()[0])
    assert (resp.status, resp.reason) == (code, status.split(" ", 1)[1]), resp
    n, v = int(q.get("n", "0")), int(q.get("v", "10"))
    want_fields = [("content-type", "application/octet-stream")]
    want_fields += [(f"x-field-{i:03d}", chr(ord("a") + i % 26) * v) for i in range(n)]
    got = [(k.lower(), val) for k, val in resp.headers if k.lower() != "date"]
    app_fields = [
        f for f in got if f[0] not in ("content-length", "connection", "transfer-encoding")
    ]
    assert app_fields == want_fields, query_
    assert len([k for k, _ in resp.headers if k.lower() == "date"]) == 1
    if "cl" in q:
        body = body[: int(q["cl"])]
    lengths = [val for k, val in got if k == "content-length"]
    if code in (204, 304):
        assert resp.body == b""
        if code == 204:
            assert lengths == []
        return
    if q.get("how") in ("two", "write") and "cl" not in q:
        # Not one bytes item: streamed (chunked, or to the close on HTTP/1.0).
        if method != b"HEAD":
            assert resp.body == body, query_
        return
    assert lengths == [str(len(body))], (query_, got)
    if method == b"HEAD":
        assert resp.body == b""
    else:
        assert resp.body == body, query_
        assert resp.complete


def run_small(port: int, sequence, pipelined: bool) -> list[Response]:
    with Wire(port, timeout=TIMEOUT) as wire:
        if pipelined:
            wire.send(b"".join(small(q, m, v) for q, m, v in sequence))
        out = []
        for q, m, v in sequence:
            if not pipelined:
                wire.send(small(q, m, v))
            out.append(read(wire, m))
        return out


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "pipelined"])
def test_small_bodies_on_one_connection_are_byte_exact(pool, mode, pipelined):
    server = pool.get("apps.adversarial:small", *mode)
    # HTTP/1.0 responses without a length end at the close: those close the
    # connection, so the sequence is run in parts that end there.
    parts, part = [], []
    for item in SMALL:
        part.append(item)
        q, _, version = item
        if version == b"HTTP/1.0" and ("how=" in q and "cl=" not in q):
            parts.append(part)
            part = []
    parts.append(part)
    for seq in parts:
        got = run_small(server.port, seq, pipelined)
        for (q, m, v), resp in zip(seq, got, strict=True):
            expect_small(q, m, v, resp)
            with Wire(server.port, timeout=TIMEOUT) as wire:
                wire.send(small(q, m, v))
                alone = read(wire, m)
            assert shape(resp) == shape(alone), q


def test_small_bodies_after_the_hand_off_to_hyper(pool, mode):
    """A chunked request hands the connection to hyper: the small body reaches it as a
    whole body, with the same fields."""
    server = pool.get("apps.adversarial:small", *mode)
    with Wire(server.port, timeout=TIMEOUT) as wire:
        for q, m, v in SMALL[:3]:
            wire.send(small(q, m, v))
            expect_small(q, m, v, read(wire, m))
        wire.send(post_chunked(b"/?b=6&n=4", HOST, body=b"x" * 10))
        expect_small("b=6&n=4", b"POST", b"HTTP/1.1", wire.read_response())
        for q, m, v in SMALL[:24]:
            if v == b"HTTP/1.0":
                continue
            wire.send(small(q, m, v))
            expect_small(q, m, v, read(wire, m))


def test_a_declared_length_longer_than_a_small_body_ends_the_connection(pool, mode):
    server = pool.get("apps.adversarial:small", *mode)
    with Wire(server.port, timeout=TIMEOUT) as wire:
        wire.send(small("b=5&n=3"))
        expect_small("b=5&n=3", b"GET", b"HTTP/1.1", wire.read_response())
        wire.send(small("b=10&cl=20"))
        resp = wire.read_response()
        assert resp.status == 200
        assert resp.header("Content-Length") == "20"
        assert resp.body == pattern(10)
        assert not resp.complete
        assert wire.eof
