"""``ferrule._loader.load_app``: import strings to application objects."""

from __future__ import annotations

import sys
import textwrap

import pytest
from ferrule._loader import AppLoadError, load_app


@pytest.fixture
def app_dir(tmp_path, monkeypatch):
    (tmp_path / "myapp.py").write_text(
        textwrap.dedent(
            """
            def application(environ, start_response):
                return []

            class ns:
                def app(environ, start_response):
                    return []

            def make():
                return application

            not_callable = 42

            def broken_factory():
                return 42
            """
        )
    )
    (tmp_path / "raises.py").write_text("raise RuntimeError('config missing')\n")
    (tmp_path / "imports_missing.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for name in ("myapp", "raises", "imports_missing"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_default_attribute_is_application(app_dir):
    app = load_app("myapp")
    assert app.__name__ == "application"
    assert str(app_dir) == sys.path[0]


def test_dotted_attribute_and_factory(app_dir):
    assert load_app("myapp:ns.app").__name__ == "app"
    assert load_app("myapp:make", factory=True).__name__ == "application"


@pytest.mark.parametrize(
    ("spec", "kwargs", "needle"),
    [
        ("nosuchmodule:app", {}, "no module named 'nosuchmodule'"),
        ("myapp:missing", {}, "has no attribute 'missing'"),
        ("myapp:not_callable", {}, "not a WSGI application"),
        ("myapp:broken_factory", {"factory": True}, "not a WSGI application"),
        ("raises:app", {}, "RuntimeError: config missing"),
        ("imports_missing:app", {}, "no_such_dependency_xyz"),
        ("my-app:app", {}, "write MODULE:APP"),
        (":app", {}, "write MODULE:APP"),
    ],
)
def test_errors_are_one_line_and_name_the_fix(app_dir, spec, kwargs, needle):
    with pytest.raises(AppLoadError) as info:
        load_app(spec, **kwargs)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
