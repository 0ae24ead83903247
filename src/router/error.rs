//! Why a route could not be registered.

use std::fmt;

/// A route refused at registration; each variant names the evidence.
///
/// The message wording is not part of the API; the fields are.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertError {
    /// The pattern overlaps a registered one in a way matchit cannot order:
    /// the same shape with other parameter names or types (`/u/{id:int}` and
    /// `/u/{name}`), or a catch-all against a parameter at the same place.
    Conflict {
        /// The pattern being registered, as written.
        route: String,
        /// The registered pattern it collides with, as written when it is a
        /// whole registered route, else the conflicting prefix matchit reports.
        with: String,
    },
    /// The same pattern is already registered for this method.
    Duplicate {
        /// The pattern, as written.
        route: String,
        /// The method both registrations claim (`*` for "any method").
        method: String,
    },
    /// The pattern or a method name is malformed.
    InvalidPattern {
        /// The pattern, as written.
        route: String,
        /// What is wrong, in one sentence.
        reason: String,
    },
}

// ===== impl InsertError =====

impl InsertError {
    /// The pattern that was being registered.
    pub fn route(&self) -> &str {
        match self {
            InsertError::Conflict { route, .. }
            | InsertError::Duplicate { route, .. }
            | InsertError::InvalidPattern { route, .. } => route,
        }
    }

    /// The registered route this one collides with, if it collides.
    pub fn existing(&self) -> Option<&str> {
        match self {
            InsertError::Conflict { with, .. } => Some(with),
            InsertError::Duplicate { route, .. } => Some(route),
            InsertError::InvalidPattern { .. } => None,
        }
    }
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsertError::Conflict { route, with } => write!(
                f,
                "route '{route}' conflicts with the registered route '{with}' \
                 (routes that differ only in parameter names or types cannot coexist)"
            ),
            InsertError::Duplicate { route, method } if method == "*" => {
                write!(f, "route '{route}' is already registered for every method")
            }
            InsertError::Duplicate { route, method } => {
                write!(f, "route '{route}' is already registered for {method}")
            }
            InsertError::InvalidPattern { route, reason } => {
                write!(f, "invalid route '{route}': {reason}")
            }
        }
    }
}

impl std::error::Error for InsertError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<InsertError>();
    }

    #[test]
    fn messages_name_both_routes() {
        let err = InsertError::Conflict {
            route: "/u/{name}".into(),
            with: "/u/{id:int}".into(),
        };
        assert!(err
            .to_string()
            .starts_with("route '/u/{name}' conflicts with the registered route '/u/{id:int}'"));
        assert_eq!(err.route(), "/u/{name}");
        assert_eq!(err.existing(), Some("/u/{id:int}"));
        let dup = InsertError::Duplicate {
            route: "/a".into(),
            method: "GET".into(),
        };
        assert_eq!(dup.to_string(), "route '/a' is already registered for GET");
        assert_eq!(dup.existing(), Some("/a"));
    }
}
