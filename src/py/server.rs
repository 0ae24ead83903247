//! The `Server` class: bind listeners, serve until stopped, drain gracefully.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tokio::sync::watch;

use super::environ::{self, ListenerInfo};
use super::errors;
use super::input::EmptyInput;
use super::loop_gil;
use super::worker::{self, AccessLog, WorkerContext};
use crate::config::forwarded::TrustedProxies;
use crate::config::Bind;
use crate::http::listener::{Bound, ListenOptions};
use crate::http::send_timeout::Report;
use crate::http::{self, Dispatch, Limits, RunOptions};
use crate::supervisor::Scoreboard;

/// Pending connections the kernel queues per listener (`--backlog`).
pub(crate) const BACKLOG: i32 = 2048;

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
    listeners: Mutex<Vec<Bound>>,
    /// Per listener: handed to this process (`fd://N`, systemd's `LISTEN_FDS`),
    /// so another process may share it and [`Server::stop_accepting`] only
    /// closes this process's descriptor.
    inherited: Vec<bool>,
    names: Vec<(String, String)>,
    described: Vec<String>,
    threads: u16,
    root_path: String,
    graceful_timeout: Duration,
    access: Option<Arc<AccessLog>>,
    limits: Limits,
    trusted: Arc<TrustedProxies>,
    tls: Option<Arc<rustls::ServerConfig>>,
    proxy_protocol: Option<Arc<TrustedProxies>>,
    inline: bool,
    header_timeout: Duration,
    keep_alive: Duration,
    body_timeout: Duration,
    send_timeout: Duration,
    stop: watch::Sender<bool>,
}

/// How one call of [`Server::run`] serves.
#[derive(Debug, Default)]
pub(crate) struct ServeMode {
    /// Stop after this many requests (each connection's last response says
    /// `Connection: close`).
    pub max_requests: Option<u64>,
    /// Serve one connection at a time (wsgiref's `handle_request()`).
    pub sequential: bool,
    /// The process's signals are handled elsewhere (a worker's signal thread,
    /// which sets the stop flag: see `supervise`); otherwise let Python's
    /// handlers run (Ctrl-C raises KeyboardInterrupt).
    pub handle_signals: bool,
    /// This run is the process's last (a worker): take the listeners instead
    /// of duplicating them, so the process holds one descriptor per listener
    /// and closes it as soon as it stops accepting.
    pub own_listeners: bool,
    /// After a stop, how long existing connections may still start a request
    /// (answered with `Connection: close`) before idle ones are closed.
    pub drain_window: Duration,
    /// This worker's scoreboard record, under a master.
    pub board: Option<(Arc<Scoreboard>, usize)>,
    /// `wsgi.multiprocess`: other worker processes serve the same
    /// application (`--workers` above 1, gunicorn's rule).
    pub multiprocess: bool,
}

impl Server {
    /// Bind every address and log where the server listens.
    pub(crate) fn bind(
        py: Python<'_>,
        app: Py<PyAny>,
        binds: &[Bind],
        options: &BindOptions,
    ) -> PyResult<Server> {
        let mut listeners = Vec::with_capacity(binds.len());
        let listen = ListenOptions {
            backlog: options.backlog,
            reuse_port: options.reuse_port,
        };
        for bind in binds {
            let listener = Bound::bind(bind, listen).map_err(|err| {
                for bound in &listeners {
                    Bound::cleanup(bound);
                }
                // Keep an errno Python code can test (EADDRINUSE, EACCES).
                let errno = match err.kind() {
                    std::io::ErrorKind::AddrInUse => libc::EADDRINUSE,
                    std::io::ErrorKind::PermissionDenied => libc::EACCES,
                    std::io::ErrorKind::AddrNotAvailable => libc::EADDRNOTAVAIL,
                    _ => libc::EINVAL,
                };
                PyOSError::new_err((errno, err.to_string()))
            })?;
            let mut shown = listener.describe();
            if options.tls.is_some() {
                shown = shown.replacen("http://", "https://", 1);
            }
            errors::log(
                py,
                "info",
                &format!("Listening at: {shown} ({})", std::process::id()),
            );
            listeners.push(listener);
        }
        let mut server = Server::from_listeners(app, listeners, options)?;
        server.inherited = binds.iter().map(|bind| bind.fd.is_some()).collect();
        Ok(server)
    }

    /// A server on listeners that are already bound (a forked worker's).
    pub(crate) fn from_listeners(
        app: Py<PyAny>,
        listeners: Vec<Bound>,
        options: &BindOptions,
    ) -> PyResult<Server> {
        let names = listeners.iter().map(Bound::server_name_port).collect();
        let described = listeners.iter().map(Bound::describe).collect();
        Ok(Server {
            app: Mutex::new(app),
            inherited: vec![false; listeners.len()],
            listeners: Mutex::new(listeners),
            names,
            described,
            threads: options.threads,
            root_path: options.root_path.clone(),
            graceful_timeout: options.graceful_timeout,
            access: options.access.clone(),
            limits: options.limits,
            trusted: options.trusted.clone(),
            tls: options.tls.clone(),
            proxy_protocol: options.proxy_protocol.clone(),
            inline: std::env::var_os("FERRULE_NO_INLINE").is_none(),
            header_timeout: options.header_timeout,
            keep_alive: options.keep_alive,
            body_timeout: options.body_timeout,
            send_timeout: options.send_timeout,
            stop: watch::Sender::new(false),
        })
    }

    /// Replace the application (a worker that imported it after the fork).
    pub(crate) fn set_app_object(&self, py: Python<'_>, app: Py<PyAny>) {
        let old = std::mem::replace(&mut *self.app.lock().expect("app lock"), app);
        drop(old.into_bound(py));
    }

    /// Duplicates of the listening sockets, for a worker to inherit or a run to use.
    pub(crate) fn listeners(&self) -> std::io::Result<Vec<Bound>> {
        let listeners = self.listeners.lock().expect("listener lock");
        listeners.iter().map(Bound::try_clone).collect()
    }

    /// Stop accepting for good, in every process that shares the listeners,
    /// then close them and remove the Unix socket files this process made.
    ///
    /// Closing this process's descriptors is not enough: the kernel keeps a
    /// socket listening (and queues new connections nobody will accept) until
    /// every process's descriptor is closed, and a worker whose event loop's
    /// thread is inside the application (`--threads 1`) cannot close its own
    /// before the call returns. `shutdown(2)` on a listening socket stops it
    /// for all of them at once: a TCP connect is then refused (ECONNREFUSED),
    /// and so is a connect to a Unix socket. This is how gunicorn's closing
    /// of its listeners behaves. A socket handed to the process (systemd's)
    /// is only closed: its owner still listens on it.
    pub(crate) fn stop_accepting(&self) {
        use std::os::fd::AsRawFd;
        {
            let listeners = self.listeners.lock().expect("listener lock");
            for (listener, inherited) in listeners.iter().zip(&self.inherited) {
                if !inherited {
                    // SAFETY: shuts down a socket this process owns; the descriptor stays valid.
                    unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
                }
            }
        }
        self.close_listeners();
    }

    /// The sender of the stop flag: `true` stops the run after its in-flight
    /// requests (a worker's signal thread sets it on SIGTERM).
    pub(crate) fn stop_flag(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Close the listeners and remove the Unix socket files this process made.
    pub(crate) fn close_listeners(&self) {
        let mut listeners = self.listeners.lock().expect("listener lock");
        for listener in listeners.iter() {
            listener.cleanup();
        }
        listeners.clear();
    }

    /// Serve until stopped (module docs of [`crate::http::server`]).
    pub(crate) fn run(&self, py: Python<'_>, mode: ServeMode) -> PyResult<()> {
        let listeners = if mode.own_listeners {
            std::mem::take(&mut *self.listeners.lock().expect("listener lock"))
        } else {
            self.listeners()?
        };
        if listeners.is_empty() {
            return Err(PyRuntimeError::new_err("the server is closed"));
        }
        // The runtime is built per run, after any fork: a worker must never
        // share an epoll instance with its master.
        // One Python thread: the event loop's thread runs the application
        // itself (worker::inline_handler), holding the GIL between parks.
        let inline = self.threads == 1 && self.inline;
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_all();
        if inline {
            builder
                .on_thread_park(|| {
                    // Responses that waited for the end of the turn go now;
                    // the loop then runs them instead of parking.
                    if !http::turn::end() {
                        loop_gil::release();
                    }
                })
                .on_thread_unpark(loop_gil::reacquire);
        }
        let runtime = builder.build()?;
        let listeners = {
            let _guard = runtime.enter();
            listeners
                .into_iter()
                .map(Bound::into_tokio)
                .collect::<std::io::Result<Vec<_>>>()?
        };
        let infos: Vec<ListenerInfo> = self
            .names
            .iter()
            .zip(&self.described)
            .map(|((server_name, server_port), described)| ListenerInfo {
                server_name: server_name.clone(),
                server_port: server_port.clone(),
                root_path: self.root_path.clone(),
                // TLS covers the TCP listeners; a Unix socket stays plain HTTP.
                url_scheme: if self.tls.is_some() && described.starts_with("http://") {
                    "https"
                } else {
                    "http"
                },
                multithread: self.threads > 1,
                multiprocess: mode.multiprocess,
                trusted: self.trusted.clone(),
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
            runtime: runtime.handle().clone(),
            board: mode.board.clone(),
            access: self.access.clone(),
            body_limit: self.limits.body,
            body_timeout: self.body_timeout,
            empty_input: Py::new(py, EmptyInput)?,
        });
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let (handoff_tx, handoff_rx) = crossbeam_channel::unbounded();
        let workers = worker::spawn(context.clone(), &jobs_rx, &handoff_rx, self.threads)?;
        drop((jobs_rx, handoff_rx));
        let mut dispatch =
            Dispatch::new(jobs_tx, mode.max_requests, self.stop.clone(), self.limits);
        // The inline handler uses the scoreboard slot after the threads' own.
        if inline {
            let inline = worker::inline_handler(context, handoff_tx, usize::from(self.threads));
            dispatch = dispatch.with_inline(inline, self.body_timeout);
        } else {
            // Workers stop once every sender of both queues is gone.
            drop(handoff_tx);
        }
        let dispatch = Arc::new(dispatch);
        let options = RunOptions {
            sequential: mode.sequential,
            graceful_timeout: self.graceful_timeout,
            header_timeout: self.header_timeout,
            keep_alive: self.keep_alive,
            body_timeout: self.body_timeout,
            send_timeout: self.send_timeout,
            send_timeout_report: Some(Report::new(|line| {
                // On the loop's thread: with --threads 1 it holds the GIL already.
                Python::with_gil(|py| errors::log(py, "info", line));
            })),
            drain_window: mode.drain_window,
            limits: self.limits,
            tls: self.tls.clone(),
            proxy_protocol: self.proxy_protocol.clone(),
        };
        let stop = self.stop.subscribe();
        let handle_signals = mode.handle_signals;
        let mut immediate = false;
        let serve = || {
            runtime.block_on(async {
                let run = http::run(listeners, dispatch, stop, options);
                tokio::pin!(run);
                if let Some((board, slot)) = mode.board.clone() {
                    tokio::spawn(heartbeat(board, slot, self.stop.clone()));
                }
                if inline {
                    // Ends a turn the runtime never parks to end (`turn`).
                    tokio::spawn(http::turn::keep());
                }
                let mut interrupted = None;
                loop {
                    tokio::select! {
                        aborted = &mut run => return Ok::<_, std::io::Error>((aborted, interrupted)),
                        _ = tokio::time::sleep(SIGNAL_CHECK), if !handle_signals => {
                            if let Err(err) = Python::with_gil(|py| py.check_signals()) {
                                if interrupted.is_some() {
                                    immediate = true;
                                    return Ok((0, interrupted));
                                }
                                interrupted = Some(err);
                                self.stop.send_replace(true);
                            }
                        }
                    }
                }
            })
        };
        let outcome = if inline {
            let _holding = loop_gil::Holding::start(py);
            let _turns = http::turn::Active::start();
            serve()
        } else {
            py.allow_threads(serve)
        };
        self.stop.send_replace(false);
        let (aborted, interrupted) = outcome.map_err(PyErr::from)?;
        if aborted > 0 {
            errors::log(
                py,
                "warning",
                &format!("graceful timeout: aborted {aborted} connection(s) still in flight"),
            );
        }
        // After an immediate stop, threads still inside the application are left
        // behind (the process is about to exit); otherwise they finish.
        let patience = if immediate {
            Duration::ZERO
        } else {
            self.graceful_timeout
        };
        join(py, workers, patience);
        match interrupted {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Stamp this worker's heartbeat every second; stop if the master is gone.
async fn heartbeat(board: Arc<Scoreboard>, slot: usize, stop: watch::Sender<bool>) {
    // SAFETY: getppid has no preconditions.
    let master = unsafe { libc::getppid() };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        board.heartbeat(slot);
        // SAFETY: as above.
        if unsafe { libc::getppid() } != master {
            stop.send_replace(true);
        }
    }
}

/// How listeners are bound and requests run, shared by the CLI and the class.
#[derive(Debug, Clone)]
pub(crate) struct BindOptions {
    /// Python threads per process.
    pub threads: u16,
    /// `SCRIPT_NAME`.
    pub root_path: String,
    /// `--graceful-timeout`.
    pub graceful_timeout: Duration,
    /// `--backlog`.
    pub backlog: i32,
    /// `--reuse-port`.
    pub reuse_port: bool,
    /// `--access-logfile` and its format; `None` logs no requests.
    pub access: Option<Arc<AccessLog>>,
    /// `--limit-request-*`.
    pub limits: Limits,
    /// `--forwarded-allow-ips`.
    pub trusted: Arc<TrustedProxies>,
    /// `--certfile`/`--keyfile`: TLS on every TCP listener.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `--proxy-protocol` with `--proxy-allow-from`.
    pub proxy_protocol: Option<Arc<TrustedProxies>>,
    /// `--header-timeout`: the whole request head must arrive within it.
    pub header_timeout: Duration,
    /// `--keep-alive`: the longest idle time between requests.
    pub keep_alive: Duration,
    /// `--body-timeout`: the longest wait for the next piece of a body.
    pub body_timeout: Duration,
    /// `--send-timeout`: the longest a client may take no response bytes
    /// while some wait to be sent (zero: no limit).
    pub send_timeout: Duration,
}

impl BindOptions {
    /// The options of a server started from Python code.
    pub(crate) fn new(threads: u16, root_path: String, graceful_timeout: Duration) -> BindOptions {
        BindOptions {
            threads,
            root_path,
            graceful_timeout,
            backlog: BACKLOG,
            reuse_port: false,
            access: None,
            limits: Limits::default(),
            trusted: Arc::default(),
            tls: None,
            proxy_protocol: None,
            header_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
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
        let options = BindOptions::new(threads, root_path, graceful_timeout);
        Server::bind(py, app, &binds, &options)
    }

    /// Serve until `shutdown()` (or, with `max_requests`, that many requests).
    ///
    /// Blocks with the GIL released. Ctrl-C stops it after in-flight requests
    /// and re-raises `KeyboardInterrupt`.
    #[pyo3(signature = (max_requests = None))]
    fn serve(&self, py: Python<'_>, max_requests: Option<u64>) -> PyResult<()> {
        let mode = ServeMode {
            max_requests,
            sequential: max_requests.is_some(),
            ..ServeMode::default()
        };
        self.run(py, mode)
    }

    /// Ask a running `serve()` to stop after its in-flight requests; thread-safe.
    fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Close the listening sockets; the server cannot serve again.
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.close_listeners());
    }

    /// Replace the application.
    fn set_app(&self, app: Py<PyAny>) {
        *self.app.lock().expect("app lock") = app;
    }

    /// The first listener's file descriptor.
    fn fileno(&self) -> PyResult<i32> {
        use std::os::fd::AsRawFd;
        let listeners = self.listeners.lock().expect("listener lock");
        listeners
            .first()
            .map(AsRawFd::as_raw_fd)
            .ok_or_else(|| PyRuntimeError::new_err("the server is closed"))
    }

    /// `(host, port)` of the first listener, with the real port.
    #[getter]
    fn server_address(&self) -> (String, u16) {
        self.addresses()[0].clone()
    }

    /// Every listener's `(host, port)`; a Unix socket is `("unix:/path", 0)`.
    #[getter]
    fn addresses(&self) -> Vec<(String, u16)> {
        self.names
            .iter()
            .zip(&self.described)
            .map(
                |((name, port), described)| match described.strip_prefix("http://") {
                    Some(_) => (name.clone(), port.parse().unwrap_or(0)),
                    None => (described.clone(), 0),
                },
            )
            .collect()
    }
}

/// Format `host` and `port` as a bind value (`[::1]:80`, `:8000`).
#[pyfunction]
pub(crate) fn format_bind(host: &str, port: u16) -> String {
    Bind::format(host, port)
}
