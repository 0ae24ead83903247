//! The `Server` class: bind listeners, serve until stopped, drain gracefully.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use super::environ::{self, ListenerInfo};
use super::errors;
use super::worker::{self, WorkerContext};
use crate::config::Bind;
use crate::http::{self, Dispatch, RunOptions};

/// Pending connections the kernel queues per listener (`--backlog`).
const BACKLOG: i32 = 2048;

/// How often a server started from Python code lets Python run its signal
/// handlers (Ctrl-C raises `KeyboardInterrupt` out of `serve()`).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// A bound server: `Server(app, binds, threads=1, root_path="", graceful_timeout=30.0)`.
///
/// Binding happens in the constructor, so `server_address` is known (with the
/// real port when 0 was asked) before `serve()` runs.
///
/// :raises ValueError: a bind value cannot be parsed.
/// :raises OSError: an address cannot be bound.
#[pyclass(module = "ferrule._ferrule", frozen)]
#[derive(Debug)]
pub struct Server {
    app: Mutex<Py<PyAny>>,
    runtime: Runtime,
    listeners: Mutex<Vec<TcpListener>>,
    addrs: Vec<SocketAddr>,
    threads: u16,
    root_path: String,
    graceful_timeout: Duration,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Bind every address and log where the server listens.
    pub(crate) fn bind(
        py: Python<'_>,
        app: Py<PyAny>,
        binds: &[Bind],
        threads: u16,
        root_path: String,
        graceful_timeout: Duration,
    ) -> PyResult<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut listeners = Vec::with_capacity(binds.len());
        let mut addrs = Vec::with_capacity(binds.len());
        for bind in binds {
            let addr = bind.addrs[0];
            let std_listener = listen(addr).map_err(|err| {
                PyOSError::new_err((
                    err.raw_os_error().unwrap_or(0),
                    format!("cannot bind {} ({addr}): {err}", bind.spec),
                ))
            })?;
            let local = std_listener.local_addr()?;
            let _guard = runtime.enter();
            listeners.push(TcpListener::from_std(std_listener)?);
            errors::log(
                py,
                "info",
                &format!("Listening at: http://{local} ({})", std::process::id()),
            );
            addrs.push(local);
        }
        Ok(Server {
            app: Mutex::new(app),
            runtime,
            listeners: Mutex::new(listeners),
            addrs,
            threads,
            root_path,
            graceful_timeout,
            stop: watch::Sender::new(false),
        })
    }

    /// Serve until stopped (module docs of [`crate::http::server`]).
    pub(crate) fn run(
        &self,
        py: Python<'_>,
        max_requests: Option<u64>,
        handle_signals: bool,
    ) -> PyResult<()> {
        let listeners = self.listeners.lock().expect("listener lock");
        if listeners.is_empty() {
            return Err(PyRuntimeError::new_err("the server is closed"));
        }
        let infos: Vec<ListenerInfo> = self
            .addrs
            .iter()
            .map(|&addr| ListenerInfo {
                addr,
                root_path: self.root_path.clone(),
                url_scheme: "http",
                multithread: self.threads > 1,
            })
            .collect();
        let templates = infos
            .iter()
            .map(|info| environ::template(py, info))
            .collect::<PyResult<Vec<_>>>()?;
        let context = Arc::new(WorkerContext {
            app: self.app.lock().expect("app lock").clone_ref(py),
            templates,
            listeners: infos,
            runtime: self.runtime.handle().clone(),
        });
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let workers = worker::spawn(context, &jobs_rx, self.threads)?;
        drop(jobs_rx);
        let dispatch = Arc::new(Dispatch::new(jobs_tx, max_requests, self.stop.clone()));
        let options = RunOptions {
            sequential: max_requests.is_some(),
            graceful_timeout: self.graceful_timeout,
            ..RunOptions::default()
        };
        let stop = self.stop.subscribe();
        let listeners = &listeners[..];
        let outcome = py.allow_threads(|| {
            self.runtime.block_on(async {
                let run = http::run(listeners, dispatch, stop, options);
                tokio::pin!(run);
                let mut signals = Signals::new(handle_signals)?;
                let mut interrupted = None;
                loop {
                    tokio::select! {
                        aborted = &mut run => return Ok::<_, std::io::Error>((aborted, interrupted)),
                        name = signals.recv() => {
                            if *self.stop.borrow() {
                                Python::with_gil(|py| errors::log(py, "info", &format!("{name} again: stopping now")));
                                return Ok((0, interrupted));
                            }
                            Python::with_gil(|py| errors::log(py, "info", &format!("{name}: finishing in-flight requests, then stopping")));
                            self.stop.send_replace(true);
                        }
                        _ = tokio::time::sleep(SIGNAL_CHECK), if !handle_signals => {
                            if let Err(err) = Python::with_gil(|py| py.check_signals()) {
                                if interrupted.is_some() {
                                    return Ok((0, interrupted));
                                }
                                interrupted = Some(err);
                                self.stop.send_replace(true);
                            }
                        }
                    }
                }
            })
        });
        self.stop.send_replace(false);
        let (aborted, interrupted) = outcome.map_err(PyErr::from)?;
        if aborted > 0 {
            errors::log(
                py,
                "warning",
                &format!("graceful timeout: aborted {aborted} connection(s) still in flight"),
            );
        }
        join(py, workers, self.graceful_timeout);
        match interrupted {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Wait for the worker threads, at most `timeout` (an app stuck in a call is left).
fn join(py: Python<'_>, workers: Vec<std::thread::JoinHandle<()>>, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    py.allow_threads(|| {
        for worker in workers {
            while !worker.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if worker.is_finished() {
                let _ = worker.join();
            }
        }
    });
}

/// SIGTERM, SIGINT and SIGQUIT, when the server owns the process (the CLI).
struct Signals {
    streams: Vec<(tokio::signal::unix::Signal, &'static str)>,
}

impl Signals {
    fn new(enabled: bool) -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut streams = Vec::new();
        if enabled {
            for (kind, name) in [
                (SignalKind::terminate(), "SIGTERM"),
                (SignalKind::interrupt(), "SIGINT"),
                (SignalKind::quit(), "SIGQUIT"),
            ] {
                streams.push((signal(kind)?, name));
            }
        }
        Ok(Signals { streams })
    }

    async fn recv(&mut self) -> &'static str {
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        std::future::poll_fn(|cx| {
            for (stream, name) in &mut self.streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*name);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (app, binds, *, threads = 1, root_path = String::new(), graceful_timeout = 30.0))]
    fn new(
        py: Python<'_>,
        app: Py<PyAny>,
        binds: Vec<String>,
        threads: u16,
        root_path: String,
        graceful_timeout: f64,
    ) -> PyResult<Server> {
        let binds = binds
            .iter()
            .map(|spec| Bind::parse(spec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(PyValueError::new_err)?;
        if binds.is_empty() {
            return Err(PyValueError::new_err("give at least one bind address"));
        }
        if threads == 0 {
            return Err(PyValueError::new_err("threads must be at least 1"));
        }
        let root_path =
            crate::config::cli::parse_root_path(&root_path).map_err(PyValueError::new_err)?;
        let graceful_timeout = Duration::try_from_secs_f64(graceful_timeout)
            .map_err(|_| PyValueError::new_err("graceful_timeout must be 0 or more seconds"))?;
        Server::bind(py, app, &binds, threads, root_path, graceful_timeout)
    }

    /// Serve until `shutdown()` (or, with `max_requests`, that many requests).
    ///
    /// Blocks with the GIL released. Ctrl-C stops it after in-flight requests
    /// and re-raises `KeyboardInterrupt`.
    #[pyo3(signature = (max_requests = None))]
    fn serve(&self, py: Python<'_>, max_requests: Option<u64>) -> PyResult<()> {
        self.run(py, max_requests, false)
    }

    /// Ask a running `serve()` to stop after its in-flight requests; thread-safe.
    fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Close the listening sockets; the server cannot serve again.
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.listeners.lock().expect("listener lock").clear());
    }

    /// Replace the application.
    fn set_app(&self, app: Py<PyAny>) {
        *self.app.lock().expect("app lock") = app;
    }

    /// The first listener's file descriptor.
    fn fileno(&self) -> PyResult<i32> {
        let listeners = self.listeners.lock().expect("listener lock");
        listeners
            .first()
            .map(AsRawFd::as_raw_fd)
            .ok_or_else(|| PyRuntimeError::new_err("the server is closed"))
    }

    /// `(host, port)` of the first listener, with the real port.
    #[getter]
    fn server_address(&self) -> (String, u16) {
        (self.addrs[0].ip().to_string(), self.addrs[0].port())
    }

    /// Every listener's `(host, port)`.
    #[getter]
    fn addresses(&self) -> Vec<(String, u16)> {
        self.addrs
            .iter()
            .map(|a| (a.ip().to_string(), a.port()))
            .collect()
    }
}

/// Format `host` and `port` as a bind value (`[::1]:80`, `:8000`).
#[pyfunction]
pub(crate) fn format_bind(host: &str, port: u16) -> String {
    Bind::format(host, port)
}
