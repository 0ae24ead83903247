"""Load benchmark: ferrule against other WSGI servers and a no-Python hyper "limit".

``make bench`` (or ``.venv/bin/python benchmarks/run.py`` after ``make build-dev``) runs
every server on every scenario, interleaved, 3 repetitions, and writes the medians to
``benchmarks/results/RESULTS.md`` and ``results.png``; each run's raw figures go to
``benchmarks/results/raw/`` (not committed). ``benchmarks/README.md`` explains the method.

The script runs in two stages. Under any Python it checks the tools (wrk, taskset),
creates ``benchmarks/.venv`` with the peers from PyPI and builds the limit server with
cargo; then it re-executes itself with ``benchmarks/.venv/bin/python`` (which has
matplotlib) to run the benchmark. ferrule itself is the one built into the project's
``.venv`` by ``make build-dev`` (``--ferrule`` names another ``ferrule`` executable).

Smoke run (seconds, not minutes)::

    .venv/bin/python benchmarks/run.py --duration 1 --warmup 1 --reps 1 \\
        --servers ferrule,limit,granian --scenarios hello-c64,echo --out /tmp/bench-smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv"
VENV_PY = VENV / "bin" / "python"
APPS = BENCH / "apps"
LIMIT_DIR = BENCH / "limit"
LIMIT_BIN = LIMIT_DIR / "target" / "release" / "ferrule-bench-limit"
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
DEFAULT_FERRULE = ROOT / ".venv" / "bin" / "ferrule"
STAMP = VENV / ".ferrule-bench-installed.json"
IN_VENV_FLAG = "FERRULE_BENCH_STAGE2"

MIB = 1024 * 1024
FILE_SIZE = MIB
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Peers installed from PyPI into benchmarks/.venv (Flask and Django are pinned to the
# project .venv's versions, so ferrule and the peers run the same framework code).
PEER_PACKAGES = ["setuptools<81", "gunicorn", "granian", "waitress", "fastwsgi", "matplotlib"]
FRAMEWORKS = ["flask", "django"]

WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'FERRULE_BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    module: str  # MODULE:APP under benchmarks/apps
    path: str
    connections: int
    method: str = "GET"
    body: bytes = b""
    expect: bytes = b""  # the answer's body must contain this
    expect_length: int | None = None  # ... or be exactly this long
    body_size: int | None = None  # response body size, for MiB/s
    python_only: bool = False  # the limit server has no framework to run
    title: str = ""


SCENARIOS = [
    Scenario(
        "hello-c64", "hello:app", "/", 64, expect=b"Hello, World!",
        title="hello, 64 connections: `Hello, World!` (13 bytes)",
    ),
    Scenario(
        "hello-c1", "hello:app", "/", 1, expect=b"Hello, World!",
        title="hello, 1 connection: the same, one request at a time",
    ),
    Scenario(
        "echo", "echo:app", "/echo", 64, method="POST", body=b"a" * 4096, expect=b"4096",
        title="echo: a 4 KiB POST body read from `wsgi.input`, 64 connections",
    ),
    Scenario(
        "big", "big:app", "/big", 64, expect_length=MIB, body_size=MIB,
        title="big: 1 MiB in 16 chunks of 64 KiB with Content-Length, 64 connections",
    ),
    Scenario(
        "file", "file:app", "/file", 64, expect_length=FILE_SIZE, body_size=FILE_SIZE,
        title="file: a 1 MiB file through `wsgi.file_wrapper`, 64 connections",
    ),
    Scenario(
        "flask", "flask_app:app", "/api/items", 64, expect=b'"count"', python_only=True,
        title="flask: a JSON endpoint of a small Flask app, 64 connections",
    ),
    Scenario(
        "django", "djangoproj.wsgi:application", "/", 64, expect=b"Catalogue",
        python_only=True,
        title="django: a template view of a small Django project (DEBUG off, no database),"
        " 64 connections",
    ),
]  # fmt: skip
SCENARIO_NAMES = [scenario.name for scenario in SCENARIOS]


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    name: str
    label: str
    python: bool = True  # a WSGI server (runs the Python apps)

    def command(self, ferrule: Path, address: str, module: str) -> list[str]:
        host, port = address.rsplit(":", 1)
        bin_ = VENV / "bin"
        if self.name == "ferrule":
            return [str(ferrule), "-w", "1", "--threads", "1", "-b", address, module]
        if self.name == "limit":
            return [str(LIMIT_BIN), "--bind", address, "--file", str(bench_file())]
        if self.name == "gunicorn-sync":
            return [str(bin_ / "gunicorn"), "-w", "1", "-k", "sync", "-b", address, module]
        if self.name == "gunicorn-gthread":
            return [
                str(bin_ / "gunicorn"), "-w", "1", "-k", "gthread", "--threads", "4",
                "-b", address, module,
            ]  # fmt: skip
        if self.name == "granian":
            return [
                str(bin_ / "granian"), "--interface", "wsgi", "--workers", "1",
                "--host", host, "--port", port, module,
            ]  # fmt: skip
        if self.name == "waitress":
            return [str(bin_ / "waitress-serve"), f"--listen={address}", "--threads=4", module]
        if self.name in ("bjoern", "fastwsgi"):
            return [str(VENV_PY), str(BENCH / "peer_server.py"), self.name, address, module]
        raise ValueError(self.name)


SERVERS = [
    Server("ferrule", "ferrule"),
    Server("limit", "limit: hyper, no Python", python=False),
    Server("fastwsgi", "fastwsgi"),
    Server("bjoern", "bjoern"),
    Server("granian", "granian"),
    Server("waitress", "waitress (4 threads)"),
    Server("gunicorn-gthread", "gunicorn gthread (4 threads)"),
    Server("gunicorn-sync", "gunicorn sync"),
]
SERVER_NAMES = [server.name for server in SERVERS]
PYPI_NAME = {"gunicorn-sync": "gunicorn", "gunicorn-gthread": "gunicorn"}


def bench_file() -> Path:
    return Path(os.environ.get("FERRULE_BENCH_FILE", "/tmp/ferrule-bench-1MiB.bin"))


def ferrule_build(ferrule: Path) -> str:
    """Path, size and mtime of the extension module the ferrule executable imports.

    Read before and after the run: another checkout's `make build-dev` can replace it.
    """
    python = ferrule.parent / "python"
    probe = "import ferrule._ferrule as f, os; s = os.stat(f.__file__)\n"
    probe += "print(f.__file__, s.st_size, int(s.st_mtime))"
    result = run_quiet([str(python), "-c", probe]) if python.exists() else None
    if result is None or result.returncode != 0:
        return "unknown"
    path, size, mtime = result.stdout.split()
    stamp = dt.datetime.fromtimestamp(int(mtime), dt.timezone.utc)
    return f"{path} ({int(size):,} bytes, built {stamp:%Y-%m-%d %H:%M:%S} UTC)"


def git_head() -> str:
    result = run_quiet(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return result.stdout.strip() if result.returncode == 0 else "unknown"


# --------------------------------------------------------------------------- stage 1


def run_quiet(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, text=True, capture_output=True, **kwargs)


def check_tools() -> None:
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if "wrk" in missing:
        print("benchmarks: wrk is missing; install Debian's package:\n    apt-get install -y wrk")
    if "taskset" in missing:
        print("benchmarks: taskset is missing; install it:\n    apt-get install -y util-linux")
    if missing:
        sys.exit(1)


def have_libev() -> bool:
    return run_quiet(["dpkg", "-s", "libev-dev"]).returncode == 0


def framework_pins() -> list[str]:
    """Flask and Django at the versions ferrule's own environment (the project .venv) has."""
    if not PROJECT_PY.exists():
        return FRAMEWORKS
    probe = (
        "import importlib.metadata as m\n"
        f"for name in {FRAMEWORKS!r}:\n"
        "    try: print(name + '==' + m.version(name))\n"
        "    except m.PackageNotFoundError: print(name)\n"
    )
    result = run_quiet([str(PROJECT_PY), "-c", probe])
    return result.stdout.split() if result.returncode == 0 else FRAMEWORKS


def pip_install(packages: list[str]) -> bool:
    print(f"benchmarks: pip install {' '.join(packages)}", flush=True)
    result = subprocess.run([str(VENV_PY), "-m", "pip", "install", "--quiet", *packages])
    return result.returncode == 0


def ensure_venv(reinstall: bool) -> None:
    """Create benchmarks/.venv and install the peers (skipped when already done)."""
    if not VENV_PY.exists():
        print(f"benchmarks: creating {VENV.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    wanted = {"packages": PEER_PACKAGES + framework_pins(), "bjoern": have_libev()}
    done = json.loads(STAMP.read_text()) if STAMP.exists() else None
    if done == wanted and not reinstall:
        return
    failed = []
    if not pip_install(wanted["packages"]):
        # Install one by one so that one broken peer does not take the others with it.
        failed = [pkg for pkg in wanted["packages"] if not pip_install([pkg])]
    if wanted["bjoern"]:
        if not pip_install(["bjoern"]):
            failed.append("bjoern")
    if failed:
        print(f"benchmarks: could not install {', '.join(failed)}; those servers are skipped")
    else:
        STAMP.write_text(json.dumps(wanted))


def bjoern_note() -> None:
    if not have_libev():
        print(
            "benchmarks: NOTE: bjoern is skipped: it builds against Debian's libev-dev, which is"
            " not installed. To include it:\n    apt-get install -y libev-dev\n"
            "and run the benchmark again.",
            flush=True,
        )


def build_limit() -> bool:
    if shutil.which("cargo") is None:
        print("benchmarks: NOTE: cargo not found; the limit server is skipped")
        return False
    print("benchmarks: cargo build --release (benchmarks/limit)", flush=True)
    result = subprocess.run(
        [
            "cargo",
            "build",
            "--release",
            "--quiet",
            "--manifest-path",
            str(LIMIT_DIR / "Cargo.toml"),
        ]
    )
    return result.returncode == 0 and LIMIT_BIN.exists()


def stage1(args: argparse.Namespace, argv: list[str]) -> None:
    check_tools()
    cpus = os.sched_getaffinity(0)
    if (
        args.server_cpu not in cpus
        or args.client_cpu not in cpus
        or args.server_cpu == args.client_cpu
    ):
        sys.exit(
            f"benchmarks: needs two distinct CPUs for the server ({args.server_cpu}) and wrk"
            f" ({args.client_cpu}); this process may use {sorted(cpus)}"
            " (see --server-cpu, --client-cpu)"
        )
    ensure_venv(args.reinstall)
    if "bjoern" in args.servers:
        bjoern_note()
    if "limit" in args.servers and not build_limit():
        print("benchmarks: NOTE: the limit server failed to build; it is skipped")
    env = dict(os.environ, **{IN_VENV_FLAG: "1"})
    env.pop("VIRTUAL_ENV", None)
    os.execve(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *argv], env)


# --------------------------------------------------------------------------- /proc


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (through every thread's children list)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
            except OSError:
                pass
    return found


def cpu_ticks(pid: int) -> int:
    """user + sys clock ticks of the tree, with the reaped children's (cutime, cstime)."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state is fields[0]; utime, stime, cutime, cstime are 11..14
        total += sum(int(value) for value in fields[11:15])
    return total


def peak_rss_kib(pid: int) -> tuple[int, int]:
    """Sum of VmHWM over the tree, and the number of processes in it."""
    total, members = 0, process_tree(pid)
    for member in members:
        try:
            with open(f"/proc/{member}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total, len(members)


# --------------------------------------------------------------------------- one run


class ServerFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def server_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FERRULE_", "GUNICORN", "GRANIAN_", "DJANGO_", "WEB_CONC"))
        and key not in ("VIRTUAL_ENV", "PYTHONPATH", IN_VENV_FLAG)
    }
    env["PYTHONPATH"] = str(APPS)
    env["FERRULE_BENCH_FILE"] = str(bench_file())
    env["DJANGO_SETTINGS_MODULE"] = "djangoproj.settings"
    return env


def check_answer(scenario: Scenario, port: int) -> dict[str, str]:
    """One request like wrk's; the answer must be a 200 with the expected body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        headers = {"Content-Type": "application/octet-stream"} if scenario.body else {}
        connection.request(scenario.method, scenario.path, body=scenario.body, headers=headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise ServerFailed(f"answered {response.status} to {scenario.method} {scenario.path}")
    if scenario.expect and scenario.expect not in body:
        raise ServerFailed(f"unexpected body: {body[:80]!r}")
    if scenario.expect_length is not None and len(body) != scenario.expect_length:
        raise ServerFailed(f"body of {len(body)} bytes, expected {scenario.expect_length}")
    return {key.lower(): value for key, value in response.getheaders()}


def wait_ready(process: subprocess.Popen[bytes], scenario: Scenario, port: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"exited with status {process.returncode} before answering")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        return check_answer(scenario, port)
    raise ServerFailed("not listening after 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; end any straggler of its group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def wrk(scenario: Scenario, port: int, seconds: int, script: Path, cpu: int) -> tuple[dict, str]:
    command = [
        "taskset", "-c", str(cpu), "wrk", "-t1", f"-c{scenario.connections}",
        f"-d{seconds}s", "--latency", "-s", str(script), f"http://{HOST}:{port}{scenario.path}",
    ]  # fmt: skip
    result = run_quiet(command, timeout=seconds + 60)
    for line in result.stdout.splitlines():
        if line.startswith("FERRULE_BENCH "):
            return json.loads(line.split(" ", 1)[1]), result.stdout
    raise ServerFailed(f"wrk failed ({result.returncode}): {result.stderr.strip()[:300]}")


def write_wrk_script(scenario: Scenario, folder: Path) -> Path:
    lines = []
    if scenario.method != "GET":
        lines.append(f'wrk.method = "{scenario.method}"')
    if scenario.body:
        lines.append(f'wrk.body = string.rep("a", {len(scenario.body)})')
        lines.append('wrk.headers["Content-Type"] = "application/octet-stream"')
    script = folder / f"wrk-{scenario.name}.lua"
    script.write_text("\n".join(lines) + WRK_DONE)
    return script


def one_run(
    server: Server, scenario: Scenario, args: argparse.Namespace, log_dir: Path, rep: int
) -> dict[str, Any]:
    port = free_port()
    address = f"{HOST}:{port}"
    command = server.command(args.ferrule, address, scenario.module)
    record: dict[str, Any] = {
        "server": server.name, "scenario": scenario.name, "rep": rep, "command": command,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    log_path = log_dir / f"{server.name}-{scenario.name}-{rep}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["taskset", "-c", str(args.server_cpu), *command],
            cwd=APPS,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            headers = wait_ready(process, scenario, port)
            record["file_wrapper"] = headers.get("x-file-wrapper")
            script = log_dir / f"wrk-{scenario.name}.lua"
            if args.warmup > 0:
                wrk(scenario, port, args.warmup, script, args.client_cpu)
            before = cpu_ticks(process.pid)
            figures, output = wrk(scenario, port, args.duration, script, args.client_cpu)
            after = cpu_ticks(process.pid)
            if process.poll() is not None:
                raise ServerFailed(f"exited with status {process.returncode} during the run")
            rss_kib, processes = peak_rss_kib(process.pid)
        except (ServerFailed, OSError, subprocess.TimeoutExpired) as error:
            record["failed"] = str(error)
            return record
        finally:
            stop(process)
    requests = figures["requests"]
    seconds = figures["duration_us"] / 1e6
    errors = sum(figures[key] for key in ("connect", "read", "write", "timeout", "status"))
    cpu_us = (after - before) / CLK_TCK * 1e6
    record.update(
        wrk=figures,
        wrk_output=output,
        rps=requests / seconds if seconds else 0.0,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        cpu_us_per_req=cpu_us / requests if requests else None,
        cpu_share=cpu_us / 1e6 / seconds if seconds else None,
        rss_mib=rss_kib / 1024,
        processes=processes,
        errors=errors,
    )
    if scenario.body_size:
        record["mib_s"] = record["rps"] * scenario.body_size / MIB
    return record


# --------------------------------------------------------------------------- the matrix

METRICS = ["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "rss_mib", "errors", "mib_s"]


def applicable(server: Server, scenario: Scenario) -> bool:
    return server.python or not scenario.python_only


def available(server: Server, args: argparse.Namespace) -> str | None:
    """Why the server can't run here, or None."""
    if server.name == "ferrule":
        return None if args.ferrule.exists() else f"{args.ferrule} not found (make build-dev)"
    if server.name == "limit":
        return None if LIMIT_BIN.exists() else "not built (cargo build failed or cargo missing)"
    module = PYPI_NAME.get(server.name, server.name)
    result = run_quiet([str(VENV_PY), "-c", f"import {module}"])
    if result.returncode == 0:
        return None
    if server.name == "bjoern" and not have_libev():
        return "not installed: needs Debian's libev-dev (`apt-get install -y libev-dev`)"
    return f"`import {module}` failed in benchmarks/.venv"


def estimate_seconds(runs: int, args: argparse.Namespace) -> float:
    return runs * (args.duration + args.warmup + 1.0)


def median_of(records: list[dict], metric: str) -> float | None:
    values = [r[metric] for r in records if r.get(metric) is not None]
    return statistics.median(values) if values else None


def summarize(records: list[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """{scenario: {server: {metric: median, "runs": n, "failed": [...]}}}"""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        cell = table.setdefault(record["scenario"], {}).setdefault(
            record["server"], {"records": []}
        )
        cell["records"].append(record)
    for servers in table.values():
        for cell in servers.values():
            good = [r for r in cell["records"] if "failed" not in r]
            cell["runs"] = len(good)
            cell["failed"] = [r["failed"] for r in cell["records"] if "failed" in r]
            cell["file_wrapper"] = sorted({r.get("file_wrapper") or "" for r in good} - {""})
            for metric in METRICS:
                cell[metric] = median_of(good, metric)
            del cell["records"]
    return table


def run_matrix(args: argparse.Namespace, servers: list[Server], raw_path: Path) -> list[dict]:
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios]
    log_dir = raw_path.with_suffix("")
    log_dir.mkdir(parents=True, exist_ok=True)
    for scenario in scenarios:
        write_wrk_script(scenario, log_dir)
    plan = []
    for rep in range(args.reps):
        # Rotate the order each repetition so no server always follows the same one.
        shift = rep % len(servers)
        order = servers[shift:] + servers[:shift]
        for scenario in scenarios:
            plan.extend((rep, scenario, s) for s in order if applicable(s, scenario))
    eta = estimate_seconds(len(plan), args)
    end = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=eta)
    print(
        f"benchmarks: {len(plan)} runs ({len(servers)} servers, {len(scenarios)} scenarios,"
        f" {args.reps} repetitions, {args.warmup} s warm-up + {args.duration} s each):"
        f" about {eta / 60:.1f} min, until ~{end:%H:%M} UTC",
        flush=True,
    )
    records: list[dict] = []
    for number, (rep, scenario, server) in enumerate(plan, 1):
        record = one_run(server, scenario, args, log_dir, rep)
        records.append(record)
        raw_path.write_text(json.dumps({"meta": args.meta, "records": records}, indent=1))
        if "failed" in record:
            status = f"FAILED: {record['failed']} (log: {log_dir.name}/)"
        else:
            status = (
                f"{record['rps']:>10,.0f} req/s  p99 {record['p99_ms']:7.2f} ms  "
                f"cpu {record['cpu_us_per_req'] or 0:8.2f} us/req  "
                f"rss {record['rss_mib']:6.1f} MiB  errors {record['errors']}"
            )
        print(
            f"[{number:>3}/{len(plan)}] rep {rep + 1} {scenario.name:<10} {server.name:<17}"
            f" {status}",
            flush=True,
        )
        time.sleep(0.2)
    return records


# --------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpus": os.cpu_count(),
        "model": model,
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
    }


def versions(args: argparse.Namespace) -> dict[str, str]:
    import importlib.metadata as metadata

    found: dict[str, str] = {"python (benchmarks/.venv)": platform.python_version()}
    for name in ["gunicorn", "granian", "waitress", "bjoern", "fastwsgi", "flask", "django"]:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    probe = (
        "import importlib.metadata as m, platform\n"
        "print(platform.python_version())\n"
        "for n in ('ferrule', 'flask', 'django'):\n"
        "    try: print(m.version(n))\n"
        "    except m.PackageNotFoundError: print('-')\n"
    )
    ferrule_python = args.ferrule.parent / "python"
    if ferrule_python.exists():
        result = run_quiet([str(ferrule_python), "-c", probe])
        if result.returncode == 0:
            lines = result.stdout.split()
            found["python (ferrule's)"] = lines[0]
            found["ferrule"] = lines[1]
            found["flask (ferrule's)"] = lines[2]
            found["django (ferrule's)"] = lines[3]
    lock = LIMIT_DIR / "Cargo.lock"
    if lock.exists():
        text = lock.read_text()
        for crate in ("hyper", "tokio"):
            marker = f'name = "{crate}"\nversion = "'
            if marker in text:
                found[f"{crate} (limit)"] = text.split(marker, 1)[1].split('"', 1)[0]
    result = run_quiet(["wrk", "-v"])
    first = (result.stdout or result.stderr).strip().splitlines()
    if first:
        found["wrk"] = first[0].split()[1] if len(first[0].split()) > 1 else first[0]
    return found


def fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    if metric in ("rps", "mib_s"):
        return f"{value:,.0f}"
    if metric == "errors":
        return f"{value:,.0f}"
    if metric == "rss_mib":
        return f"{value:.1f}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def with_ratio(value: float | None, base: float | None, metric: str, is_base: bool) -> str:
    text = fmt(value, metric)
    if value is None or is_base or not base or metric == "errors":
        return text
    return f"{text} ({value / base:.2f}×)"


SCENARIO_COLUMNS = [
    ("rps", "requests/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("cpu_us_per_req", "CPU µs/req"),
    ("rss_mib", "peak RSS MiB"),
    ("errors", "errors"),
]

SUMMARY_COLUMNS = [
    ("hello-c64", "rps", "hello rps c64"),
    ("hello-c64", "cpu_us_per_req", "hello CPU µs/req"),
    ("hello-c64", "p99_ms", "hello p99 ms"),
    ("hello-c1", "rps", "hello rps c1"),
    ("echo", "rps", "echo rps"),
    ("echo", "cpu_us_per_req", "echo CPU µs/req"),
    ("big", "mib_s", "big MiB/s"),
    ("file", "mib_s", "file MiB/s"),
    ("flask", "rps", "flask rps"),
    ("django", "rps", "django rps"),
    ("hello-c64", "rss_mib", "hello peak RSS MiB"),
]


def markdown(
    args: argparse.Namespace,
    meta: dict,
    table: dict,
    servers: list[Server],
    notes: list[str],
    commands: dict[str, str],
) -> str:
    info, found = meta["machine"], meta["versions"]
    elapsed = meta.get("elapsed_s", 0.0)
    lines = ["# ferrule against other WSGI servers", ""]
    short = args.duration < 10 or args.reps < 3 or args.warmup < 2
    if short:
        lines += [
            f"> **Not a full run:** {args.reps} repetition{'s' if args.reps > 1 else ''},"
            f" {args.duration} s runs after"
            f" a {args.warmup} s warm-up (the full method is 3 × 10 s after 2 s).",
            "",
        ]
    lines += [
        f"Run {meta['started']} to {meta['finished']} ({elapsed / 60:.0f} min) by"
        " `benchmarks/run.py`: every server and scenario in one run, interleaved,"
        f" **{args.reps} repetition{'s' if args.reps > 1 else ''}, medians**;"
        f" {args.duration} s per run after a"
        f" {args.warmup} s warm-up. Server pinned to CPU {args.server_cpu} (`taskset`),"
        f" `wrk -t1` pinned to CPU {args.client_cpu}, one worker process per server,"
        " 127.0.0.1 only.",
        "",
        f"Machine: nproc {info['nproc']}, {info['model']}, Linux {info['kernel']}; load"
        " average when the run started: "
        + ", ".join(f"{x:.2f}" for x in info["loadavg_start"])
        + ".",
        "",
        "Versions: " + "; ".join(f"{k} {v}" for k, v in found.items()) + ".",
        "",
        f"ferrule: checkout `{meta['git']}`, extension module {meta['ferrule_build']}"
        + (
            " (the project `.venv`'s, built by `make build-dev` with the release profile)."
            if meta.get("ferrule", str(DEFAULT_FERRULE)) == str(DEFAULT_FERRULE)
            else f", run as `{meta['ferrule']}` (`--ferrule`)."
        ),
        "",
        "Figures in parentheses are the ratio to ferrule's figure in the same column"
        " (server ÷ ferrule): above 1× is more requests/s but also more latency, CPU and"
        " memory. CPU µs/req is user + sys time of all the server's processes over the"
        " measured run divided by the requests served; peak RSS is the sum of VmHWM over"
        " the server's processes; errors are wrk's socket errors (connect, read, write,"
        " timeout) plus HTTP error statuses, summed over the measured run (median over"
        " repetitions).",
        "",
        "![requests/s and CPU per request](results.png)",
        "",
        "## Summary",
        "",
    ]
    ferrule = "ferrule"
    header = "| server | " + " | ".join(title for _, _, title in SUMMARY_COLUMNS) + " |"
    lines += [header, "|---" + "|---:" * len(SUMMARY_COLUMNS) + "|"]
    for server in servers:
        cells = []
        for scenario, metric, _ in SUMMARY_COLUMNS:
            cell = table.get(scenario, {}).get(server.name)
            base = table.get(scenario, {}).get(ferrule, {}).get(metric)
            value = cell.get(metric) if cell else None
            cells.append(with_ratio(value, base, metric, server.name == ferrule))
        lines.append(f"| {server.label} | " + " | ".join(cells) + " |")
    for scenario in SCENARIOS:
        if scenario.name not in table:
            continue
        lines += ["", f"## {scenario.title}", ""]
        columns = list(SCENARIO_COLUMNS)
        if scenario.body_size:
            columns.insert(1, ("mib_s", "MiB/s"))
        lines.append("| server | " + " | ".join(title for _, title in columns) + " |")
        lines.append("|---" + "|---:" * len(columns) + "|")
        base_cell = table[scenario.name].get(ferrule, {})
        for server in servers:
            cell = table[scenario.name].get(server.name)
            if cell is None:
                continue
            if not cell["runs"]:
                lines.append(f"| {server.label} | failed: {cell['failed'][0]} |")
                continue
            cells = [
                with_ratio(cell.get(metric), base_cell.get(metric), metric, server.name == ferrule)
                for metric, _ in columns
            ]
            lines.append(f"| {server.label} | " + " | ".join(cells) + " |")
    lines += ["", "## Commands", "", "Run in `benchmarks/apps/` with `taskset -c "
              f"{args.server_cpu}`; MODULE:APP is each scenario's application.", ""]  # fmt: skip
    lines += [f"- {name}: `{command}`" for name, command in commands.items()]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def chart(path: Path, table: dict, servers: list[Server], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    scenarios = [s for s in SCENARIOS if s.name in table]
    figure, axes = plt.subplots(
        len(scenarios), 2, figsize=(13, 1.0 + 2.1 * len(scenarios)), squeeze=False
    )
    palette = plt.get_cmap("tab10")
    colours = {name: palette(index % 10) for index, name in enumerate(SERVER_NAMES)}
    for row, scenario in enumerate(scenarios):
        first = ("mib_s", "MiB/s") if scenario.body_size else ("rps", "requests/s")
        for column, (metric, title) in enumerate(
            [
                (first[0], f"{first[1]} (more is better)"),
                ("cpu_us_per_req", "CPU µs/request (less)"),
            ]
        ):
            axis = axes[row][column]
            names, values, colors = [], [], []
            for server in servers:
                cell = table[scenario.name].get(server.name)
                if cell and cell.get(metric) is not None:
                    names.append(server.label)
                    values.append(cell[metric])
                    colors.append(colours[server.name])
            positions = range(len(names))
            bars = axis.barh(positions, values, color=colors)
            axis.set_yticks(list(positions), names, fontsize=8)
            axis.invert_yaxis()
            axis.set_title(f"{scenario.name}: {title}", fontsize=10, loc="left")
            axis.tick_params(axis="x", labelsize=8)
            axis.xaxis.set_major_formatter(
                matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}")
            )
            axis.bar_label(bars, [fmt(value, metric) for value in values], fontsize=7, padding=2)
            if values:
                axis.set_xlim(0, max(values) * 1.18)
            for label in axis.get_yticklabels():
                if label.get_text() == "ferrule":
                    label.set_fontweight("bold")
    figure.suptitle(
        f"ferrule vs WSGI servers: one worker on one core, wrk on the other; medians of"
        f" {args.reps} × {args.duration} s",
        fontsize=12,
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.45 / figure.get_figheight()))
    figure.savefig(path, dpi=90)
    plt.close(figure)


# --------------------------------------------------------------------------- stage 2


def spread_note(records: list[dict], servers: list[Server]) -> str | None:
    """Name the cells whose requests/s varied by more than 10% over the repetitions."""
    runs: dict[tuple[str, str], list[float]] = {}
    for record in records:
        if record.get("rps"):
            runs.setdefault((record["scenario"], record["server"]), []).append(record["rps"])
    labels = {server.name: server.label for server in SERVERS}
    wide = []
    for scenario in SCENARIOS:
        for server in servers:
            values = runs.get((scenario.name, server.name), [])
            if len(values) < 2:
                continue
            spread = (max(values) - min(values)) / statistics.median(values)
            if spread > 0.10:
                wide.append(
                    f"{labels[server.name]} {scenario.name} ±{spread * 50:.0f}%"
                    f" ({min(values):,.0f}–{max(values):,.0f})"
                )
    if not wide:
        return None
    return (
        "Requests/s varied by more than ±5% over the repetitions (half the max−min range"
        " over the median; the table shows medians) for: " + "; ".join(wide) + "."
    )


def write_report(
    args: argparse.Namespace, meta: dict, records: list[dict], servers: list[Server]
) -> dict:
    """RESULTS.md and results.png in args.out, from the runs' records; returns the medians."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    table = summarize(records)
    notes: list[str] = list(meta.get("extra_notes", [])) + list(meta.get("skipped", []))
    if meta.get("ferrule_build_end", meta["ferrule_build"]) != meta["ferrule_build"]:
        notes.append(
            "ferrule's extension module changed during the run (a rebuild?):"
            f" {meta['ferrule_build']} at the start, {meta['ferrule_build_end']} at the end;"
            " the figures may mix two builds."
        )
    for scenario, cells in table.items():
        for name, cell in cells.items():
            label = next(s.label for s in SERVERS if s.name == name)
            for reason in sorted(set(cell["failed"])):
                notes.append(f"{label}, {scenario}: {len(cell['failed'])} run(s) failed: {reason}")
            if cell["runs"] and cell["errors"]:
                notes.append(f"{label}, {scenario}: {cell['errors']:,.0f} errors (median).")
            if scenario == "file" and "fallback" in cell["file_wrapper"]:
                notes.append(
                    f"{label} has no `wsgi.file_wrapper`: the file app read the file in 64 KiB"
                    " blocks (PEP 3333's fallback)."
                )
    spread = spread_note(records, servers)
    if spread:
        notes.append(spread)
    if meta.get("loadavg_end"):
        notes.append(
            "Load average at the end of the run: "
            + ", ".join(f"{x:.2f}" for x in meta["loadavg_end"])
            + "."
        )
    commands = {}
    ferrule = Path(meta.get("ferrule", args.ferrule))
    for server in servers:
        command = server.command(ferrule, f"{HOST}:PORT", "MODULE:APP")
        commands[server.label] = " ".join(
            str(Path(part).relative_to(ROOT)) if part.startswith(str(ROOT)) else part
            for part in command
        ).replace(str(bench_file()), "FILE")
    (out / "RESULTS.md").write_text(markdown(args, meta, table, servers, notes, commands))
    try:
        chart(out / "results.png", table, servers, args)
    except ImportError:
        print("benchmarks: matplotlib missing in benchmarks/.venv; no chart")
    print(f"benchmarks: wrote {out / 'RESULTS.md'} and {out / 'results.png'}")
    return table


def report_only(args: argparse.Namespace) -> None:
    """--report RAW.json: rewrite RESULTS.md and results.png from a finished run's raw data."""
    raw = json.loads(args.report.read_text())
    meta, records = raw["meta"], raw["records"]
    for key in ("duration", "warmup", "reps", "server_cpu", "client_cpu"):
        setattr(args, key, meta[key])
    if args.note:  # kept in the raw file, so that the next --report keeps them too
        meta["extra_notes"] = list(dict.fromkeys(meta.get("extra_notes", []) + args.note))
        args.report.write_text(json.dumps(raw, indent=1))
    present = {record["server"] for record in records}
    write_report(args, meta, records, [s for s in SERVERS if s.name in present])


def stage2(args: argparse.Namespace) -> None:
    if args.report:
        report_only(args)
        return
    info = machine_info()  # before the affinity below narrows what nproc sees
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.client_cpu})  # keep this script off the server's core
    path = bench_file()
    if not path.exists() or path.stat().st_size != FILE_SIZE:
        path.write_bytes(bytes(range(256)) * (FILE_SIZE // 256))
    skipped: list[str] = []
    servers = []
    for server in SERVERS:
        if server.name not in args.servers:
            continue
        reason = available(server, args)
        if reason:
            print(f"benchmarks: NOTE: {server.name} skipped: {reason}", flush=True)
            skipped.append(f"{server.label} was skipped: {reason}.")
        else:
            servers.append(server)
    if not any(server.name == "ferrule" for server in servers):
        sys.exit("benchmarks: ferrule is not available; run `make build-dev` or pass --ferrule")
    raw_dir = args.out / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    raw_path = raw_dir / f"{started:%Y%m%dT%H%M%SZ}.json"
    args.meta = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration": args.duration, "warmup": args.warmup, "reps": args.reps,
        "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
        "machine": info, "versions": versions(args), "ferrule": str(args.ferrule),
        "ferrule_build": ferrule_build(args.ferrule), "git": git_head(),
        "skipped": skipped, "extra_notes": args.note,
    }  # fmt: skip
    clock = time.monotonic()
    records = run_matrix(args, servers, raw_path)
    meta = args.meta
    meta["elapsed_s"] = time.monotonic() - clock
    meta["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%H:%M UTC")
    meta["loadavg_end"] = os.getloadavg()
    meta["ferrule_build_end"] = ferrule_build(args.ferrule)
    table = write_report(args, meta, records, servers)
    raw_path.write_text(json.dumps({"meta": meta, "records": records, "medians": table}, indent=1))
    print(f"benchmarks: raw data in {raw_path}")
    print(f"benchmarks: took {meta['elapsed_s'] / 60:.1f} min")


# --------------------------------------------------------------------------- main


def names(text: str, allowed: list[str], what: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)}")
    return chosen


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load benchmark of ferrule against other WSGI servers (benchmarks/README.md)."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run (2)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    parser.add_argument(
        "--servers",
        type=lambda text: names(text, SERVER_NAMES, "server"),
        default=SERVER_NAMES,
        help="comma-separated subset of: " + ",".join(SERVER_NAMES),
    )
    parser.add_argument(
        "--scenarios",
        type=lambda text: names(text, SCENARIO_NAMES, "scenario"),
        default=SCENARIO_NAMES,
        help="comma-separated subset of: " + ",".join(SCENARIO_NAMES),
    )
    parser.add_argument(
        "--ferrule",
        type=Path,
        default=DEFAULT_FERRULE,
        help="the ferrule executable (default: the project .venv's, from `make build-dev`)",
    )
    parser.add_argument("--server-cpu", type=int, default=1, help="CPU for the server (1)")
    parser.add_argument("--client-cpu", type=int, default=0, help="CPU for wrk (0)")
    parser.add_argument(
        "--out", type=Path, default=BENCH / "results", help="results folder (benchmarks/results)"
    )
    parser.add_argument(
        "--reinstall", action="store_true", help="run pip even if benchmarks/.venv looks ready"
    )
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a line for RESULTS.md's notes (repeatable)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="RAW_JSON",
        help="run nothing: rewrite RESULTS.md and results.png (in --out) from a raw JSON file",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.reps < 1 or args.warmup < 0:
        parser.error("--duration and --reps must be at least 1, --warmup at least 0")
    if "ferrule" not in args.servers:
        args.servers = ["ferrule", *args.servers]  # the reference of every ratio
    args.ferrule = args.ferrule.absolute()
    args.out = args.out.absolute()
    if args.report:
        args.report = args.report.absolute()
    return args


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    if os.environ.get(IN_VENV_FLAG) and Path(sys.prefix).resolve() == VENV.resolve():
        stage2(args)
    else:
        stage1(args, argv)


if __name__ == "__main__":
    main()
