"""Black-box tests of ``ferrule.routing``: ``examples/seed_router.py`` under a real ferrule.

Each test starts ``ferrule examples.seed_router:app`` through the ``ferrule_server``
fixture of ``tests/conftest.py`` (``cwd`` = the repository root, so ``examples.*``
imports); clients are httpx and requests on 127.0.0.1, with redirects checked rather
than followed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


@pytest.fixture
def server(ferrule_server):
    """A ferrule process serving ``examples.seed_router:app``."""
    return ferrule_server("examples.seed_router:app", "--threads", "2", cwd=ROOT)


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT, follow_redirects=False) as client:
        yield client


def test_seed_pages(http: httpx.Client) -> None:
    index = http.get("/index/")
    assert index.status_code == 200
    assert index.text == "index"
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert index.headers["content-length"] == "5"
    assert http.get("/login/").text == "login"


def test_unknown_url_is_a_real_404(http: httpx.Client) -> None:
    response = http.get("/nowhere/")
    assert response.status_code == 404
    assert response.text == "404 Not Found"


def test_405_with_allow(http: httpx.Client) -> None:
    response = http.post("/index/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    delete = http.delete("/login/")
    assert delete.status_code == 405
    assert delete.headers["allow"] == "GET, HEAD, OPTIONS, POST"


def test_head_has_headers_but_no_body(http: httpx.Client) -> None:
    response = http.head("/index/")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "5"
    # The connection stays usable after a HEAD (no stray body bytes on the wire).
    assert http.get("/login/").text == "login"


def test_options_lists_methods(http: httpx.Client) -> None:
    response = http.options("/api/echo")
    assert response.status_code == 204
    assert response.headers["allow"] == "OPTIONS, POST, PUT"


def test_trailing_slash_redirect(http: httpx.Client) -> None:
    response = http.get("/index", params={"a": "1"})
    assert response.status_code == 308
    assert response.headers["location"] == "/index/?a=1"
    followed = http.get("/index", follow_redirects=True)
    assert (followed.status_code, followed.text) == (200, "index")


def test_typed_parameters(http: httpx.Client) -> None:
    assert http.get("/users/42").json() == {"id": 42, "type": "int"}
    assert http.get("/users/abc").status_code == 404
    assert http.get("/users/me").text == "<h1>It's you</h1>"
    assert http.get("/users/ann/files/docs/a%20b.txt").json() == {
        "name": "ann",
        "path": "docs/a b.txt",
    }


def test_json_body_in_and_out(http: httpx.Client) -> None:
    response = http.post("/api/echo", params={"t": ["1", "2"]}, json={"żółw": [1, 2]})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "method": "POST",
        "json": {"żółw": [1, 2]},
        "query": {"t": ["1", "2"]},
    }
    bad = http.put("/api/echo", content=b"{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400


def test_urlencoded_form_post(server) -> None:
    response = requests.post(server.url + "/login/", data={"user": "<seven>"}, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text == "<h1>Welcome, &lt;seven&gt;</h1>"
    missing = requests.post(server.url + "/login/", data={}, timeout=TIMEOUT)
    assert (missing.status_code, missing.text) == (400, "user is required")


def test_multipart_form_post(server) -> None:
    response = requests.post(
        server.url + "/api/upload",
        data={"title": "notes"},
        files={"doc": ("notes.txt", b"x" * 1000, "text/plain")},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.json() == {
        "fields": {"title": "notes"},
        "files": {"doc": ["notes.txt", "text/plain", 1000]},
    }


def test_chunked_json_upload(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"parts": '
        yield b"[1, 2, 3]}"

    response = http.post(
        "/api/echo", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201
    assert response.json()["json"] == {"parts": [1, 2, 3]}
