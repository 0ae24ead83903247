//! The master's signals: blocked, then taken synchronously with `sigtimedwait`.
//!
//! The master has one thread and no event loop, so it blocks the signals it
//! handles and waits for them with a timeout; no handler ever runs, and nothing
//! it does can be interrupted half-way. Workers are forked with the mask
//! blocked and call [`unblock`] first thing.

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
