//! The route table: matchit for paths, a short method list per route.
//!
//! Theory of operation:
//!
//! 1. Every distinct pattern is one [`Entry`] and one matchit route whose value
//!    is the entry's index. Registering the same pattern again with other
//!    methods adds an endpoint to the entry; the same pattern with an
//!    overlapping method is a [`InsertError::Duplicate`].
//! 2. A lookup asks matchit for the path (static segments win over parameters,
//!    parameters over catch-alls: matchit's priority), then converts typed
//!    parameters. A failed conversion is "no match": matchit has exactly one
//!    candidate per path, so there is nothing else to try.
//! 3. With a matching path, the method picks the endpoint; HEAD falls back to
//!    GET; OPTIONS without an endpoint is answered with the route's `Allow`; any
//!    other method is a 405 with the same `Allow`, computed at registration.
//! 4. Without a matching path, and when slash redirects are on, the other form
//!    of the path (with or without a trailing `/`) is tried: if it matches, the
//!    answer is a redirect to it; otherwise 404.

use std::collections::HashMap;

use super::error::InsertError;
use super::pattern::{Pattern, Value};

/// The methods a route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// Every method, OPTIONS and HEAD included (used for mounted applications).
    Any,
    /// These methods, upper-case; GET implies HEAD unless HEAD has its own view.
    Only(Vec<String>),
}

/// A URL router: patterns to handler ids, with method sets for 405 and `Allow`.
///
/// Handlers are opaque `usize` ids chosen by the caller (the Python side uses
/// an index into its list of views).
///
/// # Examples
///
/// ```
/// use _ferrule::router::{Lookup, Methods, Router, Value};
///
/// let mut router = Router::new(true);
/// router.insert("/users/{id:int}", Methods::Only(vec!["GET".into()]), 7).unwrap();
/// match router.lookup("GET", "/users/42") {
///     Lookup::Found { handler, params } => {
///         assert_eq!(handler, 7);
///         assert_eq!(params, vec![("id", Value::Int(42))]);
///     }
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(router.lookup("GET", "/users/x"), Lookup::NotFound);
/// assert_eq!(
///     router.lookup("DELETE", "/users/42"),
///     Lookup::MethodNotAllowed { allow: "GET, HEAD, OPTIONS" }
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Router {
    tree: matchit::Router<usize>,
    entries: Vec<Entry>,
    /// matchit route → entry index, to name the pattern a conflict hits.
    by_route: HashMap<String, usize>,
    redirect_slash: bool,
}

/// One registered pattern and the endpoints sharing it.
#[derive(Debug, Clone)]
struct Entry {
    pattern: Pattern,
    endpoints: Vec<(Methods, usize)>,
    /// The `Allow` value for 405 and OPTIONS, e.g. `"GET, HEAD, OPTIONS"`.
    allow: String,
}

/// The outcome of [`Router::lookup`], borrowing from the router and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'r, 'p> {
    /// Call `handler` with `params` (name, converted value), in pattern order.
    Found {
        /// The id given to [`Router::insert`].
        handler: usize,
        /// The path parameters.
        params: Vec<(&'r str, Value<'p>)>,
    },
    /// No route matches the path (status 404).
    NotFound,
    /// The path matches, but not under this method (status 405).
    MethodNotAllowed {
        /// The value of the `Allow` header.
        allow: &'r str,
    },
    /// An OPTIONS request for a path with no OPTIONS view: answer with `Allow`.
    Options {
        /// The value of the `Allow` header.
        allow: &'r str,
    },
    /// Only the other trailing-slash form of the path exists: redirect there.
    Redirect {
        /// The path to redirect to (the request path with `/` added or removed).
        path: String,
    },
}

// ===== impl Methods =====

impl Methods {
    /// Build a method list, upper-casing each name.
    ///
    /// # Errors
    ///
    /// [`InsertError::InvalidPattern`] (naming `route`) when the list is empty
    /// or a name is not an HTTP token (RFC 9110 §9.1).
    pub fn only<I, S>(route: &str, methods: I) -> Result<Methods, InsertError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<String> = Vec::new();
        for method in methods {
            let method = method.as_ref();
            let valid = !method.is_empty()
                && method
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid || method == "*" {
                return Err(InsertError::InvalidPattern {
                    route: route.to_owned(),
                    reason: format!("'{method}' is not an HTTP method name"),
                });
            }
            let method = method.to_ascii_uppercase();
            if !list.contains(&method) {
                list.push(method);
            }
        }
        if list.is_empty() {
            return Err(InsertError::InvalidPattern {
                route: route.to_owned(),
                reason: "the method list is empty".into(),
            });
        }
        Ok(Methods::Only(list))
    }

    fn contains(&self, method: &str) -> bool {
        match self {
            Methods::Any => true,
            Methods::Only(list) => list.iter().any(|m| m == method),
        }
    }

    /// The first method both sets claim (`*` when either is [`Methods::Any`]).
    fn overlap(&self, other: &Methods) -> Option<String> {
        match (self, other) {
            (Methods::Only(a), Methods::Only(b)) => a.iter().find(|m| b.contains(m)).cloned(),
            (Methods::Only(list), Methods::Any) | (Methods::Any, Methods::Only(list)) => {
                list.first().cloned()
            }
            (Methods::Any, Methods::Any) => Some("*".into()),
        }
    }
}

// ===== impl Entry =====

impl Entry {
    fn handler_for(&self, method: &str) -> Option<usize> {
        self.endpoints
            .iter()
            .find(|(methods, _)| methods.contains(method))
            .map(|&(_, handler)| handler)
    }

    /// Recompute `allow`: the methods in alphabetical order, HEAD added when
    /// GET is there, OPTIONS always (ferrule answers it).
    fn update_allow(&mut self) {
        let mut all: Vec<&str> = vec!["OPTIONS"];
        for (methods, _) in &self.endpoints {
            if let Methods::Only(list) = methods {
                all.extend(list.iter().map(String::as_str));
                if list.iter().any(|m| m == "GET") {
                    all.push("HEAD");
                }
            }
        }
        all.sort_unstable();
        all.dedup();
        self.allow = all.join(", ");
    }
}

// ===== impl Router =====

impl Router {
    /// An empty router; `redirect_slash` turns on trailing-slash redirects.
    pub fn new(redirect_slash: bool) -> Router {
        Router {
            tree: matchit::Router::new(),
            entries: Vec::new(),
            by_route: HashMap::new(),
            redirect_slash,
        }
    }

    /// The number of distinct patterns registered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no route is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Register `pattern` for `methods`, answered by `handler`.
    ///
    /// Returns the parameter names, in pattern order. The same pattern may be
    /// registered again for other methods.
    ///
    /// # Errors
    ///
    /// [`InsertError::InvalidPattern`] for a malformed pattern,
    /// [`InsertError::Duplicate`] for the same pattern and an overlapping method,
    /// [`InsertError::Conflict`] naming the registered pattern it collides with.
    /// The router is unchanged after an error.
    pub fn insert(
        &mut self,
        pattern: &str,
        methods: Methods,
        handler: usize,
    ) -> Result<Vec<String>, InsertError> {
        let pattern = Pattern::parse(pattern)?;
        let names = pattern.names().map(str::to_owned).collect();
        if let Some(&index) = self.by_route.get(&pattern.route) {
            let entry = &mut self.entries[index];
            if entry.pattern.params != pattern.params {
                return Err(InsertError::Conflict {
                    route: pattern.source,
                    with: entry.pattern.source.clone(),
                });
            }
            if let Some(method) = entry
                .endpoints
                .iter()
                .find_map(|(existing, _)| existing.overlap(&methods))
            {
                return Err(InsertError::Duplicate {
                    route: pattern.source,
                    method,
                });
            }
            entry.endpoints.push((methods, handler));
            entry.update_allow();
            return Ok(names);
        }
        let index = self.entries.len();
        if let Err(err) = self.tree.insert(pattern.route.clone(), index) {
            return Err(self.translate(&pattern, err));
        }
        self.by_route.insert(pattern.route.clone(), index);
        let mut entry = Entry {
            pattern,
            endpoints: vec![(methods, handler)],
            allow: String::new(),
        };
        entry.update_allow();
        self.entries.push(entry);
        Ok(names)
    }

    /// Match `method` and `path` (a decoded path such as `/users/42`).
    ///
    /// See the module docs for the order of the rules.
    pub fn lookup<'r, 'p>(&'r self, method: &str, path: &'p str) -> Lookup<'r, 'p> {
        let Some((entry, params)) = self.resolve(path) else {
            return match self.slash_alternative(path) {
                Some(path) => Lookup::Redirect { path },
                None => Lookup::NotFound,
            };
        };
        let handler = entry.handler_for(method).or_else(|| {
            if method == "HEAD" {
                entry.handler_for("GET")
            } else {
                None
            }
        });
        match handler {
            Some(handler) => Lookup::Found { handler, params },
            None if method == "OPTIONS" => Lookup::Options {
                allow: &entry.allow,
            },
            None => Lookup::MethodNotAllowed {
                allow: &entry.allow,
            },
        }
    }

    /// The entry for `path` and its converted parameters, if any.
    fn resolve<'r, 'p>(&'r self, path: &'p str) -> Option<(&'r Entry, Vec<(&'r str, Value<'p>)>)> {
        let matched = self.tree.at(path).ok()?;
        let entry = &self.entries[*matched.value];
        let mut params = Vec::with_capacity(entry.pattern.params.len());
        // matchit yields parameters in pattern order, under this entry's names.
        for ((name, kind), (_, raw)) in entry.pattern.params.iter().zip(matched.params.iter()) {
            params.push((name.as_str(), kind.convert(raw)?));
        }
        Some((entry, params))
    }

    /// The other trailing-slash form of `path`, when redirects are on and it matches.
    fn slash_alternative(&self, path: &str) -> Option<String> {
        if !self.redirect_slash {
            return None;
        }
        let other = match path.strip_suffix('/') {
            Some("") => return None,
            Some(stripped) => stripped.to_owned(),
            None => format!("{path}/"),
        };
        let exists = self.resolve(&other).is_some();
        exists.then_some(other)
    }

    /// Convert a matchit error, naming the registered pattern when there is one.
    fn translate(&self, pattern: &Pattern, err: matchit::InsertError) -> InsertError {
        match err {
            matchit::InsertError::Conflict { with } => {
                let with = match self.by_route.get(&with) {
                    Some(&index) => self.entries[index].pattern.source.clone(),
                    None => with,
                };
                InsertError::Conflict {
                    route: pattern.source.clone(),
                    with,
                }
            }
            other => InsertError::InvalidPattern {
                route: pattern.source.clone(),
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get() -> Methods {
        Methods::Only(vec!["GET".into()])
    }

    fn found(router: &Router, method: &str, path: &str) -> (usize, Vec<(String, String)>) {
        match router.lookup(method, path) {
            Lookup::Found { handler, params } => (
                handler,
                params
                    .into_iter()
                    .map(|(name, value)| {
                        let value = match value {
                            Value::Str(s) => s.to_owned(),
                            Value::Int(i) => format!("int:{i}"),
                        };
                        (name.to_owned(), value)
                    })
                    .collect(),
            ),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn seed_routes_match_exactly() {
        let mut router = Router::new(false);
        router.insert("/index/", get(), 0).unwrap();
        router.insert("/login/", get(), 1).unwrap();
        assert_eq!(found(&router, "GET", "/index/"), (0, vec![]));
        assert_eq!(found(&router, "GET", "/login/"), (1, vec![]));
        assert_eq!(router.lookup("GET", "/index"), Lookup::NotFound);
        assert_eq!(router.lookup("GET", "/nope/"), Lookup::NotFound);
        assert_eq!(router.len(), 2);
    }

    #[test]
    fn static_wins_over_parameter_and_catch_all() {
        let mut router = Router::new(false);
        router.insert("/users/{name}", get(), 0).unwrap();
        router.insert("/users/me", get(), 1).unwrap();
        router.insert("/{*rest}", get(), 2).unwrap();
        assert_eq!(found(&router, "GET", "/users/me"), (1, vec![]));
        assert_eq!(
            found(&router, "GET", "/users/bob"),
            (0, pairs(&[("name", "bob")]))
        );
        assert_eq!(
            found(&router, "GET", "/a/b/c"),
            (2, pairs(&[("rest", "a/b/c")]))
        );
    }

    #[test]
    fn typed_parameters_convert_or_miss() {
        let mut router = Router::new(false);
        router.insert("/u/{id:int}/f/{p:path}", get(), 0).unwrap();
        assert_eq!(
            found(&router, "GET", "/u/42/f/a/b.txt"),
            (0, pairs(&[("id", "int:42"), ("p", "a/b.txt")]))
        );
        assert_eq!(router.lookup("GET", "/u/abc/f/x"), Lookup::NotFound);
        assert_eq!(router.lookup("POST", "/u/abc/f/x"), Lookup::NotFound);
    }

    #[test]
    fn methods_share_a_pattern_and_give_allow() {
        let mut router = Router::new(false);
        router.insert("/items", get(), 0).unwrap();
        let post = Methods::only("/items", ["post"]).unwrap();
        router.insert("/items", post, 1).unwrap();
        assert_eq!(found(&router, "GET", "/items").0, 0);
        assert_eq!(found(&router, "POST", "/items").0, 1);
        assert_eq!(found(&router, "HEAD", "/items").0, 0);
        let allow = "GET, HEAD, OPTIONS, POST";
        assert_eq!(
            router.lookup("PUT", "/items"),
            Lookup::MethodNotAllowed { allow }
        );
        assert_eq!(
            router.lookup("OPTIONS", "/items"),
            Lookup::Options { allow }
        );
        assert_eq!(router.len(), 1);
    }

    #[test]
    fn explicit_head_and_options_views_win() {
        let mut router = Router::new(false);
        router.insert("/x", get(), 0).unwrap();
        router
            .insert("/x", Methods::only("/x", ["HEAD", "OPTIONS"]).unwrap(), 1)
            .unwrap();
        assert_eq!(found(&router, "HEAD", "/x").0, 1);
        assert_eq!(found(&router, "OPTIONS", "/x").0, 1);
    }

    #[test]
    fn any_method_takes_everything() {
        let mut router = Router::new(false);
        router.insert("/mnt/{*rest}", Methods::Any, 3).unwrap();
        for method in ["GET", "DELETE", "OPTIONS", "BREW"] {
            assert_eq!(found(&router, method, "/mnt/a").0, 3);
        }
        let err = router.insert("/mnt/{*rest}", get(), 4).unwrap_err();
        assert_eq!(
            err,
            InsertError::Duplicate {
                route: "/mnt/{*rest}".into(),
                method: "GET".into()
            }
        );
    }

    #[test]
    fn duplicates_and_conflicts_name_the_registered_route() {
        let mut router = Router::new(false);
        router.insert("/u/{id:int}", get(), 0).unwrap();
        assert_eq!(
            router.insert("/u/{id:int}", get(), 1).unwrap_err(),
            InsertError::Duplicate {
                route: "/u/{id:int}".into(),
                method: "GET".into()
            }
        );
        // Same shape, other type: conflict, even for another method.
        let post = Methods::only("/u/{id}", ["POST"]).unwrap();
        assert_eq!(
            router.insert("/u/{id}", post, 1).unwrap_err(),
            InsertError::Conflict {
                route: "/u/{id}".into(),
                with: "/u/{id:int}".into()
            }
        );
        // Same shape, other name: matchit's conflict, translated to our syntax.
        assert_eq!(
            router.insert("/u/{name}", get(), 1).unwrap_err(),
            InsertError::Conflict {
                route: "/u/{name}".into(),
                with: "/u/{id:int}".into()
            }
        );
        // The failed inserts changed nothing.
        assert_eq!(router.len(), 1);
        assert_eq!(found(&router, "GET", "/u/5").0, 0);
    }

    #[test]
    fn matchit_errors_become_invalid_pattern() {
        let mut router = Router::new(false);
        let err = router.insert("/a/{x}{y}", get(), 0).unwrap_err();
        assert!(matches!(err, InsertError::InvalidPattern { .. }), "{err:?}");
        assert!(Methods::only("/a", Vec::<String>::new()).is_err());
        assert!(Methods::only("/a", ["GE T"]).is_err());
        assert_eq!(
            Methods::only("/a", ["get", "GET", "Post"]).unwrap(),
            Methods::Only(vec!["GET".into(), "POST".into()])
        );
    }

    #[test]
    fn trailing_slash_redirects_only_when_the_other_form_exists() {
        let mut router = Router::new(true);
        router.insert("/index/", get(), 0).unwrap();
        router.insert("/about", get(), 1).unwrap();
        router.insert("/u/{id:int}", get(), 2).unwrap();
        assert_eq!(
            router.lookup("GET", "/index"),
            Lookup::Redirect {
                path: "/index/".into()
            }
        );
        assert_eq!(
            router.lookup("POST", "/about/"),
            Lookup::Redirect {
                path: "/about".into()
            }
        );
        assert_eq!(
            router.lookup("GET", "/u/7/"),
            Lookup::Redirect {
                path: "/u/7".into()
            }
        );
        assert_eq!(router.lookup("GET", "/u/x/"), Lookup::NotFound);
        assert_eq!(router.lookup("GET", "/"), Lookup::NotFound);
        assert_eq!(router.lookup("GET", "/nope"), Lookup::NotFound);
        assert_eq!(Router::new(false).lookup("GET", "/index"), Lookup::NotFound);
    }

    #[test]
    fn empty_path_redirects_to_root() {
        let mut router = Router::new(true);
        router.insert("/", get(), 0).unwrap();
        assert_eq!(
            router.lookup("GET", ""),
            Lookup::Redirect { path: "/".into() }
        );
    }
}
