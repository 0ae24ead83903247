"""``app`` keeps ``start_response``, ``write``, ``wsgi.input`` and their traces across requests.

ferrule reuses the ``start_response`` and ``wsgi.input`` of a finished request when
nothing kept them (``src/py/pool.rs``). Each path here keeps something in :data:`KEPT` under
the ``k`` query parameter, and a later request inspects or uses it and answers with a
JSON report. With ``--threads 1`` every request runs on one thread, so a kept object
is looked at strictly after the request that kept it has ended.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import weakref

from apps import query

TEXT = [("Content-Type", "text/plain")]
JSON = [("Content-Type", "application/json")]

KEPT: dict[str, dict] = {}
TIMEOUT = 20


def slot(environ) -> dict:
    return KEPT.setdefault(query(environ).get("k", "-"), {})


def report(start_response, data: dict):
    body = json.dumps(data, sort_keys=True).encode()
    start_response("200 OK", [*JSON, ("Content-Length", str(len(body)))])
    return [body]


def owner(start_response):
    """The object behind a ``start_response`` callable: ferrule hands out a bound method."""
    return getattr(start_response, "__self__", start_response)


def attempt(fn, *args) -> str:
    """Call ``fn(*args)``: ``"ok"`` or the exception's type name."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - the report names it
        return type(exc).__name__
    return "ok"


def plain(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"plain"]


def keep_start_response(environ, start_response):
    slot(environ)["sr"] = start_response
    start_response("200 OK", TEXT)
    return [b"kept start_response"]


def keep_write(environ, start_response):
    slot(environ)["write"] = start_response("200 OK", TEXT)
    return [b"kept write"]


def keep_unstarted(environ, start_response):
    # Kept, but never called: the request fails (500) without a head.
    slot(environ)["sr"] = start_response
    raise RuntimeError("reuse-apps-failed-on-purpose")


def use_kept(environ, start_response):
    kept = slot(environ)
    data = {}
    if "sr" in kept:
        sr = kept["sr"]
        data["sr_is_this"] = sr is start_response
        data["sr_call"] = attempt(sr, "200 OK", [])
        data["sr_write_self"] = owner(sr).write.__self__ is owner(sr)
        data["sr_write"] = attempt(owner(sr).write, b"leaked?")
    if "write" in kept:
        write = kept["write"]
        data["write_self_is_this"] = write.__self__ is owner(start_response)
        data["write"] = attempt(write, b"leaked?")
        data["write_str"] = attempt(write, "text")
    return report(start_response, data)


def watch_weakly(kept: dict, prefix: str, target) -> None:
    """Keep a weak reference to ``target`` in ``kept``, and note there when it is finalized."""
    kept[f"{prefix}ref"] = weakref.ref(target)
    kept[f"{prefix}finalized"] = False

    def finalized():
        kept[f"{prefix}finalized"] = True

    weakref.finalize(target, finalized)


def watched(kept: dict, prefix: str):
    """What :func:`watch_weakly` kept under ``prefix``: the target if it is alive, and the
    report's ``alive`` and ``finalized`` entries."""
    target = kept[f"{prefix}ref"]()
    return target, {"alive": target is not None, "finalized": kept[f"{prefix}finalized"]}


def weak_write(environ, start_response):
    write = start_response("200 OK", TEXT)
    watch_weakly(slot(environ), "", write)
    return [b"weak write"]


def check_weak(environ, start_response):
    target, data = watched(slot(environ), "")
    data["is_this_write"] = target is not None and target.__self__ is owner(start_response)
    return report(start_response, data)


def weak_start_response(environ, start_response):
    watch_weakly(slot(environ), "sr_", start_response)
    start_response("200 OK", TEXT)
    return [b"weak start_response"]


def check_weak_start_response(environ, start_response):
    target, data = watched(slot(environ), "sr_")
    data["is_this"] = target is start_response
    data["call"] = attempt(target, "200 OK", []) if target is not None else None
    return report(start_response, data)


def inject(environ, start_response):
    """Call the write of a weakly referenced, finished request, if it is still alive."""
    kept = slot(environ)
    start_response("200 OK", TEXT)
    target = kept["ref"]()
    if target is not None:
        target(b"INJECTED ")
    return [b"own body"]


def kept_environ(environ, start_response):
    environ["reuse.start_response"] = start_response
    slot(environ)["environ"] = environ
    start_response("200 OK", TEXT)
    return [b"kept environ"]


def use_kept_environ(environ, start_response):
    sr = slot(environ)["environ"]["reuse.start_response"]
    data = {"sr_is_this": sr is start_response, "sr_call": attempt(sr, "200 OK", [])}
    return report(start_response, data)


def closure(environ, start_response):
    write = start_response("200 OK", TEXT)

    def body():
        write(b"w1 ")
        yield b"g1 "
        gc.collect()
        write(b"w2 ")
        yield b"g2"

    gen = body()
    slot(environ)["gen"] = gen
    return gen


def close_stash(environ, start_response):
    kept = slot(environ)

    class Body:
        def __iter__(self):
            yield b"close stash"

        def close(self):
            kept["sr"] = start_response
            gc.collect()

    start_response("200 OK", TEXT)
    return Body()


def exc_info(environ, start_response):
    start_response("200 OK", TEXT)
    try:
        raise ValueError("replaced")
    except ValueError:
        start_response("503 Service Unavailable", TEXT, sys.exc_info())
    return [b"exc_info replaced the head"]


def exc_info_late(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"sent ")
    try:
        raise ValueError("too late")
    except ValueError:
        start_response("500 Internal Server Error", TEXT, sys.exc_info())
    return [b"unreachable"]


def raise_after(environ, start_response):
    start_response("200 OK", TEXT)
    raise RuntimeError("reuse-apps-failed-on-purpose")


def raise_in_body(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"partial")

    def body():
        yield b" more"
        raise RuntimeError("reuse-apps-failed-on-purpose")

    return body()


def gc_everywhere(environ, start_response):
    gc.collect()
    write = start_response("200 OK", TEXT)
    gc.collect()
    del write

    class Body:
        def __iter__(self):
            gc.collect()
            yield b"gc "
            gc.collect()
            yield b"everywhere"

        def close(self):
            gc.collect()

    return Body()


def ident(environ, start_response):
    data = {
        "id": id(start_response),
        "refcount": sys.getrefcount(start_response),
        "tracked": gc.is_tracked(start_response),
        "referents": [type(r).__name__ for r in gc.get_referents(start_response)],
    }
    return report(start_response, data)


def write_calls(environ, start_response):
    q = query(environ)
    n = int(q.get("n", "3"))
    tag = q.get("tag", "x").encode()
    write = start_response("200 OK", TEXT)
    for i in range(n):
        write(b"%s-%d;" % (tag, i))
    return [b"end-" + tag]


def file_body(environ, start_response):
    path = os.environ["REUSE_FILE"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 65536)  # noqa: SIM115


def status(environ, start_response):
    code = query(environ).get("s", "200")
    start_response(f"{code} Whatever", TEXT)
    return [b"status body"]


def stream(environ, start_response):
    """``n`` blocks of 64 KiB, each written then yielded: a body to walk away from."""
    n = int(query(environ).get("n", "64"))
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def body():
        for i in range(n):
            write(bytes([i % 256]) * 32768)
            yield bytes([i % 256]) * 32768

    return body()


def echo(environ, start_response):
    data = environ["wsgi.input"].read()
    write = start_response("200 OK", TEXT)
    write(b"echo:")
    return [data]


def hunt(environ, start_response):
    """Keep every ``start_response`` object the garbage collector can list."""
    kind = type(owner(start_response))
    found = [o for o in gc.get_objects() if type(o) is kind]
    slot(environ)["hunted"] = found
    start_response("200 OK", TEXT)
    return [b"found %d" % len(found)]


def is_hunted(environ, start_response):
    hunted = slot(environ)["hunted"]
    this = owner(start_response)
    return report(start_response, {"hunted": any(h is this for h in hunted)})


def slow(environ, start_response):
    start_response("200 OK", TEXT)
    time.sleep(float(query(environ).get("s", "0.5")))
    return [b"slow body"]


def write_hunted(environ, start_response):
    """Write into every hunted ``start_response`` but this request's own."""
    for sr in slot(environ)["hunted"]:
        if sr is not owner(start_response):
            attempt(sr.write, b"INJECTED ")
    start_response("200 OK", TEXT)
    return [b"wrote"]


def keep_input(environ, start_response):
    """Read the body's first line and keep ``wsgi.input`` in the way ``how`` names."""
    stream = environ["wsgi.input"]
    first = stream.readline()
    how = query(environ).get("how", "object")
    kept = slot(environ)
    kept["how"] = how
    if how == "object":
        kept["input"] = stream
    elif how == "environ":
        kept["environ"] = environ
    elif how == "read":
        kept["read"] = stream.read
    elif how == "iter":
        kept["iter"] = iter(stream)
    elif how == "closure":

        def rest():
            return stream.read()

        kept["rest"] = rest
    start_response("200 OK", TEXT)
    return [first]


def read_in_thread(environ, start_response):
    """Hand ``wsgi.input`` to ``threads`` threads (1 unless given) that each read it
    whole, and answer before they are done (or raise, with ``raise=1``)."""
    import threading

    stream = environ["wsgi.input"]
    q = query(environ)
    kept = slot(environ)
    reads = kept["reads"] = []
    kept["threads"] = int(q.get("threads", "1"))

    def read():
        try:
            reads.append(len(stream.read()))
        except Exception as exc:  # reported to the test by /thread-read
            reads.append(repr(exc))

    for _ in range(kept["threads"]):
        threading.Thread(target=read, daemon=True).start()
    time.sleep(0.3)  # the client holds the rest of the body back meanwhile
    if q.get("raise") == "1":
        raise RuntimeError("the application failed while a thread reads the body")
    start_response("200 OK", TEXT)
    return [b"answered"]


def read_alongside(environ, start_response):
    """A thread reads ``n`` bytes of the body while the application, 0.2 s later, reads
    the rest: the body is the thread's part then the application's; the ``X-Thread``
    and ``X-Main`` fields give each part's length, or the exception it raised."""
    import threading

    stream = environ["wsgi.input"]
    n = int(query(environ).get("n", "1000"))
    parts: dict[str, bytes | str] = {}

    def take(name, *args):
        try:
            parts[name] = stream.read(*args)
        except Exception as exc:  # reported in the response's fields
            parts[name] = repr(exc)

    thread = threading.Thread(target=take, args=("thread", n), daemon=True)
    thread.start()
    time.sleep(0.2)  # the thread waits for the client meanwhile
    take("main")
    thread.join(TIMEOUT)
    ordered = [parts.get("thread", "not done"), parts["main"]]
    fields = [
        (name, str(len(part)) if isinstance(part, bytes) else part)
        for name, part in zip(("X-Thread", "X-Main"), ordered, strict=True)
    ]
    start_response("200 OK", [*TEXT, *fields])
    return [part for part in ordered if isinstance(part, bytes)]


def write_in_thread(environ, start_response):
    """A thread writes 200 blocks of 64 KiB through ``write`` while the application
    returns its own last block: the response ends when both are done."""
    import threading

    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])

    def pump():
        try:
            for _ in range(200):
                write(b"x" * 65536)
        except Exception as exc:  # noqa: BLE001 - reported in the server's log
            print("write-in-thread:", repr(exc), flush=True)

    threading.Thread(target=pump, daemon=True).start()
    time.sleep(0.3)
    return [b"end"]


def thread_read(environ, start_response):
    """What the threads of ``read_in_thread`` read, in order of length or error (once
    all are done; else nothing yet)."""
    kept = slot(environ)
    reads = kept["reads"]
    done = sorted(reads, key=str) if len(reads) == kept["threads"] else None
    return report(start_response, {"read": done})


def use_kept_input(environ, start_response):
    """Read what is left of a kept ``wsgi.input``, then this request's own body."""
    kept = slot(environ)
    how = kept["how"]
    if how == "object":
        stream = kept["input"]
        rest = stream.read()
    elif how == "environ":
        stream = kept["environ"]["wsgi.input"]
        rest = stream.read()
    elif how == "read":
        stream = kept["read"].__self__
        rest = kept["read"]()
    elif how == "iter":
        stream = kept["iter"]
        rest = b"".join(stream)
    else:
        stream = kept["rest"].__closure__[0].cell_contents
        rest = kept["rest"]()
    this = environ["wsgi.input"]
    data = {"is_this": stream is this, "rest": rest.decode(), "own": this.read().decode()}
    return report(start_response, data)


def read_some(environ, start_response):
    """Read ``n`` bytes of the body (by ``how``: read or readline) and leave the rest."""
    q = query(environ)
    n = int(q.get("n", "3"))
    stream = environ["wsgi.input"]
    data = stream.readline(n) if q.get("how") == "readline" else stream.read(n)
    start_response("200 OK", TEXT)
    return [data]


def read_lines(environ, start_response):
    """The body read by iteration, ``readlines()`` or ``read(1)`` at a time, per ``how``."""
    stream = environ["wsgi.input"]
    how = query(environ).get("how", "iter")
    if how == "iter":
        data = b"".join(stream)
    elif how == "readlines":
        data = b"".join(stream.readlines())
    else:
        data = b"".join(iter(lambda: stream.read(1), b""))
    start_response("200 OK", TEXT)
    return [data]


def raise_after_read(environ, start_response):
    environ["wsgi.input"].read()
    raise RuntimeError("reuse-apps-failed-on-purpose")


def input_traits(environ, start_response):
    """Whether ``wsgi.input`` takes a weak reference and is tracked by the collector."""
    stream = environ["wsgi.input"]
    data = {"weakref": attempt(weakref.ref, stream), "tracked": gc.is_tracked(stream)}
    return report(start_response, data)


def hunt_input(environ, start_response):
    """Read this request's body; keep every object of its type the collector can reach."""
    environ["wsgi.input"].read()
    kind = type(environ["wsgi.input"])
    found = {}
    for obj in gc.get_objects():
        if type(obj) is kind:
            found[id(obj)] = obj
        for ref in gc.get_referents(obj):
            if type(ref) is kind:
                found[id(ref)] = ref
    slot(environ)["hunted"] = list(found.values())
    start_response("200 OK", TEXT)
    return [b"found %d" % len(found)]


def is_hunted_input(environ, start_response):
    """Whether this request's ``wsgi.input`` was hunted; what the hunted ones read now."""
    this = environ["wsgi.input"]
    hunted = slot(environ)["hunted"]
    late = b"".join(h.read() for h in hunted if h is not this)
    data = {"hunted": any(h is this for h in hunted), "own": this.read().decode()}
    data["late"] = late.decode()
    return report(start_response, data)


def forget(environ, start_response):
    KEPT.pop(query(environ).get("k", "-"), None)
    gc.collect()
    start_response("200 OK", TEXT)
    return [b"forgotten"]


ROUTES = {
    "/plain": plain,
    "/keep-sr": keep_start_response,
    "/keep-write": keep_write,
    "/keep-unstarted": keep_unstarted,
    "/use-kept": use_kept,
    "/weak-write": weak_write,
    "/check-weak": check_weak,
    "/weak-sr": weak_start_response,
    "/check-weak-sr": check_weak_start_response,
    "/inject": inject,
    "/kept-environ": kept_environ,
    "/use-kept-environ": use_kept_environ,
    "/closure": closure,
    "/close-stash": close_stash,
    "/exc-info": exc_info,
    "/exc-info-late": exc_info_late,
    "/raise-after": raise_after,
    "/raise-in-body": raise_in_body,
    "/gc": gc_everywhere,
    "/ident": ident,
    "/write-calls": write_calls,
    "/file": file_body,
    "/status": status,
    "/stream": stream,
    "/echo": echo,
    "/hunt": hunt,
    "/is-hunted": is_hunted,
    "/slow": slow,
    "/write-hunted": write_hunted,
    "/forget": forget,
    "/keep-input": keep_input,
    "/read-in-thread": read_in_thread,
    "/thread-read": thread_read,
    "/write-in-thread": write_in_thread,
    "/read-alongside": read_alongside,
    "/use-kept-input": use_kept_input,
    "/read-some": read_some,
    "/read-lines": read_lines,
    "/raise-after-read": raise_after_read,
    "/input-traits": input_traits,
    "/hunt-input": hunt_input,
    "/is-hunted-input": is_hunted_input,
}


def app(environ, start_response):
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        start_response("404 Not Found", TEXT)
        return [b"no such route"]
    return route(environ, start_response)
