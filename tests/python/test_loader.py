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

            def create_app(name="default", *, debug=False):
                def app(environ, start_response):
                    return []
                app.made_with = (name, debug)
                return app

            class factories:
                def make(name):
                    return create_app(name)
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
        ("myapp.py:app", {}, "is a file path: name the module instead, e.g. myapp:app"),
        ("src/web/myapp.py", {}, "e.g. src.web.myapp:application"),
        ("myapp:not_callable", {}, "is an int, not a WSGI application"),
        ("myapp:create_app(", {}, "not a name or a call such as create_app()"),
        ("myapp:create_app(open('x'))", {}, "arguments must be literals"),
        ("myapp:create_app(**{})", {}, "**kwargs is not allowed"),
        ("myapp:not_callable()", {}, "is not callable, so it cannot be a factory"),
        ("myapp:create_app(1, 2, 3)", {}, "calling the factory 'create_app' failed: TypeError"),
    ],
)
def test_errors_are_one_line_and_name_the_fix(app_dir, spec, kwargs, needle):
    with pytest.raises(AppLoadError) as info:
        load_app(spec, **kwargs)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_factory_call_with_literal_arguments_as_gunicorn(app_dir):
    assert load_app("myapp:create_app()").made_with == ("default", False)
    assert load_app("myapp:create_app('prod', debug=True)").made_with == ("prod", True)
    assert load_app("myapp:factories.make('x')").made_with == ("x", False)


def test_a_spec_without_colon_names_the_default_attribute(app_dir):
    with pytest.raises(AppLoadError) as info:
        load_app("raises_not")
    assert "no module named 'raises_not'" in str(info.value)
    (app_dir / "no_default_attr.py").write_text("app = None\n")
    with pytest.raises(AppLoadError) as info:
        load_app("no_default_attr")
    message = str(info.value)
    assert "has no attribute 'application'" in message
    assert "without a colon ferrule looks for 'application': write no_default_attr:NAME" in message
