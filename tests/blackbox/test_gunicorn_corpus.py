"""gunicorn's request-parsing corpus, black-box, over a real socket (issue 3).

Every case of ``shared/conformance/gunicorn-requests/cases.json`` (read its README) is sent
to ferrule whole, line by line and byte by byte (byte by byte only for cases under 2 KiB,
to bound the run time), and answered by ``apps.hardening_apps:echo``, which reads the whole
body and records every call by the client's port.

- valid cases: each request of the case, in order, is echoed with the expected
  REQUEST_METHOD, PATH_INFO (percent-decoded bytes read as latin-1), QUERY_STRING,
  SERVER_PROTOCOL, CONTENT_TYPE / CONTENT_LENGTH, exactly the expected HTTP_* fields
  (repeats joined with ``,``; trailers never appear) and body. Cases 019-021 must not
  yield a second request. HTTP/1.1 requests without Host get ``Host: example.com``
  inserted after their request line; the unmodified bytes must get 400
  (``test_http11_without_host_is_400``).
- invalid cases: the expected status (or, for ``no-response``, nothing until the client
  gives up), then a close with nothing more; the application is never called, except
  for the head of a request whose *body* is malformed (bad chunks, forbidden trailers),
  and then it never completes a read of that body. Invalid HTTP/1.1 cases without a Host
  field also run with ``Host: x`` inserted (``test_invalid_with_host``), so that the
  missing Host alone cannot earn the expected 400; without it, a 400 is accepted in place
  of an expected 414/431 (the request has two defects and the Host rule may come first).

The README's special cases: ``valid/009`` and ``valid/027`` accept the parse or a 400 and
close. ferrule answers ``valid/009`` with 400 and close (a ``Transfer-Encoding`` whose
final coding is not ``chunked``, ``identity`` here, alongside ``Content-Length``: RFC 9112
§6.3 lets a server reject it, and issue 3 asks for it), and parses ``valid/027`` (hyper
passes the raw bytes of the request-target through, and PATH_INFO holds them read as
latin-1);
``valid/099`` and ``invalid/rfc9112_chunked_missing_final_crlf_01`` end mid-message: no
response and no completed body read while the client waits, and after the client shuts
down its side, anything but a 2xx.

gunicorn settings map to ferrule options (``SETTING_OPTIONS``, same numbers, gunicorn's
meaning); the rest make a case not applicable, skipped with the reason in
``NOT_APPLICABLE``. One server runs per option set. Known ferrule bugs are strict xfails
(``XFAIL``, ``XFAIL_WITH_HOST``), each saying what ferrule does instead.
"""

from __future__ import annotations

import base64
import json
import re
import select
import socket
import urllib.parse

import pytest
from apps.hardening_apps import calls
from apps.wire import Response, Wire
from conftest import RunningServer, require_shared, shared_dir
from conftest import ServerPool as Servers

SUB = "conformance/gunicorn-requests"
IO_TIMEOUT = 5.0  # every socket wait is bounded by this
QUIET = 0.6  # how long a "the server keeps waiting" case is watched
BYTE_SPLIT_MAX = 2048
BASE_ARGS = ("--threads", "4")  # a blocked body read never stalls the next case


def _load_cases() -> list[dict]:
    base = shared_dir()
    path = base / SUB / "cases.json" if base else None
    if path is None or not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))


CASES = _load_cases()
BY_NAME = {c["name"]: c for c in CASES}

# gunicorn setting -> ferrule option (same number, same meaning as in gunicorn).
SETTING_OPTIONS = {
    "limit_request_line": "--limit-request-line",
    "limit_request_fields": "--limit-request-fields",
    "limit_request_field_size": "--limit-request-field-size",
}

# gunicorn settings ferrule has no counterpart for: the case is not applicable.
NOT_APPLICABLE = {
    "permit_obsolete_folding": "gunicorn permit_obsolete_folding=True: ferrule always answers "
    "obs-fold with 400 (RFC 9112 §5.2) and has no option to permit it",
    "header_map": "gunicorn header_map='dangerous'/'refuse': ferrule always drops field names "
    "containing '_' (gunicorn's default header_map='drop') and has no option to change it",
    "strip_header_spaces": "gunicorn strip_header_spaces=True: ferrule always answers "
    "whitespace before the colon with 400 (RFC 9112 §5.1) and has no option to strip it",
    "casefold_http_method": "gunicorn casefold_http_method=True: ferrule never rewrites the "
    "method and has no option to upper-case it",
}

# Cases that end mid-message: the right outcome is waiting (README).
INCOMPLETE = {"valid/099", "invalid/rfc9112_chunked_missing_final_crlf_01"}
# Valid cases where a 400 and close is as acceptable as the parse (README).
PARSE_OR_400 = {"valid/009", "valid/027"}
# Valid cases whose trailing bytes must not become a second request.
NO_SECOND_REQUEST = {"valid/019", "valid/020", "valid/021"}
# Invalid cases whose request head is fine and whose body is malformed: the application
# may be called for the head, but must never complete a read of the body.
BODY_ERRORS = {"InvalidChunkSize", "InvalidChunkExtension", "ChunkMissingTerminator"}

# Known ferrule bugs, {case name: what ferrule does}; every split fails the same way.
XFAIL: dict[str, str] = {
    "valid/014": "ferrule answers 400 and closes for a raw '\"' in the request-target "
    "(hyper's URI parser rejects it); gunicorn and the corpus accept it",
    "valid/rfc9112_target_authority_connect_01": "ferrule closes the connection without "
    "any response to `CONNECT example.com:443 HTTP/1.1` and never calls the application",
    "valid/rfc9112_target_authority_ipv6_01": "ferrule closes the connection without any "
    "response to `CONNECT [::1]:443 HTTP/1.1` and never calls the application",
}
XFAIL_WITH_HOST: dict[str, str] = {
    "invalid/003c": "ferrule serves the method '-bl' (200); gunicorn rejects methods "
    "shorter than 3 characters (a valid RFC 9110 token, so this is gunicorn's policy)",
    "invalid/019": "with --forwarded-allow-ips '*', ferrule serves X-Forwarded-Proto: https "
    "plus X-Forwarded-Ssl: off (200, wsgi.url_scheme https): it ignores X-Forwarded-Ssl, "
    "so conflicting scheme headers are not rejected with 400",
}

MODES = ("whole", "lines", "bytes")


# --------------------------------------------------------------------------- settings


def server_args(case: dict) -> tuple[str, ...] | str:
    """ferrule options for the case's gunicorn settings, or the not-applicable reason."""
    settings = case["non_default_settings"]
    reasons = [NOT_APPLICABLE[k] for k in sorted(settings) if k in NOT_APPLICABLE]
    if reasons:
        return "; ".join(reasons)
    args: list[str] = []
    for key, value in sorted(settings.items()):
        if key == "limit_request_field_size" and value == "0":
            # gunicorn 26 reads 0 as "the default maximum, 8190" (the case's own comment);
            # ferrule's 0 means unlimited, so the gunicorn meaning is ferrule's default.
            continue
        if key == "permit_unconventional_http_method" and value == "True":
            # ferrule always accepts any RFC 9110 token as the method, as this does.
            continue
        if key in SETTING_OPTIONS:
            args += [SETTING_OPTIONS[key], value]
        elif key == "proxy_protocol" and value == "'auto'":
            args += ["--proxy-protocol"]
        elif key == "forwarded_allow_ips" and value == "['*']":
            args += ["--forwarded-allow-ips", "*"]
        else:  # a new setting in the corpus: make it visible, never skip silently
            return f"unmapped gunicorn setting {key}={value}"
    return tuple(args)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    require_shared(SUB)
    state = tmp_path_factory.mktemp("corpus-state")
    pool = Servers(state, *BASE_ARGS, "apps.hardening_apps:echo")
    yield pool
    pool.stop()


def server_for(servers: Servers, case: dict) -> RunningServer:
    args = server_args(case)
    if isinstance(args, str):
        pytest.skip(f"{case['name']} not applicable: {args}")
    return servers.get(*args)


# --------------------------------------------------------------------------- bytes


def raw_of(case: dict) -> bytes:
    return base64.b64decode(case["raw_b64"])


def lacks_host(req: dict) -> bool:
    return req["version"] == [1, 1] and not any(n == "HOST" for n, _ in req["headers"])


def with_host(case: dict) -> bytes:
    """The case's bytes with ``Host: example.com`` after each HTTP/1.1 request line
    that has no Host field (README)."""
    raw, pos = raw_of(case), 0
    for req in case["requests"]:
        line_end = f" {req['uri']['raw']} HTTP/{req['version'][0]}.{req['version'][1]}\r\n"
        at = raw.index(line_end.encode("latin-1"), pos) + len(line_end)
        if lacks_host(req):
            raw = raw[:at] + b"Host: example.com\r\n" + raw[at:]
        pos = at
    return raw


def invalid_lacks_host(raw: bytes) -> bool:
    """An HTTP/1.1 first request line and no Host field in the head."""
    first, _, rest = raw.partition(b"\r\n")
    head = rest.partition(b"\r\n\r\n")[0]
    return first.endswith(b" HTTP/1.1") and not re.search(rb"(?im)^host[ \t]*:", head)


def insert_after_first_line(raw: bytes, field: bytes) -> bytes:
    first, sep, rest = raw.partition(b"\r\n")
    return first + sep + field + rest


def pieces(raw: bytes, mode: str) -> list[bytes]:
    if mode == "whole":
        return [raw]
    if mode == "lines":
        return [p for p in re.split(rb"(?<=\n)", raw) if p]
    return [raw[i : i + 1] for i in range(len(raw))]


def send(w: Wire, raw: bytes, mode: str, stop_on_answer: bool) -> None:
    """Send ``raw`` split as ``mode`` says, pausing between pieces so they arrive apart.

    With ``stop_on_answer``, stop as soon as the server writes or closes (a client
    would, and it keeps a reset from destroying the answer already sent).
    """
    delay = {"whole": 0.0, "lines": 0.002, "bytes": 0.0003}[mode]
    for i, piece in enumerate(pieces(raw, mode)):
        if i:
            readable, _, _ = select.select([w.sock], [], [], delay)
            if readable and stop_on_answer:
                return
        try:
            w.send(piece)
        except OSError:  # the server closed on us: what it sent is still readable
            return


def quiet_for(w: Wire, seconds: float) -> bytes:
    """Bytes the server sends within ``seconds`` (b"" when it stays silent and open);
    raises EOFError if it closes."""
    readable, _, _ = select.select([w.sock], [], [], seconds)
    if not readable:
        return b""
    try:
        data = w.sock.recv(65536)
    except ConnectionResetError:
        data = b""
    if not data:
        raise EOFError("server closed the connection while it should have waited")
    return data


class Conn(Wire):
    """A connection with TCP_NODELAY that knows which application calls are its own:
    those recorded with its port after it opened (ephemeral ports get reused)."""

    def __init__(self, servers: Servers, port: int) -> None:
        super().__init__(port, timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.state = servers.state
        self.mark = len(calls(self.state))
        self.port_str = str(self.local_port)

    def app_calls(self, event: str | None = None) -> list[dict]:
        port = self.port_str
        return [
            c
            for c in calls(self.state)[self.mark :]
            if c["port"] == port and event in (None, c["event"])
        ]


def status_of(data: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- expectations


def split_target(method: str, target: str) -> tuple[set[str], str]:
    """(acceptable PATH_INFO values, QUERY_STRING) for a request-target.

    origin-form: the path before ``?`` (a ``#fragment`` dropped), percent-decoded as
    latin-1. absolute-form: the path of the URI ("/" when empty). ``*``: ``*``.
    authority-form (CONNECT): WSGI defines nothing, so "" or "/" or the authority.
    """
    if target == "*":
        return {"*"}, ""
    if method == "CONNECT" and not target.startswith("/"):
        return {"", "/", target}, ""
    if not target.startswith("/"):
        parts = urllib.parse.urlsplit(target)
        path, query = parts.path or "/", parts.query
    else:
        target = target.partition("#")[0]
        path, _, query = target.partition("?")
    decoded = urllib.parse.unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    return {decoded}, query


def expected_fields(req: dict, host_inserted: bool) -> dict[str, str]:
    headers = list(req["headers"])
    if host_inserted:
        headers.insert(0, ["HOST", "example.com"])
    env: dict[str, str] = {}
    for name, value in headers:
        if name in ("CONTENT-TYPE", "CONTENT-LENGTH"):
            key = name.replace("-", "_")
        else:
            key = "HTTP_" + name.replace("-", "_")
        env[key] = f"{env[key]},{value}" if key in env else value
    return env


def check_echo(resp: Response, req: dict, host_inserted: bool) -> None:
    assert resp.status == 200, f"{resp.status} {resp.body[:300]!r}"
    got = json.loads(resp.body)
    env, body = got["environ"], got["body"]
    paths, query = split_target(req["method"], req["uri"]["raw"])
    version = "HTTP/{}.{}".format(*req["version"])
    assert env["REQUEST_METHOD"] == req["method"]
    assert env["PATH_INFO"] in paths, f"PATH_INFO {env['PATH_INFO']!r} not in {paths}"
    assert env.get("SCRIPT_NAME", "") == ""
    assert env.get("QUERY_STRING", "") == query
    assert env["SERVER_PROTOCOL"] == version
    want = expected_fields(req, host_inserted)
    got_fields = {
        k: v for k, v in env.items() if k.startswith("HTTP_") or k.startswith("CONTENT_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):  # PEP 3333: absent or empty
        if key not in want and got_fields.get(key) == "":
            del got_fields[key]
    assert got_fields == want
    want_body = req["body"]["latin1"] if isinstance(req["body"], dict) else req["body"]
    assert body == want_body


# --------------------------------------------------------------------------- parameters


def _params(names: list[str], xfails: dict[str, str]) -> list:
    out = []
    for name in names:
        size = len(raw_of(BY_NAME[name]))
        for mode in MODES:
            if mode == "bytes" and size >= BYTE_SPLIT_MAX:
                continue
            marks = []
            if name in xfails:
                marks.append(pytest.mark.xfail(strict=True, reason=xfails[name]))
            out.append(pytest.param(name, mode, id=f"{name}-{mode}", marks=marks))
    return out


VALID = [c["name"] for c in CASES if c["kind"] == "valid"]
INVALID = [c["name"] for c in CASES if c["kind"] == "invalid"]
NO_HOST = [n for n in VALID if any(lacks_host(r) for r in BY_NAME[n]["requests"])]
INVALID_NO_HOST = [
    n for n in INVALID if n not in INCOMPLETE and invalid_lacks_host(raw_of(BY_NAME[n]))
]


def test_corpus_is_complete():
    """The corpus is there, whole: 137 cases, and 25 HTTP/1.1 valid cases without Host."""
    require_shared(SUB)
    assert len(CASES) == 137
    assert len(NO_HOST) == 25


# --------------------------------------------------------------------------- valid


@pytest.mark.parametrize(("name", "mode"), _params(VALID, XFAIL))
def test_valid(servers, name, mode):
    case = BY_NAME[name]
    server = server_for(servers, case)
    raw = with_host(case)
    if name in INCOMPLETE:
        return check_incomplete(servers, server, raw, mode)
    with Conn(servers, server.port) as w:
        send(w, raw, mode, stop_on_answer=False)
        first = w.read_response()
        if name in PARSE_OR_400 and first.status == 400:
            assert w.closed_by_server(IO_TIMEOUT), "no close after the 400"
            assert w.app_calls() == [], "the application saw a rejected request"
            return
        responses = [first]
        while len(responses) < len(case["requests"]):
            responses.append(w.read_response())
        for resp, req in zip(responses, case["requests"], strict=True):
            check_echo(resp, req, host_inserted=lacks_host(req))
        if name in NO_SECOND_REQUEST:
            assert w.closed_by_server(IO_TIMEOUT), "trailing bytes were answered"
            begun = w.app_calls("begin")
            assert len(begun) == 1, begun


def check_incomplete(servers: Servers, server: RunningServer, raw: bytes, mode: str) -> None:
    """A message that ends early: silence while the client waits; no completed body read;
    after the client gives up (shuts down its side), anything but a success."""
    with Conn(servers, server.port) as w:
        send(w, raw, mode, stop_on_answer=True)
        early = quiet_for(w, QUIET)
        assert early == b"", f"answered an incomplete message: {early[:200]!r}"
        w.sock.shutdown(socket.SHUT_WR)
        rest = w.read_to_eof(IO_TIMEOUT)
        status = status_of(rest)
        assert status is None or status >= 400, f"answered {rest[:200]!r}"
        done = w.app_calls("done")
        assert done == [], f"the application read a truncated body: {done}"


@pytest.mark.parametrize("name", NO_HOST)
def test_http11_without_host_is_400(servers, name):
    """RFC 9112 §3.2: the unmodified bytes of an HTTP/1.1 request without Host get 400
    (requests before it on the connection, like valid/022's HTTP/1.0 one, are served)."""
    case = BY_NAME[name]
    server = server_for(servers, case)
    reqs = case["requests"]
    served = next(i for i, req in enumerate(reqs) if lacks_host(req))
    with Conn(servers, server.port) as w:
        send(w, raw_of(case), "whole", stop_on_answer=False)
        for req in reqs[:served]:
            check_echo(w.read_response(), req, host_inserted=False)
        resp = w.read_response()
        assert resp.status == 400
        assert w.closed_by_server(IO_TIMEOUT)
        assert len(w.app_calls("begin")) == served


# --------------------------------------------------------------------------- invalid


def check_invalid(servers: Servers, case: dict, raw: bytes, mode: str) -> None:
    server = server_for(servers, case)
    name, expect = case["name"], case["expect"]
    if name in INCOMPLETE:
        return check_incomplete(servers, server, raw, mode)
    with Conn(servers, server.port) as w:
        send(w, raw, mode, stop_on_answer=True)
        if expect == "no-response":
            early = quiet_for(w, QUIET)
            assert early == b"", f"answered an incomplete head: {early[:200]!r}"
            w.sock.shutdown(socket.SHUT_WR)
            rest = w.read_to_eof(IO_TIMEOUT)
            status = status_of(rest)
            assert status is None or status >= 400, f"answered {rest[:200]!r}"
        else:
            # A Host-less HTTP/1.1 request with another defect may get the 400 of the
            # Host rule first; test_invalid_with_host then checks the exact status.
            accept = {int(expect)} | ({400} if invalid_lacks_host(raw) else set())
            resp = w.read_response()
            assert resp.status in accept, f"{resp.status} {resp.body[:200]!r}"
            extra = w.read_to_eof(IO_TIMEOUT)
            assert extra == b"", f"more after the error: {extra[:200]!r}"
        seen = w.app_calls()
    body_error = case["error"] in BODY_ERRORS or name.startswith(
        "invalid/rfc9110_trailer_forbidden"
    )
    if body_error:
        first_path = raw.split(b" ", 2)[1].decode("latin-1")
        assert all(c["event"] == "begin" and c["path"] == first_path for c in seen), seen
    else:
        assert seen == [], f"the application was called: {seen}"


@pytest.mark.parametrize(("name", "mode"), _params(INVALID, XFAIL))
def test_invalid(servers, name, mode):
    case = BY_NAME[name]
    check_invalid(servers, case, raw_of(case), mode)


@pytest.mark.parametrize(("name", "mode"), _params(INVALID_NO_HOST, XFAIL_WITH_HOST))
def test_invalid_with_host(servers, name, mode):
    """The same invalid case with ``Host: x`` added: the 400 must come from the defect
    the case is about, not from the missing Host."""
    case = BY_NAME[name]
    check_invalid(servers, case, insert_after_first_line(raw_of(case), b"Host: x\r\n"), mode)
