//! Route patterns: ferrule's syntax, parsed into matchit's plus typed parameters.
//!
//! A pattern is static text with parameters in braces:
//!
//! | pattern piece   | matches                               | value handed to the view |
//! |-----------------|---------------------------------------|--------------------------|
//! | `{name}`        | one segment, up to the next `/`       | `str`                    |
//! | `{name:str}`    | the same                              | `str`                    |
//! | `{name:int}`    | one segment of ASCII digits, fits i64 | `int`                    |
//! | `{name:path}`   | the rest of the path, `/` included    | `str`                    |
//! | `{*name}`       | the same as `{name:path}`             | `str`                    |
//!
//! `{{` and `}}` are a literal brace. The matchit route keeps the names and
//! drops the types (`/u/{id:int}` becomes `/u/{id}`), so two patterns that
//! differ only in a parameter's type are the same matchit route: they conflict.

use super::error::InsertError;

/// The type of a path parameter, checked and converted after matchit matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// Any non-empty segment (`{name}` or `{name:str}`).
    Str,
    /// ASCII digits that fit in an `i64` (`{name:int}`); no sign, no spaces.
    Int,
    /// The rest of the path, slashes included (`{name:path}` or `{*name}`).
    Path,
}

/// A parameter value after conversion, borrowing from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'p> {
    /// A `str` or `path` parameter, exactly as it appeared in the path.
    Str(&'p str),
    /// An `int` parameter.
    Int(i64),
}

/// A parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern as the user wrote it, used in error messages.
    pub source: String,
    /// The same route in matchit's syntax (types dropped, `path` as `{*name}`).
    pub route: String,
    /// The parameters, in the order they appear.
    pub params: Vec<(String, ParamKind)>,
}

// ===== impl ParamKind =====

impl ParamKind {
    /// Convert a raw segment matched by matchit; `None` means "no match" (404).
    ///
    /// An `int` must be 1 to 19 ASCII digits with a value that fits in `i64`;
    /// `+5`, `-5`, ` 5` and `99999999999999999999` are refused.
    pub fn convert(self, raw: &str) -> Option<Value<'_>> {
        match self {
            ParamKind::Str | ParamKind::Path => Some(Value::Str(raw)),
            ParamKind::Int => {
                if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                raw.parse().ok().map(Value::Int)
            }
        }
    }

    fn from_name(name: &str) -> Option<ParamKind> {
        match name {
            "str" => Some(ParamKind::Str),
            "int" => Some(ParamKind::Int),
            "path" => Some(ParamKind::Path),
            _ => None,
        }
    }
}

// ===== impl Pattern =====

impl Pattern {
    /// Parse a pattern such as `/users/{id:int}/files/{*rest}`.
    ///
    /// The pattern must start with `/`. Parameter names are Python identifiers
    /// (they become keyword arguments) and unique within the pattern. A `path`
    /// parameter or catch-all must end the pattern; matchit checks the rest
    /// (one parameter per segment) when the route is inserted.
    ///
    /// # Errors
    ///
    /// [`InsertError::InvalidPattern`] naming the pattern and what is wrong.
    pub fn parse(source: &str) -> Result<Pattern, InsertError> {
        let invalid = |reason: String| InsertError::InvalidPattern {
            route: source.to_owned(),
            reason,
        };
        if !source.starts_with('/') {
            return Err(invalid("a pattern must start with '/'".into()));
        }
        let mut route = String::with_capacity(source.len());
        let mut params: Vec<(String, ParamKind)> = Vec::new();
        let mut rest = source;
        while let Some(at) = rest.find(['{', '}']) {
            route.push_str(&rest[..at]);
            let tail = &rest[at..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                route.push_str(&tail[..2]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(invalid(
                    "unmatched '}' (write '}}' for a literal brace)".into(),
                ));
            }
            let Some(end) = tail.find('}') else {
                return Err(invalid(
                    "unclosed '{' (write '{{' for a literal brace)".into(),
                ));
            };
            let (name, kind) = parse_param(&tail[1..end]).map_err(invalid)?;
            if params.iter().any(|(seen, _)| seen == name) {
                return Err(invalid(format!("parameter '{name}' appears twice")));
            }
            rest = &tail[end + 1..];
            if kind == ParamKind::Path {
                if !rest.is_empty() {
                    return Err(invalid(format!(
                        "the path parameter '{name}' must end the pattern"
                    )));
                }
                route.push_str("{*");
            } else {
                route.push('{');
            }
            route.push_str(name);
            route.push('}');
            params.push((name.to_owned(), kind));
        }
        route.push_str(rest);
        Ok(Pattern {
            source: source.to_owned(),
            route,
            params,
        })
    }

    /// The parameter names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(name, _)| name.as_str())
    }
}

/// Split `name`, `name:type` or `*name` (the text between the braces).
fn parse_param(inner: &str) -> Result<(&str, ParamKind), String> {
    let (name, kind) = if let Some(name) = inner.strip_prefix('*') {
        if name.contains(':') {
            return Err(format!(
                "'{{{inner}}}' is already a catch-all; drop the type or write '{{{}:path}}'",
                name.split(':').next().unwrap_or_default()
            ));
        }
        (name, ParamKind::Path)
    } else if let Some((name, kind)) = inner.split_once(':') {
        let kind = ParamKind::from_name(kind).ok_or_else(|| {
            format!("unknown parameter type '{kind}' in '{{{inner}}}' (use int, str or path)")
        })?;
        (name, kind)
    } else {
        (inner, ParamKind::Str)
    };
    if !is_identifier(name) {
        return Err(format!(
            "parameter name '{name}' in '{{{inner}}}' is not a Python identifier"
        ));
    }
    Ok((name, kind))
}

/// ASCII identifier: a letter or `_`, then letters, digits or `_`.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Pattern {
        Pattern::parse(source).unwrap()
    }

    fn reason(source: &str) -> String {
        match Pattern::parse(source).unwrap_err() {
            InsertError::InvalidPattern { route, reason } => {
                assert_eq!(route, source);
                reason
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn static_patterns_pass_through() {
        let p = parse("/index/");
        assert_eq!(p.route, "/index/");
        assert!(p.params.is_empty());
        assert_eq!(parse("/").route, "/");
    }

    #[test]
    fn types_are_dropped_from_the_matchit_route() {
        let p = parse("/users/{id:int}/posts/{slug:str}/{name}");
        assert_eq!(p.route, "/users/{id}/posts/{slug}/{name}");
        assert_eq!(
            p.params,
            vec![
                ("id".to_owned(), ParamKind::Int),
                ("slug".to_owned(), ParamKind::Str),
                ("name".to_owned(), ParamKind::Str),
            ]
        );
        assert_eq!(p.names().collect::<Vec<_>>(), ["id", "slug", "name"]);
    }

    #[test]
    fn path_and_catch_all_become_matchit_catch_alls() {
        assert_eq!(parse("/files/{p:path}").route, "/files/{*p}");
        let p = parse("/static/{*rest}");
        assert_eq!(p.route, "/static/{*rest}");
        assert_eq!(p.params, vec![("rest".to_owned(), ParamKind::Path)]);
    }

    #[test]
    fn escaped_braces_stay_escaped_for_matchit() {
        let p = parse("/{{literal}}/{id}");
        assert_eq!(p.route, "/{{literal}}/{id}");
        assert_eq!(p.params.len(), 1);
    }

    #[test]
    fn invalid_patterns_say_why() {
        assert_eq!(reason("users"), "a pattern must start with '/'");
        assert!(reason("/u/{id").starts_with("unclosed '{'"));
        assert!(reason("/u/id}").starts_with("unmatched '}'"));
        assert!(reason("/u/{id:float}").contains("unknown parameter type 'float'"));
        assert!(reason("/u/{1d}").contains("not a Python identifier"));
        assert!(reason("/u/{}").contains("not a Python identifier"));
        assert_eq!(reason("/u/{id}/{id}"), "parameter 'id' appears twice");
        assert_eq!(
            reason("/f/{p:path}/x"),
            "the path parameter 'p' must end the pattern"
        );
        assert!(reason("/f/{*p:int}").contains("already a catch-all"));
    }

    #[test]
    fn int_conversion_is_strict() {
        assert_eq!(ParamKind::Int.convert("42"), Some(Value::Int(42)));
        assert_eq!(ParamKind::Int.convert("007"), Some(Value::Int(7)));
        assert_eq!(
            ParamKind::Int.convert("9223372036854775807"),
            Some(Value::Int(i64::MAX))
        );
        for bad in ["", "-1", "+1", " 1", "1a", "9223372036854775808", "٣"] {
            assert_eq!(ParamKind::Int.convert(bad), None, "{bad:?}");
        }
        assert_eq!(ParamKind::Str.convert("a b"), Some(Value::Str("a b")));
        assert_eq!(ParamKind::Path.convert("a/b"), Some(Value::Str("a/b")));
    }
}
