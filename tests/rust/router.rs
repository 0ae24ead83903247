//! The router's matching rules as tables (matchit's `MatchTest` shape), and its
//! conflict rules, through the public API only.

use _ferrule::router::{InsertError, Lookup, Methods, Router, Value};

/// A table of routes and the lookups they must answer.
struct Case {
    routes: &'static [(&'static str, &'static [&'static str])],
    lookups: &'static [(&'static str, &'static str, Want)],
}

/// What a lookup must give; `Found` names the route by its registration index.
#[derive(Debug)]
enum Want {
    Found(usize, &'static [(&'static str, &'static str)]),
    NotFound,
    NotAllowed(&'static str),
    Options(&'static str),
    Redirect(&'static str),
}

impl Case {
    fn run(&self, redirect_slash: bool) {
        let mut router = Router::new(redirect_slash);
        for (id, (pattern, methods)) in self.routes.iter().enumerate() {
            let methods = if methods.is_empty() {
                Methods::Any
            } else {
                Methods::only(pattern, methods.iter()).unwrap()
            };
            router.insert(pattern, methods, id).unwrap();
        }
        for (method, path, want) in self.lookups {
            let got = router.lookup(method, path);
            let ok = match (&got, want) {
                (Lookup::Found { handler, params }, Want::Found(id, expect)) => {
                    let params: Vec<(&str, String)> = params
                        .iter()
                        .map(|(name, value)| match value {
                            Value::Str(s) => (*name, (*s).to_owned()),
                            Value::Int(i) => (*name, format!("int:{i}")),
                        })
                        .collect();
                    let expect: Vec<(&str, String)> =
                        expect.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
                    handler == id && params == expect
                }
                (Lookup::NotFound, Want::NotFound) => true,
                (Lookup::MethodNotAllowed { allow }, Want::NotAllowed(want)) => allow == want,
                (Lookup::Options { allow }, Want::Options(want)) => allow == want,
                (Lookup::Redirect { path }, Want::Redirect(want)) => path == want,
                _ => false,
            };
            assert!(ok, "{method} {path}: got {got:?}, want {want:?}");
        }
    }
}

const GET: &[&str] = &["GET"];

#[test]
fn seed_routes() {
    Case {
        routes: &[("/index/", GET), ("/login/", GET)],
        lookups: &[
            ("GET", "/index/", Want::Found(0, &[])),
            ("GET", "/login/", Want::Found(1, &[])),
            ("HEAD", "/login/", Want::Found(1, &[])),
            ("GET", "/index", Want::NotFound),
            ("GET", "/logout/", Want::NotFound),
            ("POST", "/index/", Want::NotAllowed("GET, HEAD, OPTIONS")),
            ("OPTIONS", "/index/", Want::Options("GET, HEAD, OPTIONS")),
        ],
    }
    .run(false);
}

#[test]
fn priorities_and_typed_parameters() {
    Case {
        routes: &[
            ("/{*rest}", GET),
            ("/users/{id:int}", GET),
            ("/users/me", GET),
            ("/users/{id:int}/files/{p:path}", GET),
            ("/tags/{slug:str}", GET),
            ("/img/{name}.png", GET),
        ],
        lookups: &[
            ("GET", "/users/me", Want::Found(2, &[])),
            ("GET", "/users/17", Want::Found(1, &[("id", "int:17")])),
            // A failed conversion is no match, not a fall-through to the catch-all.
            ("GET", "/users/bob", Want::NotFound),
            (
                "GET",
                "/users/3/files/a/b",
                Want::Found(3, &[("id", "int:3"), ("p", "a/b")]),
            ),
            ("GET", "/tags/rust", Want::Found(4, &[("slug", "rust")])),
            ("GET", "/img/cat.png", Want::Found(5, &[("name", "cat")])),
            ("GET", "/x/y", Want::Found(0, &[("rest", "x/y")])),
        ],
    }
    .run(false);
}

#[test]
fn methods_any_and_head() {
    Case {
        routes: &[
            ("/r", &["GET", "PUT"]),
            ("/r", &["delete"]),
            ("/h", &["HEAD"]),
            ("/mount/{*rest}", &[]),
        ],
        lookups: &[
            ("PUT", "/r", Want::Found(0, &[])),
            ("DELETE", "/r", Want::Found(1, &[])),
            (
                "PATCH",
                "/r",
                Want::NotAllowed("DELETE, GET, HEAD, OPTIONS, PUT"),
            ),
            ("GET", "/h", Want::NotAllowed("HEAD, OPTIONS")),
            ("HEAD", "/h", Want::Found(2, &[])),
            ("OPTIONS", "/mount/x", Want::Found(3, &[("rest", "x")])),
            ("BREW", "/mount/x/y", Want::Found(3, &[("rest", "x/y")])),
        ],
    }
    .run(false);
}

#[test]
fn trailing_slash_redirects() {
    Case {
        routes: &[("/index/", GET), ("/about", GET), ("/u/{id:int}/", GET)],
        lookups: &[
            ("GET", "/index", Want::Redirect("/index/")),
            ("GET", "/about/", Want::Redirect("/about")),
            ("DELETE", "/about/", Want::Redirect("/about")),
            ("GET", "/u/5", Want::Redirect("/u/5/")),
            ("GET", "/u/x", Want::NotFound),
            ("GET", "/about", Want::Found(1, &[])),
        ],
    }
    .run(true);
}

#[test]
fn conflicts_name_the_registered_pattern() {
    let mut router = Router::new(false);
    let get = || Methods::Only(vec!["GET".into()]);
    router.insert("/files/{*rest}", get(), 0).unwrap();
    router.insert("/users/{id:int}", get(), 1).unwrap();
    let cases = [
        ("/users/{id}", "/users/{id:int}"),
        ("/users/{name:str}", "/users/{id:int}"),
        ("/files/{p:path}", "/files/{*rest}"),
    ];
    for (pattern, with) in cases {
        let err = router.insert(pattern, get(), 9).unwrap_err();
        assert_eq!(
            err,
            InsertError::Conflict {
                route: pattern.into(),
                with: with.into()
            },
            "{pattern}"
        );
        assert!(err.to_string().contains(with), "{err}");
    }
    assert_eq!(router.len(), 2);
}

#[test]
fn many_routes_stay_correct() {
    let mut router = Router::new(false);
    for i in 0..1000 {
        router
            .insert(&format!("/r{i}/items/{{id:int}}"), Methods::Any, i)
            .unwrap();
    }
    for i in [0, 499, 999] {
        let path = format!("/r{i}/items/{}", i * 3);
        assert_eq!(
            router.lookup("GET", &path),
            Lookup::Found {
                handler: i,
                params: vec![("id", Value::Int(i64::try_from(i * 3).unwrap()))]
            }
        );
    }
    assert_eq!(router.lookup("GET", "/r1000/items/1"), Lookup::NotFound);
}
