//! ferrule: a WSGI (PEP 3333) server whose request path is written in Rust.
//!
//! The crate is built by maturin into the Python extension module
//! `ferrule._ferrule`; the Python package `ferrule` around it is a thin shell
//! (command line shim, `serve()`, the `wsgiref` drop-in).
//!
//! # Layout
//!
//! Dependencies flow one way (DESIGN.md §5):
//!
//! - [`config`]: the command line (clap) and bind addresses, plain Rust.
//! - [`http`]: listeners, the tokio accept loop and hyper HTTP/1.1 connections;
//!   it hands each request to the application side as a [`http::Job`] and gets a
//!   response back. No Python here.
//! - [`wsgi`]: the PEP 3333 rules that need no interpreter: environ entries from a
//!   request head, status and header validation, response framing.
//! - [`router`]: URL matching for `ferrule.routing` (matchit), plain Rust.
//! - `py`: the only module that names pyo3 types: the `Server` class, the Python
//!   threads that call the application, `start_response`, `wsgi.input`,
//!   `wsgi.errors` and `wsgi.file_wrapper`.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod config;
pub mod http;
mod py;
pub mod router;
pub mod supervisor;
pub mod wsgi;

use pyo3::prelude::*;

/// The `ferrule._ferrule` extension module.
#[pymodule]
fn _ferrule(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::init(m)
}
