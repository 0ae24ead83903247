//! `ferrule [OPTIONS] MODULE:APP`: parse, load the application, bind, serve.
//!
//! Exit statuses follow gunicorn: 0 after a clean stop, 1 when an address cannot
//! be bound, 2 for bad usage (clap's), 4 when the application cannot be loaded.

use std::time::Duration;

use clap::Parser;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::server::Server;
use crate::config::Args;

/// gunicorn's exit status for an application that cannot be loaded.
const APP_LOAD_ERROR: i32 = 4;

/// Run the command line `argv` (with the program name first); returns the exit status.
#[pyfunction]
pub(crate) fn run_cli(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    let args = match Args::try_parse_from(&argv) {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return Ok(err.exit_code());
        }
    };
    py.import("ferrule._logging")?
        .call_method1("configure_default", (args.log_level.python_name(),))?;
    // Nothing is written to the current directory: no __pycache__ beside the app.
    py.import("sys")?.setattr("dont_write_bytecode", true)?;
    let app = match load_app(py, &args) {
        Ok(app) => app,
        Err(message) => {
            eprintln!("Error: {message}");
            return Ok(APP_LOAD_ERROR);
        }
    };
    // Ctrl-C and SIGTERM are handled in Rust from here on; Python's own SIGINT
    // handler would raise KeyboardInterrupt after the graceful stop.
    let signal = py.import("signal")?;
    signal.call_method1(
        "signal",
        (signal.getattr("SIGINT")?, signal.getattr("SIG_IGN")?),
    )?;
    let server = match Server::bind(
        py,
        app,
        &args.binds(),
        args.threads,
        args.root_path.clone(),
        Duration::from_secs_f64(args.graceful_timeout),
    ) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("Error: {}", err.value(py));
            return Ok(1);
        }
    };
    super::errors::log(
        py,
        "info",
        &format!(
            "Serving {} with {} thread(s) (ferrule {})",
            args.app,
            args.threads,
            env!("CARGO_PKG_VERSION")
        ),
    );
    server.run(py, None, true)?;
    super::errors::log(py, "info", "Stopped");
    Ok(0)
}

/// Import the application; the error is the one-line message to print.
fn load_app(py: Python<'_>, args: &Args) -> Result<Py<PyAny>, String> {
    let loader = py.import("ferrule._loader").map_err(|e| e.to_string())?;
    let kwargs = PyDict::new(py);
    kwargs
        .set_item("factory", args.factory)
        .map_err(|e| e.to_string())?;
    match loader.call_method("load_app", (&args.app,), Some(&kwargs)) {
        Ok(app) => Ok(app.unbind()),
        Err(err) => {
            let is_load_error = loader
                .getattr("AppLoadError")
                .is_ok_and(|cls| err.get_type(py).is(&cls));
            if is_load_error {
                Err(err.value(py).to_string())
            } else {
                Err(format!("loading {:?} failed: {}", args.app, err.value(py)))
            }
        }
    }
}
