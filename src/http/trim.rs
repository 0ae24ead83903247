//! Giving the C allocator's free memory back to the system after a burst of
//! connections.
//!
//! Every connection allocates its buffers, tokio registration, task and
//! Python objects from glibc's `malloc`, and frees them when it closes. After
//! a burst of thousands of concurrent connections glibc keeps nearly all of
//! that memory: it returns heap pages to the system only from the top of the
//! heap (above `M_TRIM_THRESHOLD`), and a few live allocations placed late in
//! the burst pin everything below them. Measured on a `hello` worker
//! (`benchmarks/README.md`, "Memory after connection bursts"): 150,000
//! connections, 8,000 at a time, left its RSS at 307 MiB (14 MiB before),
//! of which `malloc_stats()` counted 3 MiB in use; `malloc_trim(0)` brought
//! it to 20 MiB. With `--threads 4` the same burst left 308 MiB across five
//! arenas, 42 MiB after the trim.
//!
//! So the accept loop ([`super::server::run`]) asks an [`IdleTrim`] once per
//! [`CHECK_EVERY`] whether the worker has just come down from a burst, and if
//! so calls [`release_free_memory`]. Nothing is added to a request's path: the
//! loop notes the number of open connections after each accept, and the
//! check is a comparison once a second. After a 250,000-connection burst,
//! 10,000 at a time, a worker is back at 21 MiB (`--threads 1`, from a peak
//! of 363) or 39 MiB (`--threads 4`, from 375) within a second.

use std::time::{Duration, Instant};

/// How often the accept loop asks [`IdleTrim::due`]: 1 s. A burst's memory
/// is given back at most this long after its connections have closed.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The least time between two trims: 5 s. A trim walks every arena's free
/// lists and unmaps their pages, on the event loop's thread, which waits
/// meanwhile (5 to 30 ms for 300 MiB with `--threads 1`, up to 90 ms with
/// `--threads 4` on a loaded 2-core machine), and the next burst faults the
/// pages in again: a worker whose connections keep swinging between many and
/// few trims at most once per this.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// The least peak of open connections that makes a trim worth it: 256. At
/// 25 to 35 KiB of RSS each while they are open (`benchmarks/README.md`),
/// fewer leave at most some MiB behind, which the next requests reuse.
pub const MIN_PEAK: usize = 256;

/// A trim is due once open connections are down to at most this fraction of
/// their peak: 1/4. The memory of the connections that closed is then at
/// least three quarters of the peak's, and the worker is past its burst
/// rather than between two waves of it.
pub const FRACTION: usize = 4;

/// When to give free memory back: the peak of open connections since the last
/// trim, and that trim's time.
#[derive(Debug, Default)]
pub struct IdleTrim {
    peak: usize,
    last: Option<Instant>,
}

impl IdleTrim {
    /// A trigger that has seen no connection.
    pub fn new() -> IdleTrim {
        IdleTrim::default()
    }

    /// Note that `open` connections are open (after an accept).
    pub fn opened(&mut self, open: usize) {
        self.peak = self.peak.max(open);
    }

    /// Whether to trim now, with `open` connections open at `now`: the peak
    /// since the last trim was at least [`MIN_PEAK`], `open` is at most
    /// 1/[`FRACTION`] of it, and the last trim was at least [`MIN_INTERVAL`]
    /// ago. When it answers `true` it starts over from `open`: the next trim
    /// needs a new burst, or these connections to close in turn.
    pub fn due(&mut self, open: usize, now: Instant) -> bool {
        self.peak = self.peak.max(open);
        let recent = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < MIN_INTERVAL);
        if self.peak < MIN_PEAK || open > self.peak / FRACTION || recent {
            return false;
        }
        self.peak = open;
        self.last = Some(now);
        true
    }
}

/// Give the C allocator's free memory back to the system: glibc's
/// `malloc_trim(0)`, which releases the free pages of every arena, not only
/// the top of the heap. Elsewhere (musl, other systems) it does nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it takes each arena's lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_trimmed_once_its_connections_are_down_to_a_quarter() {
        let start = Instant::now();
        let mut trim = IdleTrim::new();
        for open in 1..=1000 {
            trim.opened(open);
        }
        assert!(!trim.due(1000, start), "at the peak");
        assert!(!trim.due(251, start + CHECK_EVERY), "above a quarter");
        assert!(trim.due(250, start + CHECK_EVERY * 2), "at a quarter");
        // Started over from 250: those closing too is not a burst of 256.
        assert!(!trim.due(0, start + MIN_INTERVAL * 10));
    }

    #[test]
    fn few_connections_never_trim() {
        let start = Instant::now();
        let mut trim = IdleTrim::new();
        trim.opened(MIN_PEAK - 1);
        assert!(!trim.due(0, start));
        trim.opened(MIN_PEAK);
        assert!(trim.due(0, start));
    }

    #[test]
    fn trims_are_at_least_min_interval_apart() {
        let start = Instant::now();
        let mut trim = IdleTrim::new();
        trim.opened(2000);
        assert!(trim.due(0, start));
        trim.opened(2000);
        assert!(!trim.due(0, start + MIN_INTERVAL - CHECK_EVERY));
        assert!(trim.due(0, start + MIN_INTERVAL), "the peak was kept");
    }

    #[test]
    fn the_peak_also_counts_what_due_saw() {
        let start = Instant::now();
        let mut trim = IdleTrim::new();
        assert!(!trim.due(1000, start));
        assert!(trim.due(10, start + CHECK_EVERY));
    }
}
