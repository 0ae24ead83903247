"""Access log lines match gunicorn's, field for field, for the same requests.

gunicorn (a test dependency) and ferrule serve the same application with
``--access-logfile -`` and the default format; each gets the same requests
from the same client, and the lines must agree in every field but the time
(same format, different instant).
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from apps.procs import free_port

BLACKBOX = Path(__file__).resolve().parent
TIMEOUT = 20
CLF_TIME = re.compile(r"^\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]$")
REQUESTS = [
    ("GET", "/plain?x=1&y=%20z", {}, None),
    ("POST", "/form", {"Referer": "http://example.test/page", "User-Agent": "probe/1.0"}, b"a=1"),
    ("GET", "/auth", {"Authorization": "Basic Ym9iOnNlY3JldA=="}, None),
    ("HEAD", "/head", {}, None),
]


def serve(argv: list[str], port: int, log: Path) -> subprocess.Popen:
    out = log.open("wb")
    proc = subprocess.Popen(argv, cwd=BLACKBOX, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"{shlex.join(argv)} exited:\n{log.read_text()}") from None
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"{shlex.join(argv)} did not listen:\n{log.read_text()}")


def access_lines(argv: list[str], port: int, log: Path) -> list[str]:
    proc = serve(argv, port, log)
    try:
        for method, path, headers, body in REQUESTS:
            headers = {"User-Agent": "access-log-test", **headers}
            r = requests.request(
                method,
                f"http://127.0.0.1:{port}{path}",
                headers=headers,
                data=body,
                timeout=TIMEOUT,
            )
            assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("127.0.0.1 ")]
    assert len(lines) == len(REQUESTS), log.read_text()
    return lines


def fields(line: str) -> list[str]:
    """Split a CLF line into its fields, keeping quoted and bracketed ones whole."""
    return re.findall(r'"[^"]*"|\[[^\]]*\]|\S+', line)


@pytest.mark.parametrize(
    "fmt", [None, '%(h)s %(m)s %(U)s %(q)s %(H)s %(s)s %(B)s "%({user-agent}i)s"']
)
def test_lines_match_gunicorn(tmp_path, fmt):
    pytest.importorskip("gunicorn")
    extra = [] if fmt is None else ["--access-logformat", fmt]

    def served_by(server: str) -> list[str]:
        port = free_port()
        argv = [sys.executable, "-m", server, "-b", f"127.0.0.1:{port}", "--access-logfile", "-"]
        return access_lines(
            argv + extra + ["apps.fixed_body:app"], port, tmp_path / f"{server}.log"
        )

    gunicorn = served_by("gunicorn")
    ferrule = served_by("ferrule")
    for ours, theirs in zip(ferrule, gunicorn, strict=True):
        a, b = fields(ours), fields(theirs)
        assert len(a) == len(b), (ours, theirs)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if CLF_TIME.match(x):
                assert CLF_TIME.match(y), (ours, theirs)
                continue
            assert x == y, f"field {i}: ferrule {x!r} vs gunicorn {y!r}\n{ours}\n{theirs}"


def test_json_lines_have_the_same_fields(ferrule_server):
    srv = ferrule_server("--access-logfile", "-", "--access-log-json", "apps.environ_echo:app")
    requests.get(f"{srv.url}/j?k=v", headers={"User-Agent": "json/1"}, timeout=TIMEOUT)
    line = srv.wait_for_log('"a": "json/1"')
    record = json.loads(next(ln for ln in line.splitlines() if ln.startswith("{")))
    assert record["h"] == "127.0.0.1"
    assert record["r"] == "GET /j?k=v HTTP/1.1"
    assert record["s"] == "200"
    assert set(record) == {"h", "l", "u", "t", "r", "s", "b", "f", "a"}
