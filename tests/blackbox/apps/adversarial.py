"""Applications that try to break ferrule's per-connection reuse (environ, start_response,
the field-lines buffer); see ``tests/blackbox/test_reuse_adversarial.py``.

``app`` answers every request with a snapshot of its environ taken *before* it does
anything else (every entry, objects as their type's name), the body it read, and a
``report`` of what the action named by the ``do`` query parameter found. The action then
keeps, changes or hunts environ dicts in the ways an application can; ``tag`` names the
slot of :data:`KEPT` it uses. So a response always shows the environ the request was
given, and a later request on the same connection shows whether anything leaked.

``flask_app`` and ``django_app`` do the same through the frameworks (which keep their
request objects in the environ), ``small`` answers byte-exact responses chosen by the
query (status, fields, body, declared length), and ``sr_app`` calls ``start_response``
in unusual ways.
"""

from __future__ import annotations

import functools
import gc
import json
import sys
import threading
import time
import weakref

from apps import query

JSON = [("Content-Type", "application/json")]
KEPT: dict[str, dict] = {}
_LOCK = threading.Lock()


def slot(tag: str) -> dict:
    with _LOCK:
        return KEPT.setdefault(tag, {})


def snapshot(environ) -> dict:
    """Every entry: JSON values as they are, tuples as lists, objects as type names."""
    out = {}
    for key, value in environ.items():
        if isinstance(value, (str, bool, int)) or value is None:
            out[key] = value
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = "<" + type(value).__name__ + ">"
    return out


def looks_like_environ(obj) -> bool:
    return type(obj) is dict and "wsgi.version" in obj and "SERVER_SOFTWARE" in obj


def others(environ) -> list[dict]:
    """Every request's environ the garbage collector lists (a request's has a
    ``PATH_INFO`` and a ``wsgi.input``), but ``environ``."""
    return [
        o
        for o in gc.get_objects()
        if looks_like_environ(o) and "PATH_INFO" in o and "wsgi.input" in o and o is not environ
    ]


def templates() -> list[dict]:
    """The server's environ templates, if the garbage collector lists them: environ-like
    dicts that belong to no request (no ``PATH_INFO``)."""
    return [o for o in gc.get_objects() if looks_like_environ(o) and "PATH_INFO" not in o]


def _thread_mutate(environ, kept):
    seen = environ["PATH_INFO"]
    time.sleep(0.3)
    environ["PATH_INFO"] = "/from-a-late-thread"
    environ["adv.thread"] = "was here"
    environ.pop("QUERY_STRING", None)
    kept["thread_saw"] = seen
    kept["thread_done"] = True


class KeepInClose:
    """What ``close()`` does with the environ: keep it, or change it and let go."""

    def __init__(self, environ, how, kept):
        self.environ, self.how, self.kept = environ, how, kept

    def close(self):
        if self.how == "keep":
            self.kept["environ"] = self.environ
        else:  # change, then let go
            self.environ["PATH_INFO"] = "/changed-in-close"
            self.environ["adv.close"] = 1


def act(environ, do: str, kept: dict) -> dict:  # noqa: C901, PLR0912 - one branch per action
    """Do ``do`` to ``environ``; what it found, for the response."""
    report: dict = {}
    if do == "keep":
        kept["environ"] = environ
    elif do == "keep-input":
        kept["input"] = environ["wsgi.input"]
    elif do == "mutate":
        environ["PATH_INFO"] = "/hacked"
        environ["adv.added"] = 1
        environ["HTTP_HOST"] = "evil.test"
        environ["REMOTE_ADDR"] = "6.6.6.6"
        environ["wsgi.url_scheme"] = "gopher"
        environ["SCRIPT_NAME"] = "/mounted"
        environ["CONTENT_TYPE"] = "evil/type"
        environ["CONTENT_LENGTH"] = "999"
        environ["SERVER_PROTOCOL"] = "HTTP/0.9"
        environ["REQUEST_METHOD"] = "BREW"
        for key in ("QUERY_STRING", "HTTP_USER_AGENT", "HTTP_ACCEPT", "SERVER_NAME"):
            environ.pop(key, None)
    elif do == "restore":
        # Every entry changed, then put back as it was: equal again, but changed.
        for key in list(environ):
            old = environ[key]
            environ[key] = "x"
            environ[key] = old
    elif do == "same-value":
        # Writes that change nothing: the same objects set again, misses.
        environ.update({})
        environ.pop("adv.absent", None)
        environ.setdefault("PATH_INFO", "/never")
        environ["PATH_INFO"] = environ["PATH_INFO"]
        environ.update(PATH_INFO=environ["PATH_INFO"])
    elif do == "clear-refill":
        saved = dict(environ)
        environ.clear()
        environ.update(reversed(list(saved.items())))
    elif do == "clear":
        environ.clear()
    elif do == "del-add":
        key = "HTTP_HOST" if "HTTP_HOST" in environ else "PATH_INFO"
        value = environ.pop(key)
        environ[key] = value  # same key and value, at the end of the dict
    elif do == "popitem":
        environ.popitem()
    elif do == "middleware":
        # A prefix middleware: SCRIPT_NAME/PATH_INFO moved, then moved back.
        path = environ["PATH_INFO"]
        environ["SCRIPT_NAME"] += "/mw"
        environ["PATH_INFO"] = path[len("/mw") :] if path.startswith("/mw") else path
        environ["PATH_INFO"] = path
        environ["SCRIPT_NAME"] = environ["SCRIPT_NAME"][: -len("/mw")]
    elif do == "thread":
        t = threading.Thread(target=_thread_mutate, args=(environ, kept), daemon=True)
        t.start()
        kept["thread"] = t
    elif do == "exc":
        try:
            raise ValueError("adversarial: kept in a traceback")
        except ValueError as exc:
            kept["exc"] = exc  # the traceback holds this frame, and the environ
    elif do == "hunt-hold":
        kept["hunted"] = others(environ)
        report["hunted"] = len(kept["hunted"])
    elif do == "hunt-mutate":
        found = others(environ)
        for env in found:
            env["PATH_INFO"] = "/hunted"
            env["adv.hunted"] = True
            env.pop("HTTP_HOST", None)
        report["hunted"] = len(found)
        del found
    elif do == "hunt-restore":
        found = others(environ)
        for env in found:
            old = env.get("PATH_INFO")
            env["PATH_INFO"] = "/hunted"
            env["PATH_INFO"] = old
        report["hunted"] = len(found)
        del found
    elif do == "hunt-templates":
        found = templates()
        for env in found:
            env["adv.template"] = "changed through gc"
            env.pop("HTTP_HOST", None)
        report["hunted"] = len(found)
        del found
    elif do == "hunt-drop":
        kept.pop("hunted", None)
    elif do == "weak-hunt":
        # A dict takes no weak reference: the attempt must fail, not hold it.
        try:
            weakref.ref(environ)
            report["weakref"] = "ok"
        except TypeError:
            report["weakref"] = "TypeError"
    elif do == "report":
        env = kept.get("environ")
        if env is not None:
            report["kept"] = snapshot(env)
            stream = env.get("wsgi.input")
            if stream is not None and hasattr(stream, "read"):
                report["kept_input_rest"] = stream.read().decode("latin-1")
        if "input" in kept:
            report["kept_input_rest"] = kept["input"].read().decode("latin-1")
        if "exc" in kept:
            frame_env = kept["exc"].__traceback__.tb_frame.f_locals["environ"]
            report["exc_environ"] = snapshot(frame_env)
        if "thread" in kept:
            kept["thread"].join(10)
            report["thread_saw"] = kept.get("thread_saw")
        if "hunted" in kept:
            report["hunted_paths"] = sorted(str(e.get("PATH_INFO")) for e in kept["hunted"])
    return report


def app(environ, start_response):
    before = snapshot(environ)
    q = query(environ)
    do = q.get("do", "")
    kept = slot(q.get("tag", "-"))
    read = q.get("read", "all")
    if read == "all":
        body = environ["wsgi.input"].read()
    elif read == "none":
        body = b""
    else:
        body = environ["wsgi.input"].read(int(read))
    report = act(environ, do, kept)
    data = json.dumps(
        {"environ": before, "body": body.decode("latin-1"), "report": report},
        sort_keys=True,
    ).encode()
    start_response("200 OK", [*JSON, ("Content-Length", str(len(data)))])
    if do == "gen":

        def gen():
            yield data[:10]
            yield environ["PATH_INFO"].encode()[:0]  # the generator holds the environ
            yield data[10:]

        return gen()
    if do in ("close-keep", "close-change"):
        return ClosingJSON(data, KeepInClose(environ, do.removeprefix("close-"), kept))
    return [data]


class ClosingJSON:
    """``data`` as the body; ``close()`` is ``inner``'s."""

    def __init__(self, data, inner):
        self.data, self.inner = data, inner

    def __iter__(self):
        yield self.data

    def close(self):
        self.inner.close()


# --- frameworks -----------------------------------------------------------------------


def _make_flask():
    from flask import Flask, request

    flask = Flask("adversarial")

    @flask.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE"])
    @flask.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
    def echo(path):
        return {
            "path": request.path,
            "script_root": request.script_root,
            "args": request.args.to_dict(flat=False),
            "headers": sorted(request.headers.items()),
            "data": request.get_data(as_text=True),
            "form": request.form.to_dict(flat=False),
            "method": request.method,
            "scheme": request.scheme,
            "remote_addr": request.remote_addr,
            "werkzeug_request_is_this": request.environ.get("werkzeug.request") is request,
        }

    return flask


_FLASK = None


def unframed(start_response):
    """``start_response`` without the framework's Content-Length: the body is rewrapped."""

    def call(status, headers, exc_info=None):
        kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
        return start_response(status, kept, exc_info)

    return call


def flask_app(environ, start_response):
    global _FLASK  # noqa: PLW0603 - made on first use: Flask is imported only here
    if _FLASK is None:
        _FLASK = _make_flask()
    before = snapshot(environ)
    result = _FLASK(environ, unframed(start_response))
    body = b"".join(result)
    if hasattr(result, "close"):
        result.close()
    inner = json.loads(body)
    return [json.dumps({"environ": before, "flask": inner}, sort_keys=True).encode()]


_DJANGO = None


def _make_django():
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="adversarial",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="apps.adversarial",
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            USE_TZ=True,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def django_view(request):
    from django.http import JsonResponse

    return JsonResponse(
        {
            "path": request.path,
            "path_info": request.path_info,
            "get": {k: request.GET.getlist(k) for k in sorted(request.GET)},
            "meta_http": sorted((k, v) for k, v in request.META.items() if k.startswith("HTTP_")),
            "body": request.body.decode("latin-1"),
            "method": request.method,
            "content_type": request.META.get("CONTENT_TYPE"),
            "scheme": request.scheme,
        }
    )


def _urlpatterns():
    from django.urls import re_path

    return [re_path(r"^.*$", django_view)]


def __getattr__(name):
    # Django reads ``urlpatterns`` from ROOT_URLCONF only once it is set up.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def django_app(environ, start_response):
    global _DJANGO  # noqa: PLW0603 - Django is set up on first use
    if _DJANGO is None:
        _DJANGO = _make_django()
    before = snapshot(environ)
    result = _DJANGO(environ, unframed(start_response))
    body = b"".join(result)
    result.close()
    inner = json.loads(body)
    return [json.dumps({"environ": before, "django": inner}, sort_keys=True).encode()]


# --- small bodies: byte-exact responses -------------------------------------------------


def small(environ, start_response):
    """A response made from the query: ``s`` status, ``h`` extra fields (``n`` of them,
    ``v`` bytes each), ``b`` body length (a byte pattern; ``b=-1``: no body item), ``cl``
    a declared Content-Length (``none``: none), ``how``: ``list`` (one item), ``tuple``,
    ``two`` (two items), ``write`` (write() then an empty list), ``bytearray``."""
    q = query(environ)
    status = q.get("s", "200 OK")
    n = int(q.get("n", "0"))
    v = int(q.get("v", "10"))
    size = int(q.get("b", "5"))
    fill = q.get("fill", "a").encode()
    body = bytes((fill[0] + i) % 256 for i in range(size)) if size >= 0 else b""
    fields = [("Content-Type", "application/octet-stream")]
    fields += [(f"X-Field-{i:03d}", chr(ord("a") + i % 26) * v) for i in range(n)]
    cl = q.get("cl", "none")
    if cl != "none":
        fields.append(("Content-Length", cl))
    how = q.get("how", "list")
    write = start_response(status, fields)
    if how == "tuple":
        return (body,)
    if how == "two":
        return [body[:1], body[1:]]
    if how == "write":
        write(body)
        return []
    if how == "bytearray":
        return [bytearray(body)]
    if size < 0:
        return []
    return [body]


# --- start_response called in unusual ways ---------------------------------------------


def sr_app(environ, start_response):  # noqa: C901, PLR0912 - one branch per way
    q = query(environ)
    how = q.get("how", "plain")
    kept = slot(q.get("tag", "-"))
    body = b"how=" + how.encode()
    headers = [("Content-Type", "text/plain"), ("X-How", how)]
    if how == "kwargs":
        start_response(status="201 Created", response_headers=headers)
    elif how == "kwargs-exc":
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("replaced")
        except ValueError:
            start_response(
                status="202 Accepted", response_headers=headers, exc_info=sys.exc_info()
            )
    elif how == "self":
        start_response.__self__("203 Non-Authoritative Information", headers)
    elif how == "partial":
        functools.partial(start_response, "206 Partial Content")(headers)
    elif how == "thread":
        done = []
        t = threading.Thread(target=lambda: done.append(start_response("200 OK", headers)))
        t.start()
        t.join(10)
    elif how == "keep":
        kept["sr"] = start_response
        kept["id"] = id(start_response)
        start_response("200 OK", headers)
    elif how == "keep-self":
        kept["self"] = start_response.__self__
        start_response("200 OK", headers)
    elif how == "reduce":
        kept["reduced"] = start_response.__reduce__()
        start_response("200 OK", headers)
    elif how == "use-kept":
        sr = kept.get("sr")
        owner = kept.get("self")
        reduced = kept.get("reduced")
        result = {
            "kept_is_this": sr is start_response if sr else None,
            "self_is_this": owner is start_response.__self__ if owner else None,
        }
        for name, target in (("sr", sr), ("self", owner)):
            if target is None:
                continue
            try:
                target("500 Leak", [("X-Leak", "1")])
                result[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported
                result[name] = type(exc).__name__
        if reduced is not None:
            fn, args = reduced
            result["reduced_is_this"] = fn(*args) is start_response
        start_response("200 OK", headers)
        return [json.dumps(result, sort_keys=True).encode()]
    elif how == "bad-then-good":
        try:
            start_response("200 OK", [("X-Good", "1"), ("X-Bad\n", "2")])
        except (ValueError, TypeError):
            pass
        start_response("200 OK", headers)
    elif how == "many-then-exc":
        many = [(f"X-Many-{i}", "m" * 50) for i in range(40)]
        start_response("200 OK", [("Content-Type", "text/plain"), *many])
        try:
            raise ValueError("replaced")
        except ValueError:
            start_response("500 Internal Server Error", headers, sys.exc_info())
    else:
        start_response("200 OK", headers)
    return [body]


def validated(environ, start_response):
    from wsgiref.validate import validator

    return validator(sr_app)(environ, start_response)
