//! pyo3 glue for [`crate::router`]: the `RouteMatcher` class behind `ferrule.routing`.
//!
//! Conversions only: the rules live in [`crate::router`]. A lookup is one call
//! per request that returns a 3-tuple whose first item is the HTTP status the
//! router answers with (see [`RouteMatcher::lookup`]).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::router::{InsertError, Lookup, Methods, Router, Value};

/// `ferrule._ferrule.RouteMatcher`: a [`Router`] holding integer handler ids.
#[pyclass(module = "ferrule._ferrule", frozen)]
#[derive(Debug)]
pub(crate) struct RouteMatcher {
    // Registration needs `&mut`; lookups take the lock for a few hundred ns and
    // only ever contend with registration, which happens at import time.
    inner: std::sync::RwLock<Router>,
}

fn insert_error(err: &InsertError) -> PyErr {
    PyValueError::new_err((
        err.to_string(),
        err.route().to_owned(),
        err.existing().map(str::to_owned),
    ))
}

#[pymethods]
impl RouteMatcher {
    #[new]
    #[pyo3(signature = (redirect_slash = true))]
    fn new(redirect_slash: bool) -> Self {
        RouteMatcher {
            inner: std::sync::RwLock::new(Router::new(redirect_slash)),
        }
    }

    /// Register `pattern` for `methods` (`None`: any method); returns the parameter names.
    ///
    /// Raises `ValueError(message, pattern, existing_or_None)` on an invalid,
    /// duplicate or conflicting route.
    #[pyo3(signature = (pattern, methods, handler))]
    fn insert(
        &self,
        pattern: &str,
        methods: Option<Vec<String>>,
        handler: usize,
    ) -> PyResult<Vec<String>> {
        let methods = match methods {
            None => Methods::Any,
            Some(list) => Methods::only(pattern, list).map_err(|e| insert_error(&e))?,
        };
        let mut router = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        router
            .insert(pattern, methods, handler)
            .map_err(|e| insert_error(&e))
    }

    /// Match a request: `(200, handler, params)`, `(404, None, None)`,
    /// `(405, None, allow)`, `(204, None, allow)` for OPTIONS without a view,
    /// or `(308, None, path)` for a trailing-slash redirect.
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        path: &str,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let router = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let none = || py.None().into_bound(py);
        let (status, handler, data): (u16, _, _) = match router.lookup(method, path) {
            Lookup::Found { handler, params } => {
                let dict = PyDict::new(py);
                for (name, value) in params {
                    match value {
                        Value::Str(text) => dict.set_item(name, text)?,
                        Value::Int(number) => dict.set_item(name, number)?,
                    }
                }
                (200, handler.into_pyobject(py)?.into_any(), dict.into_any())
            }
            Lookup::NotFound => (404, none(), none()),
            Lookup::MethodNotAllowed { allow } => {
                (405, none(), allow.into_pyobject(py)?.into_any())
            }
            Lookup::Options { allow } => (204, none(), allow.into_pyobject(py)?.into_any()),
            Lookup::Redirect { path } => (308, none(), path.into_pyobject(py)?.into_any()),
        };
        PyTuple::new(py, [status.into_pyobject(py)?.into_any(), handler, data])
    }

    fn __len__(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

pub(crate) fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RouteMatcher>()
}
