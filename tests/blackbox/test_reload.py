"""--reload: workers restart when a Python source file changes."""

from __future__ import annotations

import time

import requests

TIMEOUT = 20
APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [{body!r}]
"""


def write_app(folder, body: bytes) -> None:
    (folder / "reloadme.py").write_text(APP.format(body=body))


def wait_for_body(url: str, expected: bytes, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url, timeout=TIMEOUT).content
        except requests.RequestException as exc:
            last = repr(exc)
        if last == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"still {last!r}, wanted {expected!r}")


def test_source_change_reloads_and_a_broken_edit_waits(ferrule_server, tmp_path):
    write_app(tmp_path, b"v1")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("home = /usr\n")
    srv = ferrule_server("--reload", "reloadme:app", cwd=tmp_path)
    srv.wait_for_log("Reloading on changes")
    assert requests.get(srv.url, timeout=TIMEOUT).content == b"v1"

    # A file inside a virtualenv is not the application's source.
    (tmp_path / ".venv" / "ignored.py").write_text("x = 1\n")
    time.sleep(1.0)
    assert "Reloading:" not in srv.log()

    write_app(tmp_path, b"v2")
    srv.wait_for_log("reloadme.py changed", timeout=30)
    wait_for_body(srv.url, b"v2")

    (tmp_path / "reloadme.py").write_text("def app(:\n")
    srv.wait_for_log("waiting for a source change", timeout=30)
    assert srv.proc.poll() is None, "a broken edit must not stop the master"

    write_app(tmp_path, b"v3")
    wait_for_body(srv.url, b"v3")
    assert srv.stop() == 0


def test_reload_and_preload_conflict(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ferrule", "--reload", "--preload", "x:app"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--preload" in out.stderr
