//! Shared memory between the master and its workers: one slot per thread.
//!
//! The master maps the scoreboard (`MAP_SHARED | MAP_ANONYMOUS`) before it forks,
//! so every worker sees the same pages. A worker's threads write their own slots
//! only; the master only reads. A slot says whether its thread is running a
//! request, since when (milliseconds since the Unix epoch) and which request
//! (`METHOD /path`), so `--timeout` can kill a worker whose request runs too long
//! and name that request in the log. A thread that waits for its client
//! mid-request pauses its slot (not busy) and resumes it after (busy since
//! then): only the application's own running time counts. The worker's event
//! loop also stamps a heartbeat, so a worker whose loop is stuck is found too.
//!
//! A label may be read while it is being rewritten: the master then logs a
//! garbled label, never wrong timing, because `busy_since` is written last
//! (Release) and read first (Acquire).

use std::cell::UnsafeCell;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes of `METHOD /path` kept per slot.
const LABEL: usize = 160;

/// One thread's record.
#[repr(C)]
struct Slot {
    /// When the thread began (or resumed) its request, in milliseconds since
    /// the Unix epoch; 0 while it runs none (or is paused).
    busy_since_ms: AtomicU64,
    /// Bytes of `label` in use (at most [`LABEL`]).
    label_len: AtomicU32,
    /// `METHOD /path` of the request, cut to [`LABEL`] bytes.
    label: UnsafeCell<[u8; LABEL]>,
}

/// One worker's record: its heartbeat and requests served.
#[repr(C)]
struct WorkerRecord {
    /// The event loop's last heartbeat, in milliseconds since the Unix epoch.
    heartbeat_ms: AtomicU64,
    /// Requests finished.
    served: AtomicU64,
}

/// The shared map: `workers` records, each followed by `threads` slots.
#[derive(Debug)]
pub struct Scoreboard {
    base: NonNull<u8>,
    len: usize,
    workers: usize,
    threads: usize,
}

// SAFETY: the map is only reached through atomics, except each slot's label,
// which has one writer (its thread) and racy readers documented in the module.
unsafe impl Send for Scoreboard {}
// SAFETY: as above.
unsafe impl Sync for Scoreboard {}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Scoreboard {
    /// Map a zeroed scoreboard for `workers` worker records of `threads` slots.
    ///
    /// # Errors
    ///
    /// The `mmap(2)` error.
    pub fn new(workers: usize, threads: usize) -> io::Result<Scoreboard> {
        let len = workers * Self::stride(threads);
        // SAFETY: an anonymous shared mapping of `len` bytes; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Scoreboard {
            base: NonNull::new(ptr.cast()).expect("mmap returned a non-null pointer"),
            len,
            workers,
            threads,
        })
    }

    fn stride(threads: usize) -> usize {
        std::mem::size_of::<WorkerRecord>() + threads * std::mem::size_of::<Slot>()
    }

    /// How many worker records the map holds.
    pub fn capacity(&self) -> usize {
        self.workers
    }

    fn record(&self, worker: usize) -> &WorkerRecord {
        assert!(worker < self.workers, "worker slot {worker} out of range");
        // SAFETY: in bounds (asserted); zeroed memory is a valid WorkerRecord
        // (atomics), and the alignment of `base` is a page.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(worker * Self::stride(self.threads))
                .cast()
        }
    }

    fn slot(&self, worker: usize, thread: usize) -> &Slot {
        assert!(thread < self.threads, "thread slot {thread} out of range");
        let offset = worker * Self::stride(self.threads)
            + std::mem::size_of::<WorkerRecord>()
            + thread * std::mem::size_of::<Slot>();
        let _ = self.record(worker);
        // SAFETY: in bounds (asserted through record()); zeroed memory is a
        // valid Slot; offsets keep 8-byte alignment (repr(C) sizes are multiples of 8).
        unsafe { &*self.base.as_ptr().add(offset).cast() }
    }

    /// Clear a worker's record and slots before a new worker takes it.
    pub fn reset(&self, worker: usize) {
        let record = self.record(worker);
        record.heartbeat_ms.store(now_ms(), Ordering::Release);
        record.served.store(0, Ordering::Relaxed);
        for thread in 0..self.threads {
            self.slot(worker, thread)
                .busy_since_ms
                .store(0, Ordering::Release);
        }
    }

    /// Worker side: thread `thread` starts the request `label`.
    pub fn begin(&self, worker: usize, thread: usize, label: &[u8]) {
        self.begin_parts(worker, thread, &[label]);
    }

    /// [`Scoreboard::begin`] with the label given in pieces (`METHOD`, ` `,
    /// `/path`), so the hot path builds no string.
    pub fn begin_parts(&self, worker: usize, thread: usize, pieces: &[&[u8]]) {
        let slot = self.slot(worker, thread);
        // SAFETY: only this thread writes this slot's label (module docs).
        let label = unsafe { &mut *slot.label.get() };
        let mut n = 0;
        for piece in pieces {
            let take = piece.len().min(LABEL - n);
            label[n..n + take].copy_from_slice(&piece[..take]);
            n += take;
        }
        slot.label_len.store(n as u32, Ordering::Relaxed);
        slot.busy_since_ms.store(now_ms().max(1), Ordering::Release);
    }

    /// Worker side: thread `thread` finished its request.
    pub fn end(&self, worker: usize, thread: usize) {
        self.slot(worker, thread)
            .busy_since_ms
            .store(0, Ordering::Release);
        self.record(worker).served.fetch_add(1, Ordering::Relaxed);
    }

    /// Worker side: thread `thread` stops running application code for a
    /// while, its request not finished (an inline response, or a worker
    /// thread, waiting for its client): not busy, not counted as served.
    ///
    /// The time until [`Scoreboard::resume`] (or the next
    /// [`Scoreboard::begin`]) does not count toward `--timeout`.
    pub fn pause(&self, worker: usize, thread: usize) {
        self.slot(worker, thread)
            .busy_since_ms
            .store(0, Ordering::Release);
    }

    /// Worker side: thread `thread` runs its request again after a
    /// [`Scoreboard::pause`]: busy from now, under the label of its last
    /// [`Scoreboard::begin`].
    pub fn resume(&self, worker: usize, thread: usize) {
        self.slot(worker, thread)
            .busy_since_ms
            .store(now_ms().max(1), Ordering::Release);
    }

    /// Worker side: whether thread `thread` is running a request, its clock
    /// going (begun, and neither paused nor ended since).
    pub fn busy(&self, worker: usize, thread: usize) -> bool {
        // Only this thread writes its slot: it reads its own last store.
        self.slot(worker, thread)
            .busy_since_ms
            .load(Ordering::Relaxed)
            != 0
    }

    /// Worker side: the event loop is alive.
    pub fn heartbeat(&self, worker: usize) {
        self.record(worker)
            .heartbeat_ms
            .store(now_ms(), Ordering::Release);
    }

    /// Master side: the longest-running request of `worker` that has run more
    /// than `limit`, as `(label, elapsed)`; or a stale heartbeat, labelled so.
    pub fn overdue(&self, worker: usize, limit: Duration) -> Option<(String, Duration)> {
        let now = now_ms();
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let mut worst: Option<(String, Duration)> = None;
        for thread in 0..self.threads {
            let slot = self.slot(worker, thread);
            let since = slot.busy_since_ms.load(Ordering::Acquire);
            if since == 0 || now.saturating_sub(since) <= limit_ms {
                continue;
            }
            let elapsed = Duration::from_millis(now - since);
            if worst.as_ref().is_some_and(|(_, e)| *e >= elapsed) {
                continue;
            }
            let len = (slot.label_len.load(Ordering::Relaxed) as usize).min(LABEL);
            // SAFETY: a racy read of plain bytes (module docs); any value is valid.
            let label = unsafe { (&*slot.label.get())[..len].to_vec() };
            worst = Some((String::from_utf8_lossy(&label).into_owned(), elapsed));
        }
        if worst.is_none() {
            let beat = self.record(worker).heartbeat_ms.load(Ordering::Acquire);
            // The event loop stamps every second; allow the whole timeout on top.
            if now.saturating_sub(beat) > limit_ms + 1000 {
                let elapsed = Duration::from_millis(now - beat);
                worst = Some(("no heartbeat from the event loop".to_owned(), elapsed));
            }
        }
        worst
    }

    /// Master side: whether `worker` stamped a heartbeat after `since` (its
    /// event loop is running, so it accepts connections).
    pub fn heartbeat_after(&self, worker: usize, since: std::time::Instant) -> bool {
        let beat = self.record(worker).heartbeat_ms.load(Ordering::Acquire);
        let since_ms =
            now_ms().saturating_sub(u64::try_from(since.elapsed().as_millis()).unwrap_or(0));
        beat > since_ms
    }

    /// Master side: requests `worker` has finished.
    pub fn served(&self, worker: usize) -> u64 {
        self.record(worker).served.load(Ordering::Relaxed)
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(), unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len.max(1)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_track_requests() {
        let board = Scoreboard::new(3, 2).unwrap();
        board.reset(1);
        assert!(board.overdue(1, Duration::from_secs(10)).is_none());
        board.begin(1, 1, b"GET /slow");
        assert!(board.overdue(1, Duration::from_secs(10)).is_none());
        std::thread::sleep(Duration::from_millis(30));
        let (label, elapsed) = board.overdue(1, Duration::from_millis(10)).unwrap();
        assert_eq!(label, "GET /slow");
        assert!(elapsed >= Duration::from_millis(10));
        board.end(1, 1);
        assert!(board.overdue(1, Duration::from_millis(10)).is_none());
        assert_eq!(board.served(1), 1);
        assert_eq!(board.served(0), 0);
    }

    #[test]
    fn a_paused_slot_is_not_overdue_and_resumes_from_now() {
        let board = Scoreboard::new(1, 2).unwrap();
        board.reset(0);
        board.begin(0, 1, b"GET /download");
        assert!(board.busy(0, 1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(board.overdue(0, Duration::from_millis(40)).is_some());

        board.pause(0, 1);
        assert!(!board.busy(0, 1));
        board.heartbeat(0);
        assert!(board.overdue(0, Duration::from_millis(40)).is_none());
        assert_eq!(board.served(0), 0, "a pause is not the end of the request");

        let resumed = std::time::Instant::now();
        board.resume(0, 1);
        assert!(board.busy(0, 1));
        std::thread::sleep(Duration::from_millis(5));
        let (label, elapsed) = board.overdue(0, Duration::ZERO).unwrap();
        assert_eq!(label, "GET /download", "the label is kept");
        // Counted from the resume (whole milliseconds), not from the begin
        // 50 ms before it.
        assert!(
            elapsed <= resumed.elapsed() + Duration::from_millis(1),
            "{elapsed:?} since the begin, not the resume"
        );

        board.end(0, 1);
        assert!(!board.busy(0, 1));
        assert_eq!(board.served(0), 1);
    }

    #[test]
    fn long_labels_are_cut() {
        let board = Scoreboard::new(1, 1).unwrap();
        board.begin(0, 0, &[b'a'; 500]);
        std::thread::sleep(Duration::from_millis(5));
        let (label, _) = board.overdue(0, Duration::ZERO).unwrap();
        assert_eq!(label.len(), LABEL);
    }

    #[test]
    fn layout_keeps_alignment() {
        assert_eq!(std::mem::size_of::<Slot>() % 8, 0);
        assert_eq!(std::mem::size_of::<WorkerRecord>() % 8, 0);
    }

    #[test]
    fn shared_across_fork() {
        let board = Scoreboard::new(1, 1).unwrap();
        board.reset(0);
        // SAFETY: the child only touches the map and exits at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            board.begin(0, 0, b"POST /child");
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(board.overdue(0, Duration::ZERO).unwrap().0, "POST /child");
    }
}
