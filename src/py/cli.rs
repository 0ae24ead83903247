//! `ferrule [OPTIONS] MODULE:APP`: parse, bind, fork workers, supervise.
//!
//! Exit statuses follow gunicorn: 0 after a clean stop, 1 when an address cannot
//! be bound, 2 for bad usage (clap's), 4 when the application cannot be loaded.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors;
use super::server::{BindOptions, Server};
use super::supervise::{Identity, PySpawner};
use super::worker::AccessLog;
use crate::config::{sources, Args};
use crate::http::Limits;
use crate::supervisor::{self, MasterConfig, Scoreboard, APP_LOAD_ERROR};
use crate::wsgi::access_log::AccessFormat;

/// Worker records the scoreboard has room for beyond `--workers` (SIGTTIN).
const EXTRA_WORKER_SLOTS: usize = 32;

/// Run the command line `argv` (with the program name first); returns the exit status.
#[pyfunction]
pub(crate) fn run_cli(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    let resolved = match sources::parse(&argv) {
        Ok(resolved) => resolved,
        Err(err) => {
            let _ = err.print();
            return Ok(err.exit_code());
        }
    };
    if resolved.args.print_config {
        let stdout = py.import("sys")?.getattr("stdout")?;
        stdout.call_method1("write", (sources::render(&resolved),))?;
        stdout.call_method0("flush")?;
        return Ok(0);
    }
    let args = resolved.args;
    if let Some(dir) = &args.chdir {
        if let Err(err) = std::env::set_current_dir(dir) {
            eprintln!("Error: --chdir {}: {err}", dir.display());
            return Ok(2);
        }
    }
    if let Some(mask) = args.umask {
        // SAFETY: umask has no preconditions.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    let environ = py.import("os")?.getattr("environ")?;
    for (key, value) in &args.env {
        environ.set_item(key, value)?;
    }
    let identity = match Identity::resolve(args.user.as_deref(), args.group.as_deref()) {
        Ok(identity) => identity,
        Err(message) => {
            eprintln!("Error: {message}");
            return Ok(2);
        }
    };
    let binds = match args.binds() {
        Ok(binds) => binds,
        Err(message) => {
            eprintln!("Error: {message}");
            return Ok(2);
        }
    };
    let kwargs = PyDict::new(py);
    kwargs.set_item("error_logfile", &args.error_logfile)?;
    kwargs.set_item("access_logfile", &args.access_logfile)?;
    kwargs.set_item("log_config", &args.log_config)?;
    if let Err(err) = py.import("ferrule._logging")?.call_method(
        "configure",
        (args.log_level.python_name(),),
        Some(&kwargs),
    ) {
        eprintln!("Error: {}", err.value(py));
        return Ok(2);
    }
    // Nothing is written to the current directory: no __pycache__ beside the app.
    py.import("sys")?.setattr("dont_write_bytecode", true)?;
    // Signals are the master's (blocked, then waited for) and the workers'
    // (tokio handlers); Python's SIGINT handler would raise KeyboardInterrupt.
    let signal = py.import("signal")?;
    signal.call_method1(
        "signal",
        (signal.getattr("SIGINT")?, signal.getattr("SIG_IGN")?),
    )?;

    let tls = match (&args.certfile, &args.keyfile) {
        (Some(cert), Some(key)) => {
            match crate::http::tls::server_config(cert, key, args.ca_certs.as_deref()) {
                Ok(config) => Some(config),
                Err(message) => {
                    eprintln!("Error: {message}");
                    return Ok(2);
                }
            }
        }
        _ => None,
    };
    let load = |py: Python<'_>| load_app(py, &args);
    let preloaded = if args.preload {
        match load(py) {
            Ok(app) => Some(app),
            Err(message) => {
                eprintln!("Error: {message}");
                return Ok(APP_LOAD_ERROR);
            }
        }
    } else {
        if let Err(code) = super::supervise::check_import(py, &load) {
            return Ok(code);
        }
        None
    };
    if args.check_config {
        eprintln!(
            "Configuration OK: {} imports and every option is valid",
            args.app
        );
        return Ok(0);
    }
    let options = BindOptions {
        tls,
        proxy_protocol: args
            .proxy_protocol
            .then(|| Arc::new(args.proxy_allow_from.clone())),
        threads: args.threads,
        root_path: args.root_path.clone(),
        graceful_timeout: Duration::from_secs_f64(args.graceful_timeout),
        backlog: args.backlog,
        reuse_port: args.reuse_port,
        limits: Limits {
            request_line: args.limit_request_line,
            fields: args.limit_request_fields,
            field_size: args.limit_request_field_size,
            body: args.limit_request_body,
        },
        trusted: Arc::new(args.forwarded_allow_ips.clone()),
        header_timeout: Duration::from_secs_f64(args.header_timeout),
        keep_alive: Duration::from_secs_f64(args.keep_alive),
        body_timeout: Duration::from_secs_f64(args.body_timeout),
        send_timeout: Duration::from_secs_f64(args.send_timeout),
        access: args.access_logfile.as_ref().map(|_| {
            Arc::new(AccessLog {
                format: AccessFormat::parse(&args.access_logformat)
                    .expect("validated by the parser"),
                json: args.access_log_json,
            })
        }),
    };
    let placeholder = py.None();
    let server = match Server::bind(py, placeholder, &binds, &options) {
        Ok(server) => server,
        Err(err) => {
            // The message without Python's "[Errno N]" prefix.
            let value = err.value(py);
            let message = value
                .getattr("strerror")
                .ok()
                .filter(|m| !m.is_none())
                .map_or_else(|| value.to_string(), |m| m.to_string());
            eprintln!("Error: {message}");
            return Ok(1);
        }
    };
    let is_preloaded = preloaded.is_some();
    if let Some(app) = preloaded {
        server.set_app_object(py, app);
    }
    if let Some(path) = &args.pidfile {
        if let Err(err) = std::fs::write(path, format!("{}\n", std::process::id())) {
            eprintln!("Error: --pid {}: {err}", path.display());
            return Ok(1);
        }
    }
    errors::log(
        py,
        "info",
        &format!(
            "Serving {} with {} worker(s) x {} thread(s) (ferrule {})",
            args.app,
            args.workers,
            args.threads,
            env!("CARGO_PKG_VERSION")
        ),
    );
    let workers = usize::from(args.workers);
    // One slot per Python thread, and one for the event loop's thread (inline path).
    let board = Arc::new(Scoreboard::new(
        workers + EXTRA_WORKER_SLOTS,
        usize::from(args.threads) + 1,
    )?);
    let process_name = args.name.clone().unwrap_or_else(|| args.app.clone());
    super::supervise::set_process_title(py, "master", &process_name);
    supervisor::signals::block()?;
    let config = MasterConfig {
        workers,
        timeout: (args.timeout > 0.0).then(|| Duration::from_secs_f64(args.timeout)),
        graceful_timeout: options.graceful_timeout,
    };
    let mut spawner = PySpawner {
        py,
        server: &server,
        preloaded: is_preloaded,
        load: &load,
        board: board.clone(),
        max_requests: args.max_requests,
        max_requests_jitter: args.max_requests_jitter,
        name: process_name.clone(),
        identity,
        multiprocess: workers > 1,
    };
    let reloader = if args.reload {
        let root = std::env::current_dir()?;
        let reloader = supervisor::Reloader::new(&[root])?;
        errors::log(
            py,
            "info",
            &match reloader.watched() {
                1 => "Reloading on changes: watching 1 directory".to_owned(),
                n => format!("Reloading on changes: watching {n} directories"),
            },
        );
        Some(reloader)
    } else {
        None
    };
    let code = supervisor::run(&config, &board, &mut spawner, reloader);
    server.close_listeners();
    if let Some(path) = &args.pidfile {
        let _ = std::fs::remove_file(path);
    }
    errors::log(
        py,
        "info",
        &format!("Shutting down: Master (exit status {code})"),
    );
    Ok(code)
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
                if args.log_level == crate::config::cli::LogLevel::Debug {
                    if let Ok(details) = err.value(py).getattr("details") {
                        eprint!(
                            "{}",
                            details.str().map(|s| s.to_string()).unwrap_or_default()
                        );
                    }
                }
                Err(err.value(py).to_string())
            } else {
                Err(format!("loading {:?} failed: {}", args.app, err.value(py)))
            }
        }
    }
}

/// The README's table of options (markdown), generated from the clap definition.
#[pyfunction]
pub(crate) fn options_markdown() -> String {
    sources::options_markdown()
}
