"""The ``ferrule`` command line as a user runs it: usage errors (exit 2), application
load errors (exit 4, one line, no traceback), options before and after the app spec,
signals (exit 0 after in-flight requests finish), and what reaches the application.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from apps import wait_events

BLACKBOX = Path(__file__).resolve().parent
PY = sys.executable
LISTENING = re.compile(rb"Listening at: http://([^\s]+):(\d+)")
TIMEOUT = 60


def run_cli(*args: str, cwd: Path = BLACKBOX, script: bool = False, env=None):
    """Run the CLI to completion (bounded); a server that starts instead is killed.

    ``env``: variables to set on top of this process's environment."""
    argv = [str(Path(PY).with_name("ferrule"))] if script else [PY, "-m", "ferrule"]
    environ = {**os.environ, **(env or {})}
    try:
        return subprocess.run(
            [*argv, *args], cwd=cwd, capture_output=True, timeout=TIMEOUT, text=True, env=environ
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"ferrule {' '.join(args)} kept running (it should have exited): {exc}")


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize("script", [False, True], ids=["python-m", "script"])
def test_help_exits_0(script):
    if script:
        assert Path(PY).with_name("ferrule").exists(), "the `ferrule` script is not installed"
    out = run_cli("--help", script=script)
    assert out.returncode == 0, out.stderr
    for option in ("--bind", "--threads", "--root-path", "--log-level"):
        assert option in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--no-such-option", "apps.cli_apps:app"],
        ["--threads", "many", "apps.cli_apps:app"],
        ["--threads"],
        ["apps.cli_apps:app", "--bind"],
        ["apps.cli_apps:app", "apps.environ_echo:app", "extra"],
    ],
    ids=[
        "no-app",
        "unknown-option",
        "threads-not-a-number",
        "missing-value",
        "bind-missing-value",
        "extra-args",
    ],
)
def test_bad_usage_exits_2(args):
    out = run_cli(*args)
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr.strip()
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("no_such_module_xyz:app", "no_such_module_xyz"),
        ("apps.no_such_submodule:app", "no_such_submodule"),
        ("apps.cli_apps:missing_attr", "missing_attr"),
        ("apps.cli_apps:not_callable", "not_callable"),
        ("apps.broken_import:app", "broken_import"),
    ],
)
def test_app_load_error_exits_4_with_one_line(spec, name):
    out = run_cli("--bind", "127.0.0.1:0", spec)
    assert out.returncode == 4, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert name in lines[0]
    assert "Listening at" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-k", "gevent"], "one worker type"),
        (["--worker-class", "uvicorn.workers.UvicornWorker"], "not ASGI: drop -k"),
        (["--bind", "http://127.0.0.1:8080/"], "not a URL: write 127.0.0.1:8080"),
        (["--bind", "8080"], "write :8080 for a port"),
    ],
    ids=["gevent", "asgi", "url", "bare-port"],
)
def test_gunicorn_habits_get_one_line_naming_the_fix(args, needle):
    out = run_cli(*args, "apps.cli_apps:app")
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert needle in out.stderr.splitlines()[0], out.stderr
    assert "Traceback" not in out.stderr


def test_print_config_names_where_each_value_came_from():
    out = run_cli("--print-config", "-k", "gthread", "apps.cli_apps:app", env={"PORT": "18599"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert 'worker-class = "gthread"  # command line' in lines, out.stdout
    assert 'bind = ["0.0.0.0:18599"]  # $PORT' in lines, out.stdout
    out = run_cli("--print-config", "apps.cli_apps:app", env={"PORT": ""})
    assert 'bind = ["127.0.0.1:8000"]  # default' in out.stdout.splitlines(), out.stdout


# --------------------------------------------------------------------------- options


def test_options_after_the_app_spec(ferrule_server):
    srv = ferrule_server(
        "apps.environ_echo:app", "--threads", "3", "--root-path", "/r", "--log-level", "debug"
    )
    env = requests.get(f"{srv.url}/r/x", timeout=TIMEOUT).json()["environ"]
    assert env["wsgi.multithread"] is True
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/r", "/x")


def _launch(argv: list[str], cwd: Path = BLACKBOX):
    fd, name = tempfile.mkstemp(prefix="ferrule-cli-", suffix=".log")
    proc = subprocess.Popen(argv, cwd=cwd, stdout=fd, stderr=fd)
    os.close(fd)
    log = Path(name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = LISTENING.search(log.read_bytes())
        if match:
            return proc, int(match.group(2)), log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    pytest.fail(f"ferrule did not listen: rc={proc.returncode}\n{log.read_text()}")


def test_bind_after_the_app_spec():
    proc, port, log = _launch(
        [PY, "-m", "ferrule", "apps.environ_echo:app", "--bind", "127.0.0.1:0", "--threads=2"]
    )
    try:
        env = requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).json()["environ"]
        assert env["SERVER_PORT"] == str(port)
        assert env["wsgi.multithread"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.unlink()


def test_process_environment_reaches_the_app(ferrule_server):
    srv = ferrule_server("apps.cli_apps:app", env={"FERRULE_TEST_MARKER": "marker-123"})
    r = requests.get(f"{srv.url}/osenv?name=FERRULE_TEST_MARKER", timeout=TIMEOUT)
    assert r.text == "marker-123"


def test_cwd_is_on_sys_path_and_nothing_is_written_there(ferrule_server, tmp_path):
    (tmp_path / "myapp.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'from the cwd']\n"
    )
    srv = ferrule_server("myapp:app", cwd=tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert requests.get(srv.url, timeout=TIMEOUT).text == "from the cwd"
    assert srv.stop() == 0
    assert sorted(os.listdir(tmp_path)) == ["myapp.py"]


def test_threads_run_requests_concurrently(ferrule_server):
    srv = ferrule_server("apps.cli_apps:app", "--threads", "2")
    results: list[str] = []

    def hit():
        results.append(requests.get(f"{srv.url}/barrier", timeout=TIMEOUT).text)

    threads = [threading.Thread(target=hit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert results == ["met", "met"]


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_stops_idle_server_with_exit_0(ferrule_server, sig):
    srv = ferrule_server("apps.cli_apps:app")
    assert requests.get(srv.url, timeout=TIMEOUT).text == "cli app"
    srv.proc.send_signal(sig)
    try:
        rc = srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ferrule still running 30 s after {sig!r}:\n{srv.log()}")
    assert rc == 0, srv.log()
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_lets_in_flight_request_finish(ferrule_server, tmp_path, sig):
    srv = ferrule_server("apps.responses:app", env={"FERRULE_TEST_STATE": str(tmp_path)})
    result: dict = {}

    def client():
        try:
            r = requests.get(f"{srv.url}/slow?s=3&t=slow", timeout=TIMEOUT)
            result["response"] = (r.status_code, r.content)
        except Exception as exc:  # reported below
            result["error"] = repr(exc)

    t = threading.Thread(target=client)
    t.start()
    assert "start" in wait_events(tmp_path, "slow", "start", settle=0)
    srv.proc.send_signal(sig)
    t.join(TIMEOUT)
    try:
        rc = srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ferrule still running 30 s after {sig!r}:\n{srv.log()}")
    assert result.get("response") == (200, b"slow request finished"), (result, srv.log())
    assert rc == 0, srv.log()
