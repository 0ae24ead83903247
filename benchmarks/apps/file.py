"""``file``: a 1 MiB file on disk sent through ``wsgi.file_wrapper``.

The file is ``$FERRULE_BENCH_FILE`` (``benchmarks/run.py`` creates it; this module
creates it too if it is missing). A server without ``wsgi.file_wrapper`` gets the
file read in 64 KiB blocks instead (PEP 3333's fallback); the ``X-File-Wrapper``
header says which path was taken (``native`` or ``fallback``) so the harness can
report it.
"""

import os
import tempfile

SIZE = 1024 * 1024
BLOCK = 64 * 1024
PATH = os.environ.get("FERRULE_BENCH_FILE") or os.path.join(
    tempfile.gettempdir(), "ferrule-bench-1MiB.bin"
)


def _ensure_file():
    if os.path.exists(PATH) and os.path.getsize(PATH) == SIZE:
        return
    tmp = f"{PATH}.{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        out.write(bytes(range(256)) * (SIZE // 256))
    os.replace(tmp, PATH)


_ensure_file()


def _blocks(handle):
    try:
        while block := handle.read(BLOCK):
            yield block
    finally:
        handle.close()


def app(environ, start_response):
    handle = open(PATH, "rb")  # closed by the server, or by _blocks
    wrapper = environ.get("wsgi.file_wrapper")
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(SIZE)),
            ("X-File-Wrapper", "native" if wrapper else "fallback"),
        ],
    )
    if wrapper is not None:
        return wrapper(handle, BLOCK)
    return _blocks(handle)
