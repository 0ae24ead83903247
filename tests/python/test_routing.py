"""Unit tests of :mod:`ferrule.routing`, driven through WSGI without a server.

Every request goes through :func:`call`, which wraps the application in
:func:`wsgiref.validate.validator` (bottle's habit), so each test also checks that the
router speaks PEP 3333; validator warnings are errors here.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
from ferrule.routing import (
    Headers,
    HTTPError,
    MultiDict,
    Request,
    Response,
    RouteError,
    Router,
    UploadedFile,
    redirect,
)

pytestmark = pytest.mark.filterwarnings("error")


@dataclass
class Result:
    status: int
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, values
        return values[0] if values else None

    def json(self) -> Any:
        assert self.header("Content-Type") == "application/json"
        return json.loads(self.body)


def call(
    app: Any,
    method: str = "GET",
    path: str = "/",
    *,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    script_name: str = "",
    validate: bool = True,
) -> Result:
    """Run one request through ``validator(app)``; return status, headers and body."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": script_name,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body),
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list, exc_info: Any = None) -> Any:
        seen["status"] = status
        seen["headers"] = response_headers
        return lambda data: None

    wrapped = validator(app) if validate else app
    iterable = wrapped(environ, start_response)
    try:
        data = b"".join(iterable)
    finally:
        if hasattr(iterable, "close"):
            iterable.close()
    return Result(int(seen["status"][:3]), seen["status"], seen["headers"], data)


# ===== the seed's form =====


def index():
    return "index"


def login():
    return "login"


def routers():
    urlpatterns = (
        ("/index/", index),
        ("/login/", login),
    )

    return urlpatterns


def test_seed_tuple_form_works_as_written() -> None:
    app = Router(routers())
    result = call(app, "GET", "/index/")
    assert (result.status_line, result.body) == ("200 OK", b"index")
    assert result.header("Content-Type") == "text/html; charset=utf-8"
    assert result.header("Content-Length") == "5"
    assert call(app, "GET", "/login/").body == b"login"


def test_unknown_url_is_a_404_status_not_the_seeds_200() -> None:
    app = Router(routers())
    result = call(app, "GET", "/nowhere/")
    assert result.status == 404
    assert result.status_line == "404 Not Found"
    assert result.body == b"404 Not Found"
    assert result.header("Content-Type") == "text/plain; charset=utf-8"


def test_bytes_views_and_three_tuples_with_methods() -> None:
    def upload():
        return b"\x00raw"

    app = Router([("/raw", lambda: b"bytes"), ("/up", upload, ["POST"])])
    assert call(app, "GET", "/raw").body == b"bytes"
    assert call(app, "POST", "/up").body == b"\x00raw"
    assert call(app, "GET", "/up").status == 405


# ===== registration =====


def test_route_decorator_and_add_return_the_view() -> None:
    app = Router()

    @app.route("/users/{id}", methods=["GET"])
    def show(id):
        return f"user {id}"

    def delete(id):
        return ("", 204)

    assert app.add("/users/{id}", delete, methods=["delete"]) is delete
    assert show("x") == "user x"
    assert call(app, "GET", "/users/ann").body == b"user ann"
    deleted = call(app, "DELETE", "/users/ann")
    assert deleted.status_line == "204 No Content"
    assert deleted.header("Content-Type") is None
    assert len(app) == 2


def test_conflicting_types_raise_and_name_the_registered_route() -> None:
    app = Router()
    app.add("/u/{id:int}", index)
    with pytest.raises(RouteError) as info:
        app.add("/u/{name}", index)
    assert info.value.pattern == "/u/{name}"
    assert info.value.existing == "/u/{id:int}"
    assert "'/u/{id:int}'" in str(info.value)
    with pytest.raises(RouteError) as info:
        app.add("/u/{id}", index, methods=["POST"])  # same name, other type
    assert info.value.existing == "/u/{id:int}"


def test_duplicate_route_and_method_raises() -> None:
    app = Router()
    app.add("/a", index, ["GET", "POST"])
    with pytest.raises(RouteError, match=r"'/a' is already registered for POST") as info:
        app.add("/a", login, ["post"])
    assert info.value.existing == "/a"
    app.add("/a", login, ["PUT"])  # another method on the same pattern is fine
    assert call(app, "PUT", "/a").body == b"login"


def test_seed_tuple_with_duplicate_url_raises_at_construction() -> None:
    with pytest.raises(RouteError, match="already registered for GET"):
        Router((("/index/", index), ("/index/", login)))


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("index", "must start with '/'"),
        ("/u/{id", "unclosed '{'"),
        ("/u/{id:float}", "unknown parameter type 'float'"),
        ("/u/{id}/{id}", "appears twice"),
        ("/f/{p:path}/x", "must end the pattern"),
        ("/u/{request}", "'request' is reserved"),
    ],
)
def test_invalid_patterns_raise_route_error(pattern: str, fragment: str) -> None:
    with pytest.raises(RouteError, match=fragment.replace("(", r"\(")) as info:
        Router().add(pattern, lambda **kw: "")
    assert info.value.pattern == pattern
    assert info.value.existing is None


def test_invalid_method_name_raises() -> None:
    with pytest.raises(RouteError, match="not an HTTP method name"):
        Router().add("/", index, ["GE T"])


def test_view_parameter_missing_from_pattern_raises_type_error() -> None:
    def view(request, slug):
        return slug

    with pytest.raises(TypeError, match="takes 'slug', which is neither 'request' nor"):
        Router().add("/posts/{id}", view)


def test_redirect_slash_must_be_301_308_or_none() -> None:
    with pytest.raises(ValueError, match="301, 308 or None"):
        Router(redirect_slash=302)


# ===== patterns and typed parameters =====


def test_typed_parameters_are_converted_before_the_call() -> None:
    app = Router()
    app.add("/u/{id:int}", lambda id: {"id": id, "type": type(id).__name__})
    app.add("/s/{slug:str}", lambda slug: {"slug": slug})
    app.add("/f/{p:path}", lambda p: {"p": p})
    app.add("/static/{*rest}", lambda rest: {"rest": rest})
    assert call(app, "GET", "/u/0042").json() == {"id": 42, "type": "int"}
    assert call(app, "GET", "/s/hello-world").json() == {"slug": "hello-world"}
    assert call(app, "GET", "/f/a/b/c.txt").json() == {"p": "a/b/c.txt"}
    assert call(app, "GET", "/static/css/site.css").json() == {"rest": "css/site.css"}


@pytest.mark.parametrize("path", ["/u/abc", "/u/-1", "/u/1.5", "/u/99999999999999999999"])
def test_failed_conversion_is_404_not_500(path: str) -> None:
    app = Router()
    app.add("/u/{id:int}", lambda id: str(id))
    assert call(app, "GET", path).status == 404


def test_static_routes_win_over_parameters_whatever_the_order() -> None:
    app = Router()
    app.add("/{*rest}", lambda rest: "catch-all")
    app.add("/users/{name}", lambda name: "param")
    app.add("/users/me", lambda: "static")
    assert call(app, "GET", "/users/me").body == b"static"
    assert call(app, "GET", "/users/bob").body == b"param"
    assert call(app, "GET", "/other/x").body == b"catch-all"


def test_view_may_take_a_subset_of_parameters_or_kwargs() -> None:
    app = Router()
    app.add("/a/{x}/{y:int}", lambda y: {"y": y})
    app.add("/b/{x}/{y:int}", lambda request, **kw: {"kw": kw, "pp": request.path_params})
    assert call(app, "GET", "/a/q/3").json() == {"y": 3}
    assert call(app, "GET", "/b/q/3").json() == {
        "kw": {"x": "q", "y": 3},
        "pp": {"x": "q", "y": 3},
    }


def test_non_ascii_paths_match_as_utf8() -> None:
    app = Router()
    app.add("/café/{name}", lambda request, name: {"name": name, "path": request.path})
    wsgi_path = "/café/żółw".encode().decode("latin-1")  # PEP 3333's transport
    assert call(app, "GET", wsgi_path).json() == {"name": "żółw", "path": "/café/żółw"}


def test_escaped_braces_are_literal() -> None:
    app = Router()
    app.add("/{{x}}", lambda: "literal")
    assert call(app, "GET", "/{x}").body == b"literal"


# ===== HTTP semantics =====


def test_405_lists_allowed_methods() -> None:
    app = Router()
    app.add("/items", index)
    app.add("/items", login, methods=["POST"])
    result = call(app, "DELETE", "/items")
    assert result.status_line == "405 Method Not Allowed"
    assert result.header("Allow") == "GET, HEAD, OPTIONS, POST"


def test_head_runs_get_view_without_body() -> None:
    calls: list[str] = []

    def page(request):
        calls.append(request.method)
        return "<p>hello</p>"

    app = Router([("/p", page)])
    result = call(app, "HEAD", "/p")
    assert result.status == 200
    assert result.body == b""
    assert result.header("Content-Length") == "12"
    assert calls == ["HEAD"]


def test_head_of_a_streamed_response_closes_it() -> None:
    closed: list[bool] = []

    class Stream:
        def __iter__(self):
            yield b"never sent"

        def close(self):
            closed.append(True)

    app = Router([("/s", lambda: Response(Stream(), content_type="text/plain"))])
    assert call(app, "HEAD", "/s").body == b""
    assert closed == [True]
    assert call(app, "GET", "/s").body == b"never sent"


def test_options_answered_with_allow_unless_a_view_exists() -> None:
    app = Router()
    app.add("/a", index, ["GET", "PUT"])
    app.add("/b", lambda: ("custom", 200, {"Allow": "GET"}), ["OPTIONS"])
    result = call(app, "OPTIONS", "/a")
    assert result.status_line == "204 No Content"
    assert result.header("Allow") == "GET, HEAD, OPTIONS, PUT"
    assert result.body == b""
    assert call(app, "OPTIONS", "/b").body == b"custom"


def test_trailing_slash_redirect_keeps_script_name_and_query() -> None:
    app = Router(routers())
    result = call(app, "GET", "/index", query="a=1&b=2", script_name="/shop")
    assert result.status_line == "308 Permanent Redirect"
    assert result.header("Location") == "/shop/index/?a=1&b=2"
    assert result.body == b""


def test_trailing_slash_redirect_301_and_off() -> None:
    assert call(Router(routers(), redirect_slash=301), "GET", "/login").status == 301
    assert call(Router(routers(), redirect_slash=None), "GET", "/login").status == 404


def test_redirect_location_is_percent_encoded_and_never_scheme_relative() -> None:
    app = Router([("/caf\u00e9/", index), ("/{a}/", index)])
    wsgi_path = "/café".encode().decode("latin-1")
    assert call(app, "GET", wsgi_path).header("Location") == "/caf%C3%A9/"
    assert call(Router([("/x", index)]), "GET", "/x/").header("Location") == "/x"


# ===== views' return values and errors =====


def test_return_values_become_responses() -> None:
    app = Router()
    app.add("/dict", lambda: {"a": [1, 2]})
    app.add("/list", lambda: [1, "x"])
    app.add("/pair", lambda: ("made", 201))
    app.add("/triple", lambda: ({"ok": True}, "202 Accepted", [("X-Id", "7")]))
    app.add("/resp", lambda: Response("plain", 418, content_type="text/plain"))
    app.add("/typed", lambda: ("<x/>", 200, {"Content-Type": "application/xml"}))
    assert call(app, "GET", "/dict").json() == {"a": [1, 2]}
    assert call(app, "GET", "/list").json() == [1, "x"]
    pair = call(app, "GET", "/pair")
    assert (pair.status_line, pair.body) == ("201 Created", b"made")
    triple = call(app, "GET", "/triple")
    assert triple.status_line == "202 Accepted"
    assert triple.header("X-Id") == "7"
    assert triple.json() == {"ok": True}
    resp = call(app, "GET", "/resp")
    assert resp.status_line == "418 I'm a Teapot"
    assert resp.header("Content-Type") == "text/plain"
    assert call(app, "GET", "/typed").header("Content-Type") == "application/xml"


def test_redirect_helper() -> None:
    app = Router([("/old", lambda: redirect("/new", 301))])
    result = call(app, "GET", "/old")
    assert (result.status, result.header("Location")) == (301, "/new")


def test_http_error_becomes_its_response() -> None:
    def view(id):
        raise HTTPError(403, "no entry", headers={"X-Reason": "closed"})

    app = Router([("/x/{id}", view)])
    result = call(app, "GET", "/x/1")
    assert result.status_line == "403 Forbidden"
    assert result.body == b"no entry"
    assert result.header("X-Reason") == "closed"
    assert result.header("Content-Type") == "text/plain; charset=utf-8"


def test_other_exceptions_reach_the_server() -> None:
    def broken():
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        call(Router([("/b", broken)]), "GET", "/b", validate=False)


def test_unsupported_return_value_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="returned NoneType"):
        call(Router([("/n", lambda: None)]), "GET", "/n", validate=False)


# ===== Request =====


def test_request_query_headers_cookies_and_environ() -> None:
    seen: dict[str, Any] = {}

    def view(request: Request):
        seen["request"] = request
        return {
            "method": request.method,
            "path": request.path,
            "q": request.query.getall("q"),
            "first": request.query["q"],
            "blank": request.query["blank"],
            "ua": request.headers["user-agent"],
            "UA": request.headers["USER-AGENT"],
            "cookies": request.cookies,
        }

    app = Router([("/r", view)])
    result = call(
        app,
        "GET",
        "/r",
        query="q=1&q=two&blank=&u=%C3%A9",
        headers={"User-Agent": "t/1", "Cookie": 'a=1; b="quoted"; a=2; junk'},
    )
    assert result.json() == {
        "method": "GET",
        "path": "/r",
        "q": ["1", "two"],
        "first": "1",
        "blank": "",
        "ua": "t/1",
        "UA": "t/1",
        "cookies": {"a": "1", "b": "quoted"},
    }
    request = seen["request"]
    assert request.query["u"] == "é"
    assert request.environ["PATH_INFO"] == "/r"
    assert "User-Agent" in list(request.headers)
    assert request.headers.get("x-missing") is None


def test_request_json_body() -> None:
    app = Router([("/j", lambda request: {"got": request.json()}, ["POST"])])
    body = json.dumps({"n": 1, "s": "ż"}).encode()
    result = call(app, "POST", "/j", body=body, headers={"Content-Type": "application/json"})
    assert result.json() == {"got": {"n": 1, "s": "ż"}}
    bad = call(app, "POST", "/j", body=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status == 400
    assert bad.body.startswith(b"invalid JSON body")


def test_request_urlencoded_form() -> None:
    def view(request):
        form = request.form()
        return {"a": form.getall("a"), "b": form["b"], "type": request.content_type}

    app = Router([("/f", view, ["POST"])])
    result = call(
        app,
        "POST",
        "/f",
        body=b"a=1&a=%C5%BC&b=x+y",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert result.json() == {
        "a": ["1", "ż"],
        "b": "x y",
        "type": "application/x-www-form-urlencoded",
    }


def test_request_multipart_form_with_file() -> None:
    seen: dict[str, Any] = {}

    def view(request):
        seen["form"] = request.form()
        return ""

    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="title"\r\n\r\n'
        b"hello\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="doc"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n"
        b"line1\r\nline2\r\n"
        b"--XyZ--\r\n"
    )
    app = Router([("/m", view, ["POST"])])
    result = call(
        app, "POST", "/m", body=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
    )
    assert result.status == 200
    form = seen["form"]
    assert form["title"] == "hello"
    assert form["doc"] == UploadedFile("a.txt", "text/plain", b"line1\r\nline2")


def test_request_body_limit_and_bad_length() -> None:
    class Small(Request):
        max_body_size = 4

    request = Small({"CONTENT_LENGTH": "5", "wsgi.input": io.BytesIO(b"12345")})
    with pytest.raises(HTTPError) as info:
        _ = request.body
    assert info.value.status == 413
    bad = Request({"CONTENT_LENGTH": "x", "wsgi.input": io.BytesIO(b"")})
    with pytest.raises(HTTPError) as info:
        _ = bad.body
    assert info.value.status == 400


def test_request_body_until_eof_when_input_terminated() -> None:
    environ = {"wsgi.input": io.BytesIO(b"chunked body"), "wsgi.input_terminated": True}
    assert Request(environ).body == b"chunked body"
    assert Request({"wsgi.input": io.BytesIO(b"ignored")}).body == b""


def test_form_of_other_content_type_is_empty() -> None:
    request = Request({"CONTENT_TYPE": "text/plain", "wsgi.input": io.BytesIO(b"")})
    assert dict(request.form()) == {}


def test_multidict_and_headers_mappings() -> None:
    multi = MultiDict([("a", "1"), ("b", "2"), ("a", "3")])
    assert (multi["a"], multi.getall("a"), multi.getall("z"), len(multi)) == (
        "1",
        ["1", "3"],
        [],
        2,
    )
    headers = Headers({"HTTP_X_A": "1", "CONTENT_TYPE": "t/x", "PATH_INFO": "/"})
    assert sorted(headers) == ["Content-Type", "X-A"]
    assert headers["content-type"] == "t/x"
    assert len(headers) == 2


# ===== mounting and including =====


def environ_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO")
    return [json.dumps({key: environ[key] for key in keys}).encode()]


def test_mount_shifts_script_name_and_path_info() -> None:
    app = Router([("/index/", index)])
    app.mount("/legacy", environ_app)
    assert call(app, "DELETE", "/legacy/a/b", script_name="/site").json() == {
        "REQUEST_METHOD": "DELETE",
        "SCRIPT_NAME": "/site/legacy",
        "PATH_INFO": "/a/b",
    }
    assert call(app, "GET", "/legacy/").json()["PATH_INFO"] == "/"
    assert call(app, "GET", "/legacy").json()["PATH_INFO"] == ""
    assert call(app, "GET", "/index/").body == b"index"


def test_mounted_router_honours_script_name() -> None:
    inner = Router([("/", lambda: "inner root"), ("/page/", lambda: "inner page")])
    outer = Router()
    outer.mount("/sub", inner)
    assert call(outer, "GET", "/sub/page/").body == b"inner page"
    # "/sub" reaches the inner router as PATH_INFO "", which redirects to "/sub/".
    result = call(outer, "GET", "/sub")
    assert (result.status, result.header("Location")) == (308, "/sub/")
    assert call(outer, "GET", "/sub/page").header("Location") == "/sub/page/"


def test_root_mount_is_a_fallback() -> None:
    app = Router([("/index/", index)])
    app.mount("/", environ_app)
    assert call(app, "GET", "/index/").body == b"index"
    assert call(app, "GET", "/elsewhere").json()["PATH_INFO"] == "/elsewhere"


def test_invalid_mount_prefix_raises() -> None:
    with pytest.raises(RouteError, match="static path"):
        Router().mount("/u/{id}", environ_app)


def test_include_copies_routes_under_a_prefix() -> None:
    api = Router()
    api.add("/items/{id:int}", lambda id: {"id": id})
    api.add("/items", lambda: "created", ["POST"])
    api.mount("/raw", environ_app)
    app = Router(routers())
    app.include(api, prefix="/api/")
    assert call(app, "GET", "/api/items/3").json() == {"id": 3}
    assert call(app, "POST", "/api/items").body == b"created"
    assert call(app, "GET", "/api/raw/x").json()["SCRIPT_NAME"] == "/api/raw"
    assert call(app, "GET", "/index/").body == b"index"
    with pytest.raises(RouteError) as info:
        app.include(api, prefix="/api")
    assert info.value.existing == "/api/items/{id:int}"


# ===== match() =====


def test_match_returns_view_and_params_or_raises() -> None:
    app = Router(routers())
    app.add("/u/{id:int}", lambda id: id)
    view, params = app.match("GET", "/u/5")
    assert params == {"id": 5}
    assert view(**params) == 5
    assert app.match("GET", "/index/") == (index, {})
    with pytest.raises(HTTPError) as info:
        app.match("POST", "/index/")
    assert info.value.status == 405
    assert info.value.headers == [("Allow", "GET, HEAD, OPTIONS")]
    with pytest.raises(HTTPError) as info:
        app.match("GET", "/index")
    assert (info.value.status, info.value.headers) == (308, [("Location", "/index/")])
    with pytest.raises(HTTPError) as info:
        app.match("GET", "/u/x")
    assert info.value.status == 404
