//! The event loop's thread keeps the GIL while it works, and lets it go only
//! while it waits (`--threads 1`, the inline path; bjoern's and fastwsgi's
//! model).
//!
//! With one Python thread, the loop's thread calls the application for every
//! request. Taking the GIL for each call and dropping it after (pyo3's
//! `with_gil`, CPython's `PyGILState_Ensure`/`Release`) cost about 540
//! instructions and several atomic operations per request. Instead the thread
//! holds the GIL for the whole run of the loop, and the runtime's park hooks
//! release it just before the thread blocks in `epoll_wait` and take it back
//! just after: any other Python thread (one the application started, or the
//! worker thread that reads a file for a TLS connection) runs whenever the
//! loop has nothing to do, and while the loop runs application code CPython
//! hands the GIL over at its usual switch interval. `Python::with_gil` on the
//! loop's thread is then only a counter.
//!
//! What the loop's thread must never do while holding it: block on something
//! another Python thread must do first. It does not: the request bodies it
//! serves are read whole before the call, its sends never wait, and every
//! wait is an `.await` (the thread parks, and the hook lets the GIL go).

use std::cell::Cell;

use pyo3::ffi;
use pyo3::prelude::*;

thread_local! {
    /// Whether this thread runs a loop that holds the GIL ([`Holding`]).
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// The thread state saved while the loop is parked; null while it holds the GIL.
    static SAVED: Cell<*mut ffi::PyThreadState> = const { Cell::new(std::ptr::null_mut()) };
}

/// While it lives, this thread's runtime keeps the GIL between parks: build
/// the runtime with [`release`] and [`reacquire`] as its park hooks, and run
/// `block_on` with the GIL held and a `Holding` alive.
#[derive(Debug)]
pub(crate) struct Holding(());

impl Holding {
    /// Start holding; the GIL is held now (`_py`).
    pub(crate) fn start(_py: Python<'_>) -> Holding {
        ACTIVE.set(true);
        Holding(())
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        // The loop ends between parks, holding the GIL; should it end parked
        // (it cannot), take the GIL back so the caller's view holds.
        reacquire();
        ACTIVE.set(false);
    }
}

/// The runtime's `on_thread_park` hook: let the GIL go before blocking.
pub(crate) fn release() {
    if ACTIVE.get() && SAVED.get().is_null() {
        // SAFETY: an active loop thread holds the GIL between parks (module docs).
        SAVED.set(unsafe { ffi::PyEval_SaveThread() });
    }
}

/// The runtime's `on_thread_unpark` hook: take the GIL back after waking.
pub(crate) fn reacquire() {
    let saved = SAVED.replace(std::ptr::null_mut());
    if !saved.is_null() {
        // SAFETY: `saved` is this thread's state, saved by `release`.
        unsafe { ffi::PyEval_RestoreThread(saved) };
    }
}
