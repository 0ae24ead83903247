//! The master's signals: blocked, then taken synchronously with `sigtimedwait`.
//!
//! The master has one thread and no event loop, so it blocks the signals it
//! handles and waits for them with a timeout; no handler ever runs, and nothing
//! it does can be interrupted half-way. Workers are forked with the mask
//! blocked, install [`WorkerSignals`] and only then call [`unblock`]: a signal
//! the master sends while a worker is still booting waits, blocked, for the
//! worker's handler instead of meeting the default action (which, for SIGUSR1,
//! is to kill the process).
//!
//! A worker's handlers only write the signal's number to a pipe; one thread of
//! the worker reads the pipe ([`WorkerSignals::recv`]) and acts. That thread
//! is never the one that runs the application, so it can act while an
//! application call is in progress: with `--threads 1` the event loop's own
//! thread runs the application, and nothing on that thread can see a signal
//! until the call returns.

use std::io;
use std::time::Duration;

/// A signal the master acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: graceful stop.
    Term,
    /// SIGINT: fast stop.
    Int,
    /// SIGQUIT: fast stop.
    Quit,
    /// SIGHUP: graceful reload (new workers, then the old ones drain).
    Hup,
    /// SIGTTIN: one worker more.
    Ttin,
    /// SIGTTOU: one worker fewer.
    Ttou,
    /// SIGUSR1: reopen log files.
    Usr1,
    /// SIGCHLD: a worker exited.
    Chld,
}

const HANDLED: [(libc::c_int, Signal); 8] = [
    (libc::SIGTERM, Signal::Term),
    (libc::SIGINT, Signal::Int),
    (libc::SIGQUIT, Signal::Quit),
    (libc::SIGHUP, Signal::Hup),
    (libc::SIGTTIN, Signal::Ttin),
    (libc::SIGTTOU, Signal::Ttou),
    (libc::SIGUSR1, Signal::Usr1),
    (libc::SIGCHLD, Signal::Chld),
];

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for (number, _) in HANDLED {
            libc::sigaddset(&mut set, number);
        }
        set
    }
}

fn mask(how: libc::c_int) -> io::Result<()> {
    let set = handled_set();
    // SAFETY: changes this thread's mask with a valid set.
    let rc = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Block the master's signals in the calling thread (before forking workers).
///
/// # Errors
///
/// The `pthread_sigmask(3)` error.
pub fn block() -> io::Result<()> {
    mask(libc::SIG_BLOCK)
}

/// Unblock them again: a worker's first step after fork.
///
/// # Errors
///
/// The `pthread_sigmask(3)` error.
pub fn unblock() -> io::Result<()> {
    mask(libc::SIG_UNBLOCK)
}

/// The signals a worker takes from its master (gunicorn's worker signals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerSignal {
    /// SIGTERM: stop accepting, finish the requests in flight, exit.
    Term,
    /// SIGINT: as SIGTERM (Ctrl-C reaches the workers and the master alike).
    Int,
    /// SIGQUIT: exit at once (the master also sends it for a second TERM or INT).
    Quit,
    /// SIGUSR1: reopen the log files.
    Usr1,
}

const WORKER_HANDLED: [(libc::c_int, WorkerSignal); 4] = [
    (libc::SIGTERM, WorkerSignal::Term),
    (libc::SIGINT, WorkerSignal::Int),
    (libc::SIGQUIT, WorkerSignal::Quit),
    (libc::SIGUSR1, WorkerSignal::Usr1),
];

/// A worker's signals, delivered through a pipe to whichever thread calls
/// [`WorkerSignals::recv`] (module docs).
#[derive(Debug)]
pub struct WorkerSignals {
    read: std::fs::File,
}

impl WorkerSignals {
    /// Install the worker's handlers; call before [`unblock`].
    ///
    /// Each handler writes one byte, the signal's number, to a pipe whose
    /// write end is non-blocking: a burst that fills the pipe (64 KiB of
    /// pending signals) loses the excess, as pending signals coalesce anyway.
    ///
    /// # Errors
    ///
    /// The `pipe2(2)` or `sigaction(2)` error.
    pub fn install() -> io::Result<WorkerSignals> {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let [read, write] = fds;
        // SAFETY: `write` is the pipe's write end, ours alone.
        unsafe {
            let flags = libc::fcntl(write, libc::F_GETFL);
            libc::fcntl(write, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        for (number, _) in WORKER_HANDLED {
            let byte = u8::try_from(number).expect("signal numbers fit a byte");
            // SAFETY: the action only calls write(2), which is async-signal-safe;
            // signal-hook-registry saves and restores errno around it. The
            // write end stays open for the life of the process.
            unsafe {
                signal_hook_registry::register(number, move || {
                    libc::write(write, std::ptr::addr_of!(byte).cast(), 1);
                })
            }?;
        }
        // SAFETY: `read` is the pipe's read end, now owned by the file.
        let read = unsafe { std::fs::File::from_raw_fd(read) };
        Ok(WorkerSignals { read })
    }

    /// Wait for the next signal; `None` if the pipe failed.
    pub fn recv(&mut self) -> Option<WorkerSignal> {
        use std::io::Read;
        let mut byte = [0u8];
        loop {
            match self.read.read(&mut byte) {
                Ok(1) => {
                    let number = libc::c_int::from(byte[0]);
                    if let Some((_, s)) = WORKER_HANDLED.iter().find(|(n, _)| *n == number) {
                        return Some(*s);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                _ => return None,
            }
        }
    }
}

/// Wait up to `timeout` for one of the master's signals.
pub fn wait(timeout: Duration) -> Option<Signal> {
    let set = handled_set();
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: valid set and timeout; the siginfo out-pointer may be null.
    let number = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
    HANDLED.iter().find(|(n, _)| *n == number).map(|(_, s)| *s)
}
