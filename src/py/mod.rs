//! The pyo3 glue: the only module that names Python types.
//!
//! - [`server`]: the `Server` class (bind, serve, shutdown) and the CLI entry.
//! - [`worker`]: Python threads that take [`crate::http::Job`]s and call the app.
//! - [`environ`]: the per-listener template dict and per-request environ.
//! - [`start_response`]: `start_response`, `write()` and sending the response.
//! - [`input`]: `wsgi.input`, streaming the request body with the GIL released.
//! - [`errors`]: `wsgi.errors` and the `ferrule.error` logger.
//! - [`file_wrapper`]: serving `wsgi.file_wrapper` objects.
//! - [`pool`]: reuse of finished `start_response` and `wsgi.input` objects.
//! - [`loop_gil`]: the inline loop's thread holds the GIL between parks.

mod cli;
mod environ;
mod errors;
mod file_wrapper;
mod input;
mod loop_gil;
mod pool;
mod router;
mod server;
mod start_response;
mod supervise;
pub(crate) mod worker;

use pyo3::prelude::*;

pub(crate) fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<server::Server>()?;
    m.add_class::<file_wrapper::FileWrapper>()?;
    m.add_class::<input::Input>()?;
    m.add_class::<input::EmptyInput>()?;
    m.add_class::<errors::ErrorStream>()?;
    m.add_class::<start_response::StartResponse>()?;
    m.add_function(wrap_pyfunction!(cli::run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(cli::options_markdown, m)?)?;
    m.add_function(wrap_pyfunction!(server::format_bind, m)?)?;
    router::init(m)?;
    Ok(())
}
