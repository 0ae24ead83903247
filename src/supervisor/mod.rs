//! The pre-fork master: start workers, replace dead or hung ones, follow signals.
//!
//! Theory of operation (gunicorn's arbiter, in Rust):
//!
//! 1. The master binds every listener, maps the [`Scoreboard`], blocks its
//!    signals ([`signals::block`]) and forks `--workers` workers. It runs no
//!    event loop and no thread of its own, so forking is always safe; each
//!    worker builds its runtime and Python threads after the fork.
//! 2. The master then loops: wait up to [`TICK`] for a signal, reap exited
//!    workers (`waitpid`), kill workers whose application has run one request
//!    past `--timeout` (waits for the client do not count; the log names the
//!    request), and fork until the current generation has as many workers as
//!    wanted. A dead worker is thus replaced within one tick of its SIGCHLD.
//! 3. Signals (gunicorn's arbiter): TERM and INT stop gracefully: the master
//!    stops accepting at once ([`Spawn::stop_accepting`]: new clients are
//!    refused), the workers finish their in-flight requests, then exit; after
//!    `--graceful-timeout` they are killed (Ctrl-C in a terminal should not
//!    drop the request being watched). QUIT stops fast, and so does a second
//!    TERM or INT: the workers get SIGQUIT and exit within about a second even
//!    inside an application call; one still there after [`FAST_STOP_LIMIT`]
//!    is killed. HUP starts a new generation and stops the old one once every
//!    new worker has sent a heartbeat (so some worker always accepts; the
//!    listeners stay open); TTIN/TTOU change the number wanted; USR1 reopens
//!    log files here and in every worker, which keep serving.
//! 4. A worker that exits with [`APP_LOAD_ERROR`] (it could not import the
//!    application) stops the master with that status when no other worker
//!    is serving (at start, gunicorn's rule): no respawn loop. When others
//!    are (a HUP whose new code does not import, or a replacement worker
//!    that meets code broken on disk since), they keep serving: a failed new
//!    generation is stopped and the last one stays current, and a worker is
//!    started again only after [`HOLD_RETRY`] or at the next HUP
//!    (`Master::hold`). With `--reload`, the next source change tries again.
//!
//! What a worker does after the fork is behind [`Spawn`], so this module stays
//! free of Python.

pub mod reload;
pub mod scoreboard;
pub mod signals;

use std::io;
use std::time::{Duration, Instant};

pub use reload::Reloader;
pub use scoreboard::Scoreboard;
use signals::Signal;

/// gunicorn's exit status for "the application could not be loaded".
pub const APP_LOAD_ERROR: i32 = 4;

/// How long the master waits, after a worker could not import the
/// application while others serve, before it starts a missing worker again
/// (module docs, point 4): one failed try (two log lines) per period while
/// the code stays broken.
pub const HOLD_RETRY: Duration = Duration::from_secs(10);

/// The longest the master sleeps between two looks at its workers.
pub const TICK: Duration = Duration::from_millis(250);

/// How long workers get to exit after a fast stop (QUIT, or a second TERM or
/// INT) before the master kills them. A worker exits by itself within about a
/// second of its SIGQUIT, even inside an application call; this bounds a
/// worker that cannot (stopped, or stuck in the kernel).
pub const FAST_STOP_LIMIT: Duration = Duration::from_secs(3);

/// Severity of a master log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine events (worker started, signals).
    Info,
    /// Something went wrong but was handled (a worker died, was killed).
    Warning,
    /// Something stops the server.
    Error,
}

/// What the master needs from its environment.
pub trait Spawn {
    /// Fork a worker that uses scoreboard record `slot`; returns its pid in
    /// the master. In the child this never returns.
    ///
    /// # Errors
    ///
    /// The `fork(2)` error.
    fn spawn(&mut self, slot: usize) -> io::Result<libc::pid_t>;

    /// Write a line to the error log.
    fn log(&mut self, level: Level, message: &str);

    /// Reopen log files (SIGUSR1).
    fn reopen_logs(&mut self);

    /// Stop accepting connections for good, in every process: the server is
    /// stopping (TERM, INT, QUIT), so new clients are refused at once rather
    /// than queued for workers that will never accept them. Not called for
    /// a reload (HUP), whose new workers accept on the same listeners.
    fn stop_accepting(&mut self);
}

/// How the master runs.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Workers wanted at start (`--workers`). Default is 1.
    pub workers: usize,
    /// Longest the application may run on one request before its worker is
    /// killed (`--timeout`); a wait for the client pauses the request's
    /// clock ([`Scoreboard::pause`]). `None` disables the check. Default is
    /// 30 s.
    pub timeout: Option<Duration>,
    /// How long workers get to finish after TERM (`--graceful-timeout`).
    /// Default is 30 s.
    pub graceful_timeout: Duration,
}

#[derive(Debug)]
struct Worker {
    pid: libc::pid_t,
    slot: usize,
    generation: u64,
    started: Instant,
    stopping_since: Option<Instant>,
}

/// The master loop (module docs); returns the process exit status.
///
/// With a `reloader` (`--reload`), a changed source file starts a new
/// generation, and a generation that cannot import the application waits for
/// the next change instead of stopping the master.
pub fn run(
    config: &MasterConfig,
    board: &Scoreboard,
    spawner: &mut impl Spawn,
    reloader: Option<Reloader>,
) -> i32 {
    Master {
        config,
        board,
        workers: Vec::new(),
        wanted: config.workers.max(1),
        generation: 0,
        stopping: None,
        fast_since: None,
        exit: 0,
        reloader,
        paused: false,
        retry_at: None,
    }
    .run(spawner)
}

struct Master<'a> {
    config: &'a MasterConfig,
    board: &'a Scoreboard,
    workers: Vec<Worker>,
    wanted: usize,
    generation: u64,
    stopping: Option<Instant>,
    /// When a fast stop (QUIT, a second TERM or INT) was sent to the workers.
    fast_since: Option<Instant>,
    exit: i32,
    reloader: Option<Reloader>,
    /// A worker could not import the application: start none until the
    /// next HUP (or, with `--reload`, source change), or `retry_at`.
    paused: bool,
    /// When a paused master tries a missing worker again (not with `--reload`).
    retry_at: Option<Instant>,
}

impl Master<'_> {
    fn run(mut self, spawner: &mut impl Spawn) -> i32 {
        loop {
            self.reap(spawner);
            if let Some(since) = self.stopping {
                if self.workers.is_empty() {
                    return self.exit;
                }
                if since.elapsed() > self.config.graceful_timeout {
                    self.kill_all(spawner, "graceful timeout passed");
                } else if self
                    .fast_since
                    .is_some_and(|s| s.elapsed() > FAST_STOP_LIMIT)
                {
                    self.kill_all(spawner, "it did not stop at once");
                    self.fast_since = None;
                }
            } else {
                if let Some(path) = self.reloader.as_mut().and_then(Reloader::changed) {
                    spawner.log(
                        Level::Info,
                        &format!("Reloading: {} changed", path.display()),
                    );
                    self.generation = self.newest() + 1;
                    self.paused = false;
                    self.retry_at = None;
                }
                self.kill_overdue(spawner);
                self.retire(spawner);
                if self.retry_at.is_some_and(|at| Instant::now() >= at) {
                    self.paused = false;
                    self.retry_at = None;
                }
                if !self.paused {
                    self.fill(spawner);
                }
            }
            if let Some(signal) = signals::wait(TICK) {
                self.on_signal(signal, spawner);
            }
        }
    }

    /// The newest generation ever started: a new one must differ from every
    /// worker's, those of a generation given up (`Master::hold`) too.
    fn newest(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.generation)
            .fold(self.generation, u64::max)
    }

    fn current(&self) -> impl Iterator<Item = &Worker> {
        self.workers
            .iter()
            .filter(|w| w.generation == self.generation && w.stopping_since.is_none())
    }

    fn fill(&mut self, spawner: &mut impl Spawn) {
        while self.current().count() < self.wanted {
            let Some(slot) =
                (0..self.board.capacity()).find(|s| self.workers.iter().all(|w| w.slot != *s))
            else {
                spawner.log(Level::Error, "no free worker slot: too many workers");
                self.wanted = self.current().count();
                return;
            };
            self.board.reset(slot);
            match spawner.spawn(slot) {
                Ok(pid) => {
                    spawner.log(Level::Info, &format!("Booting worker with pid: {pid}"));
                    self.workers.push(Worker {
                        pid,
                        slot,
                        generation: self.generation,
                        started: Instant::now(),
                        stopping_since: None,
                    });
                }
                Err(err) => {
                    spawner.log(Level::Error, &format!("cannot fork a worker: {err}"));
                    return;
                }
            }
        }
    }

    /// Stop workers beyond the number wanted, and the old generation once the
    /// new one is serving.
    fn retire(&mut self, spawner: &mut impl Spawn) {
        let generation = self.generation;
        let new_ready = self.current().count() >= self.wanted
            && self
                .current()
                .all(|w| self.board.heartbeat_after(w.slot, w.started));
        let mut surplus = self.current().count().saturating_sub(self.wanted);
        for worker in self.workers.iter_mut().rev() {
            if worker.stopping_since.is_some() {
                continue;
            }
            let old = worker.generation != generation && new_ready;
            let extra = worker.generation == generation && surplus > 0;
            if old || extra {
                if extra {
                    surplus -= 1;
                }
                signal(worker.pid, libc::SIGTERM);
                worker.stopping_since = Some(Instant::now());
            }
        }
        let limit = self.config.graceful_timeout;
        for worker in &mut self.workers {
            if worker.stopping_since.is_some_and(|s| s.elapsed() > limit) {
                spawner.log(
                    Level::Warning,
                    &format!("worker {} did not stop in time: killing it", worker.pid),
                );
                signal(worker.pid, libc::SIGKILL);
                worker.stopping_since = Some(Instant::now());
            }
        }
    }

    fn kill_overdue(&mut self, spawner: &mut impl Spawn) {
        let Some(limit) = self.config.timeout else {
            return;
        };
        for worker in &mut self.workers {
            if worker.stopping_since.is_some() {
                continue;
            }
            if let Some((label, elapsed)) = self.board.overdue(worker.slot, limit) {
                spawner.log(
                    Level::Error,
                    &format!(
                        "WORKER TIMEOUT (pid:{}): {label} ran {:.1} s (--timeout {} s); killing the worker",
                        worker.pid,
                        elapsed.as_secs_f64(),
                        limit.as_secs_f64()
                    ),
                );
                signal(worker.pid, libc::SIGKILL);
                worker.stopping_since = Some(Instant::now());
            }
        }
    }

    fn reap(&mut self, spawner: &mut impl Spawn) {
        loop {
            let mut status = 0;
            // SAFETY: reaps any of our children without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
                continue;
            };
            let worker = self.workers.swap_remove(index);
            let expected = worker.stopping_since.is_some() || self.stopping.is_some();
            if libc::WIFEXITED(status) {
                let code = libc::WEXITSTATUS(status);
                if code == APP_LOAD_ERROR && !expected {
                    self.hold(spawner, worker.generation);
                } else if code != 0 {
                    spawner.log(
                        Level::Warning,
                        &format!("Worker (pid:{pid}) exited with code {code}"),
                    );
                } else {
                    // Exit 0 unasked is a worker recycling itself (--max-requests).
                    let why = if expected { "" } else { " (recycled)" };
                    spawner.log(Level::Info, &format!("Worker exiting (pid: {pid}){why}"));
                }
            } else if libc::WIFSIGNALED(status) {
                let sig = libc::WTERMSIG(status);
                let level = if expected {
                    Level::Info
                } else {
                    Level::Warning
                };
                spawner.log(
                    level,
                    &format!("Worker (pid:{pid}) was killed by signal {sig}"),
                );
            }
        }
    }

    /// A worker of `generation` could not import the application (module
    /// docs, point 4): keep the workers that serve, if any (a failed new
    /// generation is given up), and start no more until the next HUP or
    /// source change, or [`HOLD_RETRY`]; stop the master if none serve and
    /// there is no `--reload` to wait on.
    fn hold(&mut self, spawner: &mut impl Spawn, generation: u64) {
        let live = |w: &&Worker| w.stopping_since.is_none();
        let older = self
            .workers
            .iter()
            .filter(live)
            .filter(|w| w.generation != generation)
            .map(|w| w.generation)
            .max();
        if let (Some(last), true) = (older, generation == self.generation) {
            // The new generation does not import: the last one stays.
            for worker in &mut self.workers {
                if worker.generation == generation && worker.stopping_since.is_none() {
                    signal(worker.pid, libc::SIGTERM);
                    worker.stopping_since = Some(Instant::now());
                }
            }
            self.generation = last;
        }
        // Serving: its event loop has run (a booting worker of the same
        // code is likely to fail too).
        let running = self
            .workers
            .iter()
            .filter(live)
            .filter(|w| self.board.heartbeat_after(w.slot, w.started))
            .count();
        let again = if self.reloader.is_some() {
            "waiting for a source change".to_owned()
        } else if running > 0 {
            format!(
                "send HUP once it is fixed (a missing worker is tried again every {} s)",
                HOLD_RETRY.as_secs()
            )
        } else {
            spawner.log(
                Level::Error,
                "a worker could not load the application: stopping",
            );
            self.exit = APP_LOAD_ERROR;
            self.begin_stop(spawner, libc::SIGTERM);
            return;
        };
        let serving = if running > 0 {
            format!("{running} running worker(s) keep serving the code they loaded; ")
        } else {
            String::new()
        };
        spawner.log(
            Level::Error,
            &format!("a worker could not load the application: {serving}{again}"),
        );
        self.paused = true;
        self.retry_at = self.reloader.is_none().then(|| Instant::now() + HOLD_RETRY);
    }

    fn begin_stop(&mut self, spawner: &mut impl Spawn, sig: libc::c_int) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
            spawner.stop_accepting();
        }
        if sig == libc::SIGQUIT {
            self.fast_since = Some(Instant::now());
        }
        for worker in &mut self.workers {
            signal(worker.pid, sig);
            worker.stopping_since.get_or_insert_with(Instant::now);
        }
    }

    fn kill_all(&mut self, spawner: &mut impl Spawn, why: &str) {
        for worker in &self.workers {
            spawner.log(
                Level::Warning,
                &format!("killing worker {}: {why}", worker.pid),
            );
            signal(worker.pid, libc::SIGKILL);
        }
        // Reap on the next ticks; stop counting toward the deadline again.
        self.stopping = Some(Instant::now());
    }

    fn on_signal(&mut self, sig: Signal, spawner: &mut impl Spawn) {
        match sig {
            Signal::Chld => {}
            Signal::Term | Signal::Int | Signal::Quit if self.stopping.is_some() => {
                spawner.log(Level::Info, "Second stop signal: stopping now");
                self.begin_stop(spawner, libc::SIGQUIT);
            }
            Signal::Term | Signal::Int => {
                let name = if sig == Signal::Term { "term" } else { "int" };
                spawner.log(Level::Info, &format!("Handling signal: {name}"));
                self.begin_stop(spawner, libc::SIGTERM);
            }
            Signal::Quit => {
                spawner.log(Level::Info, "Handling signal: quit (fast stop)");
                self.begin_stop(spawner, libc::SIGQUIT);
            }
            _ if self.stopping.is_some() => {}
            Signal::Hup => {
                spawner.log(Level::Info, "Handling signal: hup (starting new workers)");
                self.generation = self.newest() + 1;
                self.paused = false;
                self.retry_at = None;
            }
            Signal::Ttin => {
                self.wanted += 1;
                spawner.log(
                    Level::Info,
                    &format!("Handling signal: ttin ({} workers)", self.wanted),
                );
            }
            Signal::Ttou => {
                self.wanted = self.wanted.saturating_sub(1).max(1);
                spawner.log(
                    Level::Info,
                    &format!("Handling signal: ttou ({} workers)", self.wanted),
                );
            }
            Signal::Usr1 => {
                spawner.log(Level::Info, "Handling signal: usr1 (reopening log files)");
                spawner.reopen_logs();
                for worker in &self.workers {
                    signal(worker.pid, libc::SIGUSR1);
                }
            }
        }
    }
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: signals one of our own children by pid.
    unsafe { libc::kill(pid, sig) };
}
