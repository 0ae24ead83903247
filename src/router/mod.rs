//! URL routing for `ferrule.routing`: matchit with typed parameters and methods.
//!
//! This module owns the matching rules and nothing else: no Python, no HTTP.
//! `py::router` wraps [`Router`] for the Python class `ferrule.routing.Router`,
//! which builds requests and responses around it.
//!
//! # Rules
//!
//! 1. Patterns are static text with `{name}`, `{name:int}`, `{name:str}`,
//!    `{name:path}` and a trailing `{*name}` ([`Pattern`]).
//! 2. Static segments win over parameters, parameters over catch-alls
//!    (matchit's priority), whatever the registration order.
//! 3. A typed parameter that does not convert is no match: 404.
//! 4. Two patterns of the same shape that differ in a parameter's name or
//!    type conflict, as matchit's conflict rules say; the error names the
//!    registered pattern ([`InsertError`]).
//! 5. A path that matches only under other methods is a 405 with `Allow`;
//!    HEAD falls back to GET; OPTIONS is answered with `Allow` ([`Lookup`]).
//!
//! # Examples
//!
//! ```
//! use _ferrule::router::{InsertError, Lookup, Methods, Router, Value};
//!
//! let mut router = Router::new(false);
//! let get = || Methods::Only(vec!["GET".to_owned()]);
//! router.insert("/index/", get(), 0).unwrap();
//! router.insert("/users/{id:int}", get(), 1).unwrap();
//! assert_eq!(
//!     router.lookup("GET", "/users/9"),
//!     Lookup::Found { handler: 1, params: vec![("id", Value::Int(9))] }
//! );
//! let err = router.insert("/users/{name}", get(), 2).unwrap_err();
//! assert_eq!(err.existing(), Some("/users/{id:int}"));
//! assert!(matches!(err, InsertError::Conflict { .. }));
//! ```

mod error;
mod matcher;
mod pattern;

pub use error::InsertError;
pub use matcher::{Lookup, Methods, Router};
pub use pattern::{ParamKind, Pattern, Value};
