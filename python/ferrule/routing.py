"""ferrule.routing: the seed's URL router, grown up.

The seed routes with a tuple of ``(url, function)`` pairs scanned one by one, and answers
an unknown URL with ``'404 not found'`` under status 200. :class:`Router` keeps that form
and gets HTTP right::

    from ferrule.routing import Router

    def index():
        return "index"

    app = Router((("/index/", index), ("/login/", login)))   # the seed's form, as written

    @app.route("/users/{id:int}", methods=["GET"])
    def user(request, id):
        return {"id": id, "q": request.query.get("q")}

Rules (the matching half runs in Rust, ``src/router/``, on matchit):

1. Patterns have static segments, ``{name}``, typed ``{name:int}``, ``{name:str}``,
   ``{name:path}`` and a trailing catch-all ``{*name}``. ``{{``/``}}`` are literal braces.
   Static segments win over parameters, parameters over catch-alls.
2. A typed parameter that does not convert (``/users/abc``) is a 404, never a 500.
3. A duplicate route, or one that differs from a registered route only in a parameter's
   name or type (``/u/{id:int}`` and ``/u/{name}``), raises :class:`RouteError` at
   registration, naming the registered route.
4. No match is a 404; a path that matches only under other methods is a 405 with
   ``Allow``; HEAD runs the GET view and sends no body; OPTIONS without a view is a 204
   with ``Allow``; when only the other trailing-slash form exists, a 308 (or 301)
   redirect points there.
5. A view takes no arguments (the seed), or any of ``request`` and the path parameters
   by name. It returns ``str`` (``text/html; charset=utf-8``), ``bytes`` (same type),
   ``dict``/``list`` (JSON), ``(body, status)``, ``(body, status, headers)`` or a
   :class:`Response`. :class:`HTTPError` becomes its response; any other exception goes
   to the server, which answers 500 and logs it.
6. Matching uses ``PATH_INFO`` only, so a Router honours ``SCRIPT_NAME``; it can
   :meth:`~Router.mount` any WSGI application under a prefix and
   :meth:`~Router.include` another Router's routes.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote

from ferrule._ferrule import RouteMatcher

__all__ = [
    "HTTPError",
    "Headers",
    "MultiDict",
    "Request",
    "Response",
    "RouteError",
    "Router",
    "UploadedFile",
    "redirect",
]

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
HeaderList = list[tuple[str, str]]

HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
NO_BODY_STATUSES = (204, 304)
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _status_line(status: int | str) -> tuple[int, str]:
    """Return ``(code, "NNN Reason")`` for an int or a ready status line."""
    if isinstance(status, str):
        return int(status[:3]), status
    if not 100 <= status <= 999:
        raise ValueError(f"HTTP status {status} is not in 100-999")
    return status, f"{status} {_PHRASES.get(status, 'Unknown')}"


# ===== errors =====


class RouteError(ValueError):
    """A route that cannot be registered: invalid, duplicate or conflicting.

    :param message: what is wrong, naming both routes for a conflict.
    :param pattern: the pattern being registered.
    :param existing: the registered pattern it collides with, or ``None``.
    """

    def __init__(self, message: str, pattern: str, existing: str | None = None) -> None:
        super().__init__(message)
        self.pattern = pattern
        self.existing = existing


class HTTPError(Exception):
    """Raise ``HTTPError(status)`` in a view to answer with that status.

    :param status: the HTTP status, 100-999.
    :param body: the body; default ``"<status> <reason>"`` as ``text/plain``.
    :param headers: extra response headers, a list of pairs or a dict.
    """

    def __init__(
        self,
        status: int,
        body: str | bytes | None = None,
        headers: HeaderList | Mapping[str, str] | None = None,
    ) -> None:
        self.status, line = _status_line(status)
        super().__init__(line)
        self.body = line if body is None else body
        self.headers = headers

    def response(self) -> Response:
        """The :class:`Response` this error stands for."""
        content_type = TEXT if isinstance(self.body, str) else None
        return Response(self.body, self.status, self.headers, content_type=content_type)


# ===== request =====


class MultiDict(Mapping[str, Any]):
    """A read-only mapping that keeps repeated keys: ``d[k]`` is the first value.

    :param pairs: ``(key, value)`` pairs in order.
    """

    def __init__(self, pairs: Iterable[tuple[str, Any]] = ()) -> None:
        self._data: dict[str, list[Any]] = {}
        for key, value in pairs:
            self._data.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> Any:
        return self._data[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def getall(self, key: str) -> list[Any]:
        """Every value of ``key`` in order; ``[]`` when absent."""
        return list(self._data.get(key, ()))

    def __repr__(self) -> str:
        return f"MultiDict({[(k, v) for k, vs in self._data.items() for v in vs]!r})"


class Headers(Mapping[str, str]):
    """The request headers, read from the environ; names are case-insensitive.

    Iteration yields ``Title-Case`` names; values are the environ's (latin-1) strings.
    """

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        key = name.upper().replace("-", "_")
        return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key

    def __getitem__(self, name: str) -> str:
        return self._environ[self._key(name)]

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").title()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield key.replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a ``multipart/form-data`` body (``Request.form()`` values)."""

    filename: str
    content_type: str
    data: bytes


class Request:
    """The request a view asked for with a ``request`` parameter.

    :param environ: the WSGI environ, kept as :attr:`environ`.
    :param path_params: the converted path parameters.

    Properties are computed on first use. :attr:`body` reads at most
    :attr:`max_body_size` bytes and raises ``HTTPError(413)`` beyond that.
    """

    #: The largest body :attr:`body` reads, in bytes. Default is 16 MiB.
    max_body_size = 16 * 1024 * 1024

    def __init__(self, environ: dict[str, Any], path_params: dict[str, Any] | None = None):
        self.environ = environ
        self.path_params: dict[str, Any] = path_params if path_params is not None else {}
        self._body: bytes | None = None

    @property
    def method(self) -> str:
        """``REQUEST_METHOD``, e.g. ``"GET"``."""
        return self.environ["REQUEST_METHOD"]

    @property
    def path(self) -> str:
        """``PATH_INFO`` decoded as UTF-8 (invalid bytes become U+FFFD)."""
        return _wsgi_to_text(self.environ.get("PATH_INFO", ""))

    @property
    def script_name(self) -> str:
        """``SCRIPT_NAME`` decoded as UTF-8: where this application is mounted."""
        return _wsgi_to_text(self.environ.get("SCRIPT_NAME", ""))

    @property
    def query(self) -> MultiDict:
        """The query string, percent-decoded as UTF-8; repeated keys kept, blanks kept."""
        raw = _wsgi_to_text(self.environ.get("QUERY_STRING", ""))
        return MultiDict(parse_qsl(raw, keep_blank_values=True))

    @property
    def headers(self) -> Headers:
        """The request headers, case-insensitive (``request.headers["content-type"]``)."""
        return Headers(self.environ)

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-case; ``""`` when absent."""
        return self.environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()

    @property
    def cookies(self) -> dict[str, str]:
        """``Cookie`` pairs (RFC 6265 §5.4); the first of repeated names wins."""
        cookies: dict[str, str] = {}
        for part in self.environ.get("HTTP_COOKIE", "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                cookies.setdefault(name.strip(), value)
        return cookies

    @property
    def body(self) -> bytes:
        """The request body, read once from ``wsgi.input``.

        ``CONTENT_LENGTH`` bytes, or up to EOF when the server marks the input as
        terminated (a chunked upload). Raises ``HTTPError(400)`` for a malformed
        length and ``HTTPError(413)`` beyond :attr:`max_body_size`.
        """
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self) -> bytes:
        stream = self.environ["wsgi.input"]
        length = self.environ.get("CONTENT_LENGTH", "")
        if length:
            try:
                size = int(length)
            except ValueError:
                raise HTTPError(400, "malformed Content-Length") from None
            if size > self.max_body_size:
                raise HTTPError(413)
            return stream.read(size) if size > 0 else b""
        if not self.environ.get("wsgi.input_terminated"):
            return b""
        chunks: list[bytes] = []
        total = 0
        while chunk := stream.read(65536):
            total += len(chunk)
            if total > self.max_body_size:
                raise HTTPError(413)
            chunks.append(chunk)
        return b"".join(chunks)

    def json(self) -> Any:
        """The body parsed as JSON; ``HTTPError(400)`` when it is not valid JSON."""
        try:
            return json.loads(self.body)
        except ValueError as err:
            raise HTTPError(400, f"invalid JSON body: {err}") from None

    def form(self) -> MultiDict:
        """The form fields of an urlencoded or ``multipart/form-data`` body.

        Text fields are ``str``; file parts are :class:`UploadedFile`. Another
        content type gives an empty :class:`MultiDict`; a multipart body that does
        not parse is ``HTTPError(400)``.
        """
        content_type = self.content_type
        if content_type == "application/x-www-form-urlencoded":
            text = self.body.decode("utf-8", "replace")
            return MultiDict(parse_qsl(text, keep_blank_values=True))
        if content_type == "multipart/form-data":
            return _parse_multipart(self.environ["CONTENT_TYPE"], self.body)
        return MultiDict()

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path!r}>"


def _wsgi_to_text(value: str) -> str:
    """Undo PEP 3333's latin-1 transport of bytes, decoding them as UTF-8."""
    if value.isascii():
        return value
    return value.encode("latin-1").decode("utf-8", "replace")


def _parse_multipart(content_type: str, body: bytes) -> MultiDict:
    """Parse ``multipart/form-data`` with the standard library's MIME parser."""
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise HTTPError(400, "malformed multipart/form-data body")
    pairs: list[tuple[str, Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            charset = part.get_content_charset() or "utf-8"
            pairs.append((name, data.decode(charset, "replace")))
        else:
            pairs.append((name, UploadedFile(filename, part.get_content_type(), data)))
    return MultiDict(pairs)


# ===== response =====


class Response:
    """A response a view can return.

    :param body: ``str`` (encoded as UTF-8), ``bytes``, or an iterable of ``bytes``
        (streamed as is).
    :param status: an ``int`` (reason filled in) or a status line ``"201 Created"``.
    :param headers: a list of ``(name, value)`` pairs or a dict.
    :param content_type: the ``Content-Type``; default ``text/html; charset=utf-8``
        unless ``headers`` has one. None is sent for 204 and 304.
    """

    def __init__(
        self,
        body: str | bytes | Iterable[bytes] = b"",
        status: int | str = 200,
        headers: HeaderList | Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.status, self.status_line = _status_line(status)
        self.body: bytes | Iterable[bytes] = body.encode() if isinstance(body, str) else body
        if headers is None:
            self.headers: HeaderList = []
        elif isinstance(headers, Mapping):
            self.headers = list(headers.items())
        else:
            self.headers = list(headers)
        if self.status not in NO_BODY_STATUSES and not any(
            name.lower() == "content-type" for name, _ in self.headers
        ):
            self.headers.append(("Content-Type", content_type or HTML))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Send this response as a WSGI application (no body for HEAD)."""
        headers = self.headers
        body = self.body
        if isinstance(body, bytes):
            if self.status in NO_BODY_STATUSES:
                start_response(self.status_line, headers)
                return []
            if not any(name.lower() == "content-length" for name, _ in headers):
                headers = [*headers, ("Content-Length", str(len(body)))]
            start_response(self.status_line, headers)
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
        start_response(self.status_line, headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            close = getattr(body, "close", None)
            if close is not None:
                close()
            return []
        return body

    def __repr__(self) -> str:
        return f"<Response {self.status_line!r}>"


def redirect(location: str, status: int = 302) -> Response:
    """A redirect to ``location`` (a URL or absolute path) with an empty body."""
    return Response(b"", status, [("Location", location)], content_type=TEXT)


def _to_response(result: Any, view: Callable[..., Any]) -> Response:
    """Turn what a view returned into a :class:`Response` (rule 5)."""
    if isinstance(result, Response):
        return result
    if isinstance(result, (str, bytes)):
        return Response(result)
    if isinstance(result, (dict, list)):
        return Response(json.dumps(result).encode(), content_type=JSON)
    if isinstance(result, tuple) and len(result) in (2, 3):
        response = _to_response(result[0], view)
        response.status, response.status_line = _status_line(result[1])
        if response.status in NO_BODY_STATUSES:
            response.headers = [h for h in response.headers if h[0].lower() != "content-type"]
        if len(result) == 3:
            extra = result[2]
            extra = list(extra.items()) if isinstance(extra, Mapping) else list(extra)
            names = {name.lower() for name, _ in extra}
            response.headers = [h for h in response.headers if h[0].lower() not in names]
            response.headers.extend(extra)
        return response
    raise TypeError(
        f"view {getattr(view, '__qualname__', view)!r} returned {type(result).__name__}; "
        "return str, bytes, dict, list, a (body, status[, headers]) tuple or a Response"
    )


# ===== router =====


@dataclass(frozen=True)
class _Route:
    """One registration: a view with its call plan, or a mounted WSGI application."""

    pattern: str
    methods: tuple[str, ...] | None
    view: Callable[..., Any]
    wants_request: bool = False
    pass_all: bool = True
    passed: tuple[str, ...] = ()
    mount_prefix: str | None = None


def _call_plan(view: Callable[..., Any], pattern: str, names: list[str]) -> dict[str, Any]:
    """Decide how to call ``view``: with ``request`` and which path parameters."""
    try:
        signature = inspect.signature(view)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return {"wants_request": False, "pass_all": not names, "passed": ()}
    wants_request = False
    takes_kwargs = False
    passed: list[str] = []
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            takes_kwargs = True
        elif param.kind is param.VAR_POSITIONAL:
            continue
        elif param.kind is not param.POSITIONAL_ONLY and param.name == "request":
            wants_request = True
        elif param.kind is not param.POSITIONAL_ONLY and param.name in names:
            passed.append(param.name)
        elif param.default is param.empty:
            raise TypeError(
                f"view {getattr(view, '__qualname__', view)!r} for {pattern!r} takes "
                f"{param.name!r}, which is neither 'request' nor a parameter of the pattern"
            )
    pass_all = takes_kwargs or len(passed) == len(names)
    return {"wants_request": wants_request, "pass_all": pass_all, "passed": tuple(passed)}


class Router:
    """A WSGI application that routes requests to views by path and method.

    :param routes: the seed's form: ``(pattern, view)`` or ``(pattern, view, methods)``
        tuples, registered in order.
    :param redirect_slash: status of the trailing-slash redirect (301 or 308), or
        ``None`` for a plain 404. Default is 308, which keeps the method and body.
    :raises RouteError: for an invalid, duplicate or conflicting route in ``routes``.
    """

    def __init__(
        self,
        routes: Iterable[tuple[Any, ...]] = (),
        *,
        redirect_slash: int | None = 308,
    ) -> None:
        if redirect_slash not in (None, 301, 308):
            raise ValueError(f"redirect_slash must be 301, 308 or None, not {redirect_slash!r}")
        self.redirect_slash = redirect_slash
        self._matcher = RouteMatcher(redirect_slash is not None)
        self._routes: list[_Route] = []
        self._registrations: list[tuple[str, str, Any, Any]] = []
        for route in routes:
            self.add(*route)

    def add(
        self,
        pattern: str,
        view: Callable[..., Any],
        methods: str | Iterable[str] | None = None,
    ) -> Callable[..., Any]:
        """Register ``view`` for ``pattern``; returns ``view``.

        :param pattern: e.g. ``"/users/{id:int}"`` (module docs, rule 1).
        :param view: takes nothing, or any of ``request`` and the path parameters by
            name (defaults and ``**kwargs`` allowed).
        :param methods: method names, or ``"*"`` for every method. Default is
            ``["GET"]`` (HEAD and OPTIONS come with it).
        :raises RouteError: invalid pattern or method, duplicate, or conflict; the
            message and :attr:`RouteError.existing` name the registered route.
        :raises TypeError: ``view`` requires a parameter that the pattern lacks.
        """
        if isinstance(methods, str):
            method_list = None if methods == "*" else [methods]
        else:
            method_list = ["GET"] if methods is None else list(methods)
        handler = len(self._routes)
        names = self._insert(pattern, method_list, handler)
        if "request" in names:
            raise RouteError(
                f"invalid route {pattern!r}: 'request' is reserved for the Request",
                pattern,
            )
        plan = _call_plan(view, pattern, names)
        methods_tuple = None if method_list is None else tuple(m.upper() for m in method_list)
        self._routes.append(_Route(pattern, methods_tuple, view, **plan))
        self._registrations.append(("route", pattern, view, methods_tuple))
        return view

    def route(
        self, pattern: str, methods: str | Iterable[str] | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`add`: ``@app.route("/users/{id}", methods=["GET"])``."""

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            return self.add(pattern, view, methods)

        return decorator

    def mount(self, prefix: str, app: WsgiApp) -> None:
        """Serve every request under ``prefix`` with the WSGI application ``app``.

        ``app`` sees ``SCRIPT_NAME`` extended by ``prefix`` and ``PATH_INFO`` holding
        the rest (``""`` for the prefix itself), for every method. ``prefix`` is static
        (no parameters); ``"/"`` or ``""`` makes ``app`` the fallback for unmatched paths.

        :raises RouteError: the prefix has braces or collides with a registered route.
        """
        prefix = prefix.rstrip("/")
        if "{" in prefix or "}" in prefix or (prefix and not prefix.startswith("/")):
            raise RouteError(
                f"invalid mount prefix {prefix!r}: it must be a static path like '/api'",
                prefix,
            )
        patterns = [prefix, prefix + "/", prefix + "/{*path}"] if prefix else ["/", "/{*path}"]
        for pattern in patterns:
            handler = len(self._routes)
            self._insert(pattern, None, handler)
            self._routes.append(_Route(pattern, None, app, mount_prefix=prefix))
        self._registrations.append(("mount", prefix, app, None))

    def include(self, router: Router, prefix: str = "") -> None:
        """Copy ``router``'s routes and mounts into this one, under ``prefix``.

        Later changes to ``router`` are not seen. Conflicts are checked as for
        :meth:`add`; ``router``'s own ``redirect_slash`` is not used.
        """
        prefix = prefix.rstrip("/")
        for kind, pattern, target, methods in router._registrations:
            if kind == "mount":
                self.mount(prefix + pattern or "/", target)
            else:
                self.add(prefix + pattern, target, "*" if methods is None else methods)

    def match(self, method: str, path: str) -> tuple[Callable[..., Any], dict[str, Any]]:
        """Return ``(view, path_params)`` for a request, as :meth:`__call__` does.

        ``path`` is a decoded path such as ``"/users/42"``. Everything that is not a
        match raises the :class:`HTTPError` the router would answer with: 404; 405
        with ``Allow``; 204 with ``Allow`` for OPTIONS; or the trailing-slash redirect
        with ``Location`` (the path only).
        """
        status, handler, data = self._matcher.lookup(method, path)
        if status == 200:
            return self._routes[handler].view, data
        raise self._miss(status, data, "")

    def _insert(self, pattern: str, methods: list[str] | None, handler: int) -> list[str]:
        try:
            return self._matcher.insert(pattern, methods, handler)
        except ValueError as err:
            raise RouteError(*err.args) from None

    def _miss(self, status: int, data: str | None, script_name: str, query: str = "") -> HTTPError:
        """The response for a lookup that found no view."""
        if status == 404:
            return HTTPError(404)
        if status == 405:
            return HTTPError(405, headers=[("Allow", data or "")])
        if status == 204:
            return HTTPError(204, b"", headers=[("Allow", data or "")])
        location = quote(script_name + (data or ""), safe="/!$&'()*+,;=:@~")
        if location.startswith("//"):  # never a scheme-relative URL to another host
            location = "/%2F" + location[2:]
        if query:
            location += "?" + query
        return HTTPError(self.redirect_slash or 308, b"", headers=[("Location", location)])

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI entry point (PEP 3333)."""
        path = _wsgi_to_text(environ.get("PATH_INFO", ""))
        status, handler, data = self._matcher.lookup(environ["REQUEST_METHOD"], path)
        if status != 200:
            script_name = _wsgi_to_text(environ.get("SCRIPT_NAME", ""))
            query = environ.get("QUERY_STRING", "")
            return self._miss(status, data, script_name, query).response()(environ, start_response)
        route = self._routes[handler]
        if route.mount_prefix is not None:
            return self._call_mounted(route, environ, start_response)
        kwargs = data if route.pass_all else {name: data[name] for name in route.passed}
        if route.wants_request:
            kwargs = {**kwargs, "request": Request(environ, data)}
        try:
            response = _to_response(route.view(**kwargs), route.view)
        except HTTPError as err:
            response = err.response()
        return response(environ, start_response)

    @staticmethod
    def _call_mounted(
        route: _Route, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        prefix = (route.mount_prefix or "").encode().decode("latin-1")
        inner = dict(environ)
        inner["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        inner["PATH_INFO"] = environ.get("PATH_INFO", "")[len(prefix) :]
        return route.view(inner, start_response)

    def __len__(self) -> int:
        """The number of registered routes and mounts (registration calls)."""
        return len(self._registrations)

    def __repr__(self) -> str:
        return f"<Router with {len(self)} routes>"
