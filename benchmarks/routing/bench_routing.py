"""Route matching: ferrule.routing against Werkzeug's routing and Bottle's router.

For each table size (10, 100 and 1,000 routes) the three routers get the same routes,
a quarter each of static pages, ``int`` items, ``{name}`` sub-resources and ``path``
catch-alls, and match the same 8 paths spread over the table. The figure is the mean
time of one match in nanoseconds, best of 5 runs of ``timeit`` (not a test: no
assertion on time). Each router is first checked to return the right route and the
converted ``int`` parameter.

What is timed, per router, is what it does per request once built:

- ferrule: ``Router.match(method, path)``, the Rust lookup through pyo3, returning the
  view and a dict of converted parameters;
- Werkzeug: ``MapAdapter.match(path, method)`` on an adapter bound once;
- Bottle: ``Router.match(environ)``, with a prebuilt environ per path.

Run ``python benchmarks/routing/bench_routing.py`` from the repository root (README.md
in this folder). Werkzeug and Bottle are installed on first use: into the project's
``.venv`` if it exists, else into ``benchmarks/.venv`` together with ferrule itself.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import timeit
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SIZES = (10, 100, 1000)
SAMPLES = 8
PEERS = ("werkzeug", "bottle")


def ensure_environment() -> None:
    """Re-run this script in a venv that has ferrule, Werkzeug and Bottle."""
    try:
        import bottle  # noqa: F401
        import ferrule.routing  # noqa: F401
        import werkzeug  # noqa: F401

        return
    except ImportError:
        pass
    if os.environ.get("FERRULE_BENCH_REEXEC"):
        sys.exit("ferrule, werkzeug or bottle is still missing after installing them")
    project = ROOT / ".venv" / "bin" / "python"
    if project.exists():
        python = project
        subprocess.run([python, "-m", "pip", "install", "--quiet", *PEERS], check=True)
    else:
        venv = ROOT / "benchmarks" / ".venv"
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", *PEERS, ROOT], check=True)
    env = {**os.environ, "FERRULE_BENCH_REEXEC": "1"}
    os.execve(python, [str(python), __file__, *sys.argv[1:]], env)


def table(n: int) -> list[tuple[int, str, str, str, str]]:
    """``(kind, ferrule pattern, werkzeug rule, bottle rule, a matching path)`` × n."""
    rows = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            static = f"/section{i}/page"
            rows.append((kind, static, static, static, static))
        elif kind == 1:
            rows.append(
                (
                    kind,
                    f"/api/v1/res{i}/{{id:int}}",
                    f"/api/v1/res{i}/<int:id>",
                    f"/api/v1/res{i}/<id:int>",
                    f"/api/v1/res{i}/42",
                )
            )
        elif kind == 2:
            rows.append(
                (
                    kind,
                    f"/users/{{name}}/res{i}/edit",
                    f"/users/<name>/res{i}/edit",
                    f"/users/<name>/res{i}/edit",
                    f"/users/ann/res{i}/edit",
                )
            )
        else:
            rows.append(
                (
                    kind,
                    f"/static{i}/{{*path}}",
                    f"/static{i}/<path:path>",
                    f"/static{i}/<path:path>",
                    f"/static{i}/css/site.css",
                )
            )
    return rows


def sample_indices(n: int) -> list[int]:
    """8 route indices spread evenly over the table, first and last included."""
    return sorted({round(k * (n - 1) / (SAMPLES - 1)) for k in range(SAMPLES)})


def build_ferrule(rows: list) -> Callable[[str], Any]:
    from ferrule.routing import Router

    router = Router()
    for i, (_, pattern, _, _, _) in enumerate(rows):
        router.add(pattern, lambda i=i, **params: i)
    return lambda path: router.match("GET", path)


def build_werkzeug(rows: list) -> Callable[[str], Any]:
    from werkzeug.routing import Map, Rule

    rules = [Rule(rule, endpoint=i, methods=["GET"]) for i, (_, _, rule, _, _) in enumerate(rows)]
    adapter = Map(rules).bind("localhost")
    return lambda path: adapter.match(path, "GET")


def build_bottle(rows: list) -> Callable[[str], Any]:
    import bottle

    router = bottle.Router()
    for i, (_, _, _, rule, _) in enumerate(rows):
        router.add(rule, "GET", i)
    environs: dict[str, dict[str, str]] = {}

    def match(path: str) -> Any:
        environ = environs.get(path)
        if environ is None:
            environ = environs[path] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        return router.match(environ)

    return match


def check(name: str, match: Callable[[str], Any], rows: list, indices: list[int]) -> None:
    """Each sampled path must give its own route, with ``id`` converted to int 42."""
    for i in indices:
        kind, *_, path = rows[i]
        target, params = match(path)
        got = target() if callable(target) else target
        assert got == i, f"{name}: {path} matched route {got}, not {i}"
        if kind == 1:
            assert params == {"id": 42}, f"{name}: {path} gave {params}"


def time_per_match(match: Callable[[str], Any], paths: list[str], repeat: int) -> float:
    """Best mean nanoseconds per match over ``repeat`` timeit runs."""

    def run() -> None:
        for path in paths:
            match(path)

    timer = timeit.Timer(run)
    loops, _ = timer.autorange()
    best = min(timer.repeat(repeat=repeat, number=loops))
    return best / loops / len(paths) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timeit runs per figure")
    args = parser.parse_args()
    ensure_environment()
    builders = {"ferrule": build_ferrule, "werkzeug": build_werkzeug, "bottle": build_bottle}
    results: dict[int, dict[str, float]] = {}
    for n in SIZES:
        rows = table(n)
        indices = sample_indices(n)
        paths = [rows[i][4] for i in indices]
        results[n] = {}
        for name, build in builders.items():
            match = build(rows)
            check(name, match, rows, indices)
            results[n][name] = time_per_match(match, paths, args.repeat)

    print(
        f"Python {sys.version.split()[0]}, ferrule {version('ferrule')}, "
        f"Werkzeug {version('werkzeug')}, Bottle {version('bottle')}"
    )
    print()
    print(
        "| routes | ferrule (ns) | Werkzeug (ns) | Bottle (ns) | Werkzeug ÷ ferrule "
        "| Bottle ÷ ferrule |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n, row in results.items():
        f, w, b = row["ferrule"], row["werkzeug"], row["bottle"]
        print(f"| {n} | {f:.0f} | {w:.0f} | {b:.0f} | {w / f:.1f}× | {b / f:.1f}× |")
    print()
    for name in builders:
        growth = results[SIZES[-1]][name] / results[SIZES[0]][name]
        print(f"{name}: {SIZES[-1]} routes cost {growth:.2f}× the time of {SIZES[0]} routes")


if __name__ == "__main__":
    main()
