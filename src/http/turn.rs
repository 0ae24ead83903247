//! Whole responses made on the event loop's thread wait for the end of the
//! loop's turn, and their writes go out together.
//!
//! On the inline path (`--threads 1`) the loop's thread calls the
//! application for each ready connection in turn. Writing each response the
//! moment its call returns spaces the writes one application call apart, and
//! a client that took the last response quickly is asleep again when the next
//! one lands: each write then pays for waking it (on loopback, in the
//! sender's system time: 10–15 µs a request on this project's two-core VM
//! under a 100 µs Flask view). Waiting for the end of the turn, when the
//! runtime has run every task that was ready, sends the turn's responses
//! back to back. bjoern does the same: its application calls happen as the
//! reads come in, and the writes in the loop's next iteration.
//!
//! A turn is bounded: a request that arrives once [`BUDGET`] has passed
//! since the turn's first request arrived waits for the next turn
//! ([`admit`]), so the turn ends after the call under way and its responses
//! go out. The requests held back are called first in the next turn, in the
//! order they came. A turn therefore lasts at most the budget and one
//! application call: a 100 µs view shares its turn with a few others, a
//! 1 ms one has its turn alone. Both clocks are the time each request's head
//! arrived (`received`, read once per request already). Only whole bodies
//! wait ([`super::ResponseBody::Full`], `Small`, `Empty`): a streamed
//! response's first block goes out at once, as PEP 3333 asks ("must not
//! delay the transmission of any block").
//!
//! A whole response of a plain TCP or Unix connection whose request kept it
//! open is not waited for at all: its bytes are left in the turn's
//! [`Outbox`] and its task goes straight on to read the next request. The
//! end of the turn writes every connection's bytes itself, in the order they
//! were left, and wakes a task only when its write could not be finished
//! (the socket's buffer was full, or the client is gone): the task then
//! writes the rest through its own socket, with its waits and timeouts.
//! Waking each response's task at the end of the turn to write its own bytes
//! cost a wake and a poll per request, 10% of a `hello` request's
//! instructions (11,020 against 9,891 without the turn's wait).
//!
//! The end of the turn is the runtime's `on_thread_park` hook ([`end`]),
//! which runs when no task is left to run; on a thread whose runtime lacks
//! the hook nothing waits ([`Active`]). A runtime that always has deferred
//! work never parks: tokio then polls its driver without calling the hook
//! (`yield_now`, as a streamed response does between blocks to a client that
//! keeps up, or a task out of its budget). [`keep`], a task of its own, ends
//! a turn that is still open [`BUDGET`] after its first response waited.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How long after a turn's first request arrived the turn stops calling the
/// application for more.
pub const BUDGET: Duration = Duration::from_micros(500);

/// The turn's state on this thread (one thread-local: in a shared library
/// each is a `__tls_get_addr` call).
#[derive(Debug)]
struct Turn {
    /// Whether this thread's runtime calls [`end`] before it parks.
    active: bool,
    /// Responses waiting to be written.
    responses: Vec<Waker>,
    /// Requests held back for the next turn.
    requests: Vec<Waker>,
    /// [`BUDGET`] after the request of the turn's first waiting response
    /// arrived: a request that arrives then or later waits for the next turn
    /// (kept as the sum, so each request compares two instants, no
    /// subtraction).
    due: Option<Instant>,
    /// Counts the turns [`end`] ended: [`keep`] ends only the turn it saw begin.
    ended: u64,
    /// [`keep`]'s waker while it waits for a turn to begin.
    keeper: Option<Waker>,
    /// Bytes left by [`Outbox::leave`], in the order they were left.
    writes: Vec<Left>,
    /// The bytes of `writes`, one after the other.
    bytes: Vec<u8>,
    /// What the end of a turn could not write, for each connection's task
    /// ([`Outbox::rest`]): the bytes still to write, or the write's error.
    unwritten: Vec<(u64, io::Result<Vec<u8>>)>,
    /// The last [`Outbox`] number handed out on this thread.
    outboxes: u64,
}

/// One connection's bytes left for the end of the turn.
#[derive(Debug)]
struct Left {
    /// The [`Outbox`] that left them.
    outbox: u64,
    /// The socket; `-1` once the connection is gone.
    fd: RawFd,
    /// Where they end in [`Turn::bytes`] (they start where the last ended).
    end: usize,
    /// The connection's task, woken when they cannot all be written.
    task: Waker,
}

thread_local! {
    static TURN: RefCell<Turn> = const {
        RefCell::new(Turn {
            active: false,
            responses: Vec::new(),
            requests: Vec::new(),
            due: None,
            ended: 0,
            keeper: None,
            writes: Vec::new(),
            bytes: Vec::new(),
            unwritten: Vec::new(),
            outboxes: 0,
        })
    };
    /// [`end`]'s list of bytes to write, empty between turns.
    static WRITING: Cell<(Vec<Left>, Vec<u8>)> = const { Cell::new((Vec::new(), Vec::new())) };
    /// [`end`]'s buffer, empty between turns.
    static WOKEN: Cell<Vec<Waker>> = const { Cell::new(Vec::new()) };
}

/// While it lives, responses on this thread wait for the end of the turn:
/// make one on the thread that runs a runtime built with [`end`] as (part of)
/// its `on_thread_park` hook.
#[derive(Debug)]
pub struct Active(());

impl Active {
    /// Start keeping turns on this thread.
    pub fn start() -> Active {
        TURN.with_borrow_mut(|turn| turn.active = true);
        Active(())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        TURN.with_borrow_mut(|turn| turn.active = false);
        end();
    }
}

/// The end of the turn (the runtime's `on_thread_park` hook): wake the
/// waiting responses, then the requests held back, in that order. Returns
/// whether any was woken; the runtime then has tasks to run and does not
/// park.
pub fn end() -> bool {
    // Moved out to be woken with no borrow held, into a buffer kept for the
    // next turn: no allocation per turn.
    let mut woken = WOKEN.take();
    let (mut writes, mut bytes) = WRITING.take();
    TURN.with_borrow_mut(|turn| {
        turn.due = None;
        turn.ended = turn.ended.wrapping_add(1);
        woken.append(&mut turn.responses);
        woken.append(&mut turn.requests);
        std::mem::swap(&mut writes, &mut turn.writes);
        std::mem::swap(&mut bytes, &mut turn.bytes);
    });
    let mut any = !woken.is_empty();
    if !writes.is_empty() {
        any |= write_left(&writes, &bytes);
        writes.clear();
        bytes.clear();
        if bytes.capacity() > BYTES_KEPT {
            bytes = Vec::new();
        }
    }
    WRITING.set((writes, bytes));
    for waker in woken.drain(..) {
        waker.wake();
    }
    WOKEN.set(woken);
    any
}

/// The most bytes of left responses a thread keeps room for between turns.
const BYTES_KEPT: usize = 256 * 1024;

/// Write the bytes `writes` left in `bytes`; a connection whose write stops
/// short keeps the rest (and any later bytes of its own) for its task, which
/// is woken. Returns whether a task was woken.
fn write_left(writes: &[Left], bytes: &[u8]) -> bool {
    let mut start = 0;
    // The connections whose bytes now wait for their tasks (few: a full
    // socket buffer, a client gone).
    let mut stopped: Vec<(u64, io::Result<Vec<u8>>)> = Vec::new();
    for left in writes {
        let data = &bytes[start..left.end];
        start = left.end;
        if left.fd < 0 {
            continue;
        }
        if let Some((_, rest)) = stopped.iter_mut().find(|(o, _)| *o == left.outbox) {
            if let Ok(rest) = rest {
                rest.extend_from_slice(data);
            }
            continue;
        }
        let rest = match send_all(left.fd, data) {
            Ok(0) => continue,
            Ok(unsent) => Ok(data[data.len() - unsent..].to_vec()),
            Err(err) => Err(err),
        };
        stopped.push((left.outbox, rest));
        left.task.wake_by_ref();
    }
    let woke = !stopped.is_empty();
    if woke {
        TURN.with_borrow_mut(|turn| turn.unwritten.append(&mut stopped));
    }
    woke
}

/// Send `data` on `fd` without blocking; how many bytes are left unsent (the
/// socket's buffer is full).
fn send_all(fd: RawFd, mut data: &[u8]) -> io::Result<usize> {
    while !data.is_empty() {
        // SAFETY: `data` is valid for its length; `fd` is the connection's
        // open socket (a dropped connection's bytes are not written:
        // `Outbox`'s drop marks them).
        let sent = unsafe {
            libc::send(
                fd,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => break,
                _ => return Err(err),
            }
        }
        data = &data[sent as usize..];
    }
    Ok(data.len())
}

/// A connection's whole responses, written at the end of the loop's turn
/// (module docs). Made once per connection, by its task, on the thread that
/// keeps turns; it never writes while nothing is left ([`Outbox::leave`]).
#[derive(Debug)]
pub struct Outbox {
    /// This outbox's number on its thread.
    id: u64,
    /// The connection's socket.
    fd: RawFd,
    /// The turn (its [`Turn::ended`] count) in which bytes were last left.
    left_in: Option<u64>,
}

impl Outbox {
    /// An outbox for the connection on socket `fd`, whose bytes need nothing
    /// the connection's own writes add (no TLS); `None` where this thread
    /// keeps no turns ([`Active`]).
    pub fn new(fd: RawFd) -> Option<Outbox> {
        let id = TURN
            .try_with(|turn| {
                let mut turn = turn.borrow_mut();
                turn.active.then(|| {
                    turn.outboxes += 1;
                    turn.outboxes
                })
            })
            .ok()
            .flatten()?;
        Some(Outbox {
            id,
            fd,
            left_in: None,
        })
    }

    /// Leave `bytes` (a whole response, which arrived at `received`) for the
    /// end of the turn; `task` is woken if they cannot all be written then.
    /// False, leaving nothing, where no turns are kept or what the end of an
    /// earlier turn could not write waits for the task ([`Outbox::rest`]).
    pub fn leave(&mut self, bytes: &[u8], received: Instant, task: &Waker) -> bool {
        let id = self.id;
        TURN.with_borrow_mut(|turn| {
            if !turn.active {
                return false;
            }
            if self.left_in.is_some_and(|n| n != turn.ended)
                && turn.unwritten.iter().any(|(o, _)| *o == id)
            {
                return false;
            }
            if turn.due.is_none() {
                turn.due = Some(received + BUDGET);
                if let Some(keeper) = turn.keeper.take() {
                    keeper.wake();
                }
            }
            turn.bytes.extend_from_slice(bytes);
            let end = turn.bytes.len();
            match turn.writes.last_mut() {
                // Pipelined responses of one connection go out in one write.
                Some(last) if last.outbox == id => last.end = end,
                _ => turn.writes.push(Left {
                    outbox: id,
                    fd: self.fd,
                    end,
                    task: task.clone(),
                }),
            }
            self.left_in = Some(turn.ended);
            true
        })
    }

    /// Whether bytes were left that the end of a turn may not have written.
    pub fn pending(&self) -> bool {
        self.left_in.is_some()
    }

    /// Ready once the end of the turn could not write all the bytes left:
    /// [`Outbox::rest`] then has them. Pending otherwise (the end of the turn
    /// wakes the task that left them if so).
    pub fn poll_stopped(&mut self) -> Poll<()> {
        let Some(turn_no) = self.left_in else {
            return Poll::Pending;
        };
        let id = self.id;
        TURN.with_borrow(|turn| {
            if turn.ended == turn_no {
                Poll::Pending
            } else if turn.unwritten.iter().any(|(o, _)| *o == id) {
                Poll::Ready(())
            } else {
                self.left_in = None;
                Poll::Pending
            }
        })
    }

    /// Wait until the end of the turn has written (or tried to write) the
    /// bytes left; what it could not write, if anything: bytes for the task
    /// to write, or the write's error. Returns at once when none were left.
    pub async fn rest(&mut self) -> Option<io::Result<Vec<u8>>> {
        let turn_no = self.left_in?;
        let id = self.id;
        let rest = std::future::poll_fn(|cx| {
            TURN.with_borrow_mut(|turn| {
                if turn.ended == turn_no {
                    turn.responses.push(cx.waker().clone());
                    return Poll::Pending;
                }
                let at = turn.unwritten.iter().position(|(o, _)| *o == id);
                Poll::Ready(at.map(|at| turn.unwritten.swap_remove(at).1))
            })
        })
        .await;
        self.left_in = None;
        rest
    }
}

impl Drop for Outbox {
    /// The connection is gone: bytes it left are not written (its socket may
    /// be another connection's by the end of the turn), and what the end of
    /// a turn could not write is dropped.
    fn drop(&mut self) {
        if self.left_in.is_none() {
            return;
        }
        let id = self.id;
        let _ = TURN.try_with(|turn| {
            let mut turn = turn.borrow_mut();
            for left in turn.writes.iter_mut().filter(|l| l.outbox == id) {
                left.fd = -1;
            }
            turn.unwritten.retain(|(o, _)| *o != id);
        });
    }
}

/// End each turn that is still open [`BUDGET`] after its first response
/// began to wait (module docs): spawn it once on the runtime whose thread
/// keeps turns. Under load it wakes once per budget, not per request.
pub async fn keep() {
    let mut timer = std::pin::pin!(tokio::time::sleep(BUDGET));
    loop {
        // Wait for a turn to begin.
        let turn = std::future::poll_fn(|cx| {
            TURN.with_borrow_mut(|turn| {
                if turn.due.is_some() {
                    Poll::Ready(turn.ended)
                } else {
                    turn.keeper = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
        })
        .await;
        timer.as_mut().reset(tokio::time::Instant::now() + BUDGET);
        timer.as_mut().await;
        if TURN.with_borrow(|now| now.ended == turn) {
            end();
        }
    }
}

/// Wait for the end of the loop's turn before writing a whole response to
/// the request that arrived at `received` (at once where no turns are kept).
pub fn wait(received: Instant) -> Wait {
    Wait {
        received,
        joined: false,
        request: false,
    }
}

/// Before calling the application for the request that arrived at
/// `received`: wait for the next turn if this one began [`BUDGET`] or more
/// before (at once where no turns are kept).
pub fn admit(received: Instant) -> Wait {
    Wait {
        received,
        joined: false,
        request: true,
    }
}

/// The future [`wait`] and [`admit`] return.
#[derive(Debug)]
#[must_use = "a wait does nothing unless awaited"]
pub struct Wait {
    received: Instant,
    joined: bool,
    /// A request to admit, not a response to write.
    request: bool,
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Woken (by the end of the turn, or by anything else): go on.
        if self.joined {
            return Poll::Ready(());
        }
        let Wait {
            received, request, ..
        } = *self;
        let joined = TURN.with_borrow_mut(|turn| {
            if !turn.active {
                return false;
            }
            if request {
                let over = turn.due.is_some_and(|due| received >= due);
                if over {
                    turn.requests.push(cx.waker().clone());
                }
                over
            } else {
                if turn.due.is_none() {
                    turn.due = Some(received + BUDGET);
                    if let Some(keeper) = turn.keeper.take() {
                        keeper.wake();
                    }
                }
                turn.responses.push(cx.waker().clone());
                true
            }
        });
        if joined {
            self.joined = true;
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `future` on a current-thread runtime with [`end`] as its park hook.
    fn with_turns<F: Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(|| {
                end();
            })
            .build()
            .expect("runtime");
        let _active = Active::start();
        runtime.block_on(future)
    }

    /// The order in which `n` requests, ready at once, are called and
    /// written, the call of request `long` (if any) running past the budget.
    fn calls_and_writes(n: usize, long: Option<usize>) -> Vec<String> {
        let order = std::rc::Rc::new(RefCell::new(Vec::new()));
        with_turns(async {
            let local = tokio::task::LocalSet::new();
            for i in 0..n {
                let order = order.clone();
                local.spawn_local(async move {
                    let received = Instant::now();
                    admit(received).await;
                    order.borrow_mut().push(format!("call {i}"));
                    if long == Some(i) {
                        std::thread::sleep(BUDGET * 2);
                    }
                    wait(received).await;
                    order.borrow_mut().push(format!("write {i}"));
                });
            }
            local.await;
        });
        order.take()
    }

    #[test]
    fn responses_of_one_turn_go_on_together_after_every_ready_task_ran() {
        assert_eq!(
            calls_and_writes(3, None),
            ["call 0", "call 1", "call 2", "write 0", "write 1", "write 2"]
        );
    }

    #[test]
    fn past_the_budget_the_turn_ends_and_the_requests_left_go_first_in_the_next() {
        // Call 1 runs past the budget: calls 2 and 3 wait for the next turn,
        // and come before its writes.
        assert_eq!(
            calls_and_writes(4, Some(1)),
            ["call 0", "call 1", "write 0", "write 1", "call 2", "call 3", "write 2", "write 3"]
        );
    }

    #[test]
    fn a_turn_the_runtime_never_parks_to_end_is_ended_by_the_keeper() {
        let order = std::rc::Rc::new(RefCell::new(Vec::new()));
        with_turns(async {
            let local = tokio::task::LocalSet::new();
            local.spawn_local(keep());
            {
                let order = order.clone();
                local.spawn_local(async move {
                    wait(Instant::now()).await;
                    order.borrow_mut().push("write");
                });
            }
            // A stream to a client that keeps up: a yield per block keeps
            // deferred work, so the runtime never parks (and never calls the
            // hook) until it ends.
            let streaming = {
                let order = order.clone();
                local.spawn_local(async move {
                    let until = Instant::now() + BUDGET * 40;
                    while Instant::now() < until {
                        tokio::task::yield_now().await;
                    }
                    order.borrow_mut().push("stream over");
                })
            };
            local.run_until(streaming).await.expect("the stream task");
        });
        assert_eq!(*order.borrow(), ["write", "stream over"]);
    }

    /// A socket pair: the server's end (nonblocking, as tokio's are) and the
    /// client's (nonblocking, to look without waiting).
    fn pair() -> (
        std::os::unix::net::UnixStream,
        std::os::unix::net::UnixStream,
    ) {
        let (server, client) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        server.set_nonblocking(true).unwrap();
        client.set_nonblocking(true).unwrap();
        (server, client)
    }

    /// What `client` has received so far.
    fn received(client: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
        use std::io::Read;
        let mut all = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            match client.read(&mut chunk) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return all,
                Err(err) => panic!("{err}"),
            }
        }
    }

    /// Leave `bytes` in `outbox` from within a task.
    async fn leave(outbox: &mut Outbox, bytes: &[u8]) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(outbox.leave(bytes, Instant::now(), cx.waker())))
            .await
    }

    #[test]
    fn bytes_left_go_out_at_the_end_of_the_turn_in_order_one_write_per_connection() {
        use std::os::fd::AsRawFd;
        let ((a, mut a_client), (b, mut b_client)) = (pair(), pair());
        let seen = with_turns(async {
            let mut one = Outbox::new(a.as_raw_fd()).expect("turns are kept");
            let mut two = Outbox::new(b.as_raw_fd()).expect("turns are kept");
            assert!(leave(&mut one, b"A1 ").await);
            assert!(leave(&mut two, b"B1").await);
            assert!(leave(&mut one, b"A2").await);
            let before = (received(&mut a_client), received(&mut b_client));
            assert!(one.pending() && two.pending());
            assert!(one.rest().await.is_none(), "all written");
            assert!(two.rest().await.is_none(), "all written");
            assert!(!one.pending());
            before
        });
        assert_eq!(
            seen,
            (Vec::new(), Vec::new()),
            "nothing before the end of the turn"
        );
        assert_eq!(received(&mut a_client), b"A1 A2");
        assert_eq!(received(&mut b_client), b"B1");
        TURN.with_borrow(|turn| {
            assert!(turn.writes.is_empty() && turn.unwritten.is_empty());
        });
    }

    #[test]
    fn what_a_full_socket_does_not_take_is_the_tasks_to_write() {
        use std::os::fd::AsRawFd;
        let (server, mut client) = pair();
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let rest = with_turns(async {
            let mut outbox = Outbox::new(server.as_raw_fd()).unwrap();
            assert!(leave(&mut outbox, &data).await);
            wait(Instant::now()).await;
            // The turn has ended: the task is told, and leaves nothing more
            // before it has written the rest.
            assert_eq!(outbox.poll_stopped(), Poll::Ready(()));
            assert!(!leave(&mut outbox, b"later").await);
            outbox
                .rest()
                .await
                .expect("not all written")
                .expect("no error")
        });
        let got = received(&mut client);
        assert!(
            !rest.is_empty(),
            "4 MiB does not fit a socket pair's buffers"
        );
        assert_eq!(got.len() + rest.len(), data.len());
        assert_eq!([got, rest].concat(), data);
    }

    #[test]
    fn a_dropped_connections_bytes_are_not_written() {
        use std::os::fd::AsRawFd;
        let (server, mut client) = pair();
        with_turns(async {
            let mut outbox = Outbox::new(server.as_raw_fd()).unwrap();
            assert!(leave(&mut outbox, b"gone").await);
            drop(outbox);
            // Another wait ends the turn.
            wait(Instant::now()).await;
        });
        assert!(received(&mut client).is_empty());
    }

    #[test]
    fn where_no_turns_are_kept_there_is_no_outbox() {
        std::thread::spawn(|| assert!(Outbox::new(0).is_none()))
            .join()
            .unwrap();
    }

    #[test]
    fn without_the_park_hook_a_response_never_waits() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let done = runtime.block_on(async {
            admit(Instant::now()).await;
            wait(Instant::now()).await;
            true
        });
        assert!(done);
    }
}
