//! Forking workers from a Python process, and what a worker does.
//!
//! The master holds the GIL while it forks, and tells the interpreter about the
//! fork (`PyOS_BeforeFork`, `PyOS_AfterFork_Parent`/`_Child`), as `os.fork()`
//! does, so locks held by other threads and `os.register_at_fork` hooks (the
//! `logging` module's among them) are set right in the child.
//!
//! A worker's signals are taken by a thread of its own ([`watch_signals`]),
//! installed before the worker unblocks them (see
//! [`crate::supervisor::signals`]), so they are handled from the worker's
//! first instant and while an application call is in progress:
//!
//! - SIGTERM or SIGINT sets the server's stop flag: the worker stops
//!   accepting and finishes its in-flight requests. A repeated one is ignored:
//!   a Ctrl-C in a terminal reaches the worker directly *and* through the
//!   master, and the master escalates a repeated signal to SIGQUIT.
//! - SIGQUIT ends the process at once, as gunicorn's workers do: the thread
//!   logs it and flushes the log handlers (waiting at most [`FAST_STOP_FLUSH`]
//!   for the GIL), then calls `_exit(0)`. No attempt is made to unwind the
//!   application: with `--threads 1` the event loop's own thread may be inside
//!   a call that sleeps or waits on a socket, which no Python exception would
//!   interrupt, and the responses in flight are dropped by a fast stop anyway.
//! - SIGUSR1 reopens the log files (`logging.FileHandler`s of the `ferrule`
//!   loggers); the requests go on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use pyo3::ffi;
use pyo3::prelude::*;

use super::errors;
use super::server::{ServeMode, Server};
use crate::supervisor::signals::{WorkerSignal, WorkerSignals};
use crate::supervisor::{self, Level, Scoreboard, Spawn, APP_LOAD_ERROR};

/// How long a stopping worker keeps letting idle connections start a request.
const DRAIN_WINDOW: Duration = Duration::from_secs(1);

/// The longest a worker told to stop at once (SIGQUIT) waits for the GIL to
/// log and flush its log handlers before it exits anyway.
const FAST_STOP_FLUSH: Duration = Duration::from_secs(1);

/// Forks workers that serve `server`'s listeners.
pub(crate) struct PySpawner<'a, 'py> {
    pub py: Python<'py>,
    pub server: &'a Server,
    /// The application, when `--preload` imported it in the master.
    pub preloaded: bool,
    /// Imports the application in a worker (`Err` is the one-line message).
    pub load: &'a dyn Fn(Python<'py>) -> Result<Py<PyAny>, String>,
    pub board: Arc<Scoreboard>,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// `--name`, for the workers' process titles.
    pub name: String,
    /// `--user`/`--group`: who the workers run as.
    pub identity: Identity,
    /// `wsgi.multiprocess` in the workers' environ: `--workers` above 1.
    pub multiprocess: bool,
}

/// The user and group workers switch to after the fork (`--user`, `--group`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Identity {
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
}

impl Identity {
    /// Resolve names or numeric ids.
    ///
    /// # Errors
    ///
    /// A one-line message naming the unknown user or group.
    pub(crate) fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Identity, String> {
        let uid = user
            .map(|u| {
                u.parse::<libc::uid_t>().or_else(|_| {
                    let name =
                        std::ffi::CString::new(u).map_err(|_| format!("--user {u:?}: invalid"))?;
                    // SAFETY: getpwnam with a valid C string; the result is read at once.
                    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
                    if pw.is_null() {
                        Err(format!("--user {u:?}: no such user"))
                    } else {
                        // SAFETY: non-null entry from getpwnam.
                        Ok(unsafe { (*pw).pw_uid })
                    }
                })
            })
            .transpose()?;
        let gid = group
            .map(|g| {
                g.parse::<libc::gid_t>().or_else(|_| {
                    let name =
                        std::ffi::CString::new(g).map_err(|_| format!("--group {g:?}: invalid"))?;
                    // SAFETY: getgrnam with a valid C string; the result is read at once.
                    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
                    if gr.is_null() {
                        Err(format!("--group {g:?}: no such group"))
                    } else {
                        // SAFETY: non-null entry from getgrnam.
                        Ok(unsafe { (*gr).gr_gid })
                    }
                })
            })
            .transpose()?;
        Ok(Identity { uid, gid })
    }

    /// Switch the calling process: group first, while it still may.
    fn apply(self) -> std::io::Result<()> {
        if let Some(gid) = self.gid {
            // SAFETY: plain system calls on this process.
            if unsafe { libc::setgroups(1, &gid) } != 0 || unsafe { libc::setgid(gid) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some(uid) = self.uid {
            // SAFETY: as above.
            if unsafe { libc::setuid(uid) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Spawn for PySpawner<'_, '_> {
    fn spawn(&mut self, slot: usize) -> std::io::Result<libc::pid_t> {
        // SAFETY: called with the GIL held (we hold `py`), as these require.
        unsafe { ffi::PyOS_BeforeFork() };
        // SAFETY: the master has no other threads of its own (supervisor docs).
        let pid = unsafe { libc::fork() };
        if pid != 0 {
            // SAFETY: as above, in the parent.
            unsafe { ffi::PyOS_AfterFork_Parent() };
            return if pid < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(pid)
            };
        }
        // SAFETY: in the child, right after fork, with the GIL.
        unsafe { ffi::PyOS_AfterFork_Child() };
        let code = self.worker(slot);
        flush_logs(self.py);
        // SAFETY: the worker is done; leave without unwinding into the master's frames.
        unsafe { libc::_exit(code) }
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        };
        errors::log(self.py, level, message);
    }

    fn reopen_logs(&mut self) {
        reopen_logs(self.py);
    }

    fn stop_accepting(&mut self) {
        self.server.stop_accepting();
    }
}

impl PySpawner<'_, '_> {
    /// The worker's life after the fork; returns its exit status.
    fn worker(&self, slot: usize) -> i32 {
        let py = self.py;
        // Handlers first, then unblock: a signal sent meanwhile waits for them.
        let watched = WorkerSignals::install().and_then(|signals| {
            let stop = self.server.stop_flag();
            std::thread::Builder::new()
                .name("ferrule-signals".to_owned())
                .spawn(move || watch_signals(signals, &stop))?;
            supervisor::signals::unblock()
        });
        if let Err(err) = watched {
            errors::log(
                py,
                "error",
                &format!("worker cannot set up its signal handling: {err}"),
            );
            return 1;
        }
        set_process_title(py, "worker", &self.name);
        if let Err(err) = self.identity.apply() {
            errors::log(
                py,
                "error",
                &format!("worker cannot switch --user/--group: {err}"),
            );
            return 1;
        }
        if !self.preloaded {
            match (self.load)(py) {
                Ok(app) => self.server.set_app_object(py, app),
                Err(message) => {
                    // Through the error log (its format, its file): the
                    // master goes on serving with the workers it has.
                    errors::log(py, "error", &message);
                    return APP_LOAD_ERROR;
                }
            }
        }
        let max_requests =
            (self.max_requests > 0).then(|| self.max_requests + jitter(self.max_requests_jitter));
        let mode = ServeMode {
            max_requests,
            sequential: false,
            handle_signals: true,
            own_listeners: true,
            drain_window: DRAIN_WINDOW,
            board: Some((self.board.clone(), slot)),
            multiprocess: self.multiprocess,
        };
        match self.server.run(py, mode) {
            Ok(()) => 0,
            Err(err) => {
                errors::log_exception(py, "worker failed", &err);
                1
            }
        }
    }
}

/// Import the application in a throwaway child process, before anything is bound.
///
/// Without `--preload` the workers import the application after the master has
/// bound its listeners; this trial makes a mistake fail fast instead, with its
/// one-line message and exit status 4, and no socket ever bound. The child
/// prints the message itself; `Err` carries the exit status to use.
pub(crate) fn check_import(
    py: Python<'_>,
    load: &dyn Fn(Python<'_>) -> Result<Py<PyAny>, String>,
) -> Result<(), i32> {
    // SAFETY: as in `PySpawner::spawn`.
    unsafe { ffi::PyOS_BeforeFork() };
    // SAFETY: the master has no threads of its own yet.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child, right after fork, with the GIL.
        unsafe { ffi::PyOS_AfterFork_Child() };
        let code = match load(py) {
            Ok(_) => 0,
            Err(message) => {
                eprintln!("Error: {message}");
                APP_LOAD_ERROR
            }
        };
        // SAFETY: the trial is over; skip the interpreter's teardown.
        unsafe { libc::_exit(code) }
    }
    // SAFETY: in the parent, with the GIL.
    unsafe { ffi::PyOS_AfterFork_Parent() };
    if pid < 0 {
        eprintln!(
            "Error: cannot fork to check the application: {}",
            std::io::Error::last_os_error()
        );
        return Err(1);
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; the GIL is released meanwhile.
    let waited = py.allow_threads(|| unsafe { libc::waitpid(pid, &mut status, 0) });
    if waited != pid {
        return Err(1);
    }
    if libc::WIFEXITED(status) {
        return match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            code => Err(code),
        };
    }
    eprintln!(
        "Error: importing the application crashed the process (signal {})",
        libc::WTERMSIG(status)
    );
    Err(APP_LOAD_ERROR)
}

/// Name this process `ferrule: {role} [{name}]` (module docs of `--name`).
///
/// The kernel's short name (`/proc/PID/comm`, 15 bytes) is set directly;
/// the full title, shown by `ps aux`, only when `setproctitle` is installed.
pub(crate) fn set_process_title(py: Python<'_>, role: &str, name: &str) {
    let title = format!("ferrule: {role} [{name}]");
    if let Ok(module) = py.import("setproctitle") {
        let _ = module.call_method1("setproctitle", (&title,));
    }
    let mut short: Vec<u8> = format!("ferrule: {role}").into_bytes();
    short.truncate(15);
    short.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, short.as_ptr(), 0, 0, 0) };
}

/// A random number in `0..=max`, from the pid and the clock (no crate needed
/// for spreading restarts).
fn jitter(max: u64) -> u64 {
    if max == 0 {
        return 0;
    }
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ supervisor::scoreboard::now_ms().wrapping_mul(0xBF58_476D_1CE4_E5B9);
    seed % (max + 1)
}

/// A worker's signal thread (module docs): act on each signal as it comes.
fn watch_signals(mut signals: WorkerSignals, stop: &watch::Sender<bool>) {
    let mut stopping = false;
    while let Some(signal) = signals.recv() {
        let name = match signal {
            WorkerSignal::Term => "SIGTERM",
            WorkerSignal::Int => "SIGINT",
            WorkerSignal::Quit => "SIGQUIT",
            WorkerSignal::Usr1 => "SIGUSR1",
        };
        match signal {
            WorkerSignal::Usr1 => Python::with_gil(|py| {
                reopen_logs(py);
                errors::log(py, "info", &format!("{name}: log files reopened"));
            }),
            WorkerSignal::Quit => exit_now(name),
            WorkerSignal::Term | WorkerSignal::Int if !stopping => {
                stopping = true;
                stop.send_replace(true);
                Python::with_gil(|py| {
                    errors::log(
                        py,
                        "info",
                        &format!("{name}: finishing in-flight requests, then stopping"),
                    );
                });
            }
            WorkerSignal::Term | WorkerSignal::Int => {}
        }
    }
}

/// SIGQUIT: log, flush the logs (at most [`FAST_STOP_FLUSH`]), and leave.
fn exit_now(name: &str) -> ! {
    let message = format!("{name}: stopping now");
    let (done, flushed) = std::sync::mpsc::channel();
    // The GIL may be held by a thread that never lets go (an application stuck
    // in C code): the flush runs on a thread of its own, and is given up on.
    let _ = std::thread::Builder::new().spawn(move || {
        Python::with_gil(|py| {
            errors::log(py, "info", &message);
            flush_logs(py);
        });
        let _ = done.send(());
    });
    let _ = flushed.recv_timeout(FAST_STOP_FLUSH);
    // SAFETY: ends the process at once; nothing is unwound, no atexit hook runs
    // (as after a worker's normal end, see `PySpawner::spawn`).
    unsafe { libc::_exit(0) }
}

/// Flush and close the log handlers and Python's standard streams.
fn flush_logs(py: Python<'_>) {
    let _ = py
        .import("logging")
        .and_then(|l| l.call_method0("shutdown"));
    let _ = py.import("sys").and_then(|sys| {
        sys.getattr("stdout")?.call_method0("flush")?;
        sys.getattr("stderr")?.call_method0("flush")
    });
}

/// SIGUSR1: reopen every `logging.FileHandler` of the `ferrule` loggers.
pub(crate) fn reopen_logs(py: Python<'_>) {
    let result: PyResult<()> = (|| {
        let logging = py.import("logging")?;
        let file_handler = logging.getattr("FileHandler")?;
        for name in ["ferrule", "ferrule.error", "ferrule.access"] {
            let logger = logging.call_method1("getLogger", (name,))?;
            for handler in logger.getattr("handlers")?.try_iter()? {
                let handler = handler?;
                if handler.is_instance(&file_handler)? {
                    handler.call_method0("acquire")?;
                    handler.call_method0("close")?;
                    handler.setattr("stream", handler.call_method0("_open")?)?;
                    handler.call_method0("release")?;
                }
            }
        }
        Ok(())
    })();
    if let Err(err) = result {
        errors::log_exception(py, "reopening log files failed", &err);
    }
}
