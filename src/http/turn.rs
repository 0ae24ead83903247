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
//! The end of the turn is the runtime's `on_thread_park` hook ([`end`]),
//! which runs when no task is left to run; on a thread whose runtime lacks
//! the hook nothing waits ([`Active`]). A runtime that always has deferred
//! work never parks: tokio then polls its driver without calling the hook
//! (`yield_now`, as a streamed response does between blocks to a client that
//! keeps up, or a task out of its budget). [`keep`], a task of its own, ends
//! a turn that is still open [`BUDGET`] after its first response waited.

use std::cell::{Cell, RefCell};
use std::future::Future;
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
    /// When the request of the turn's first waiting response arrived.
    first: Option<Instant>,
    /// Counts the turns [`end`] ended: [`keep`] ends only the turn it saw begin.
    ended: u64,
    /// [`keep`]'s waker while it waits for a turn to begin.
    keeper: Option<Waker>,
}

thread_local! {
    static TURN: RefCell<Turn> = const {
        RefCell::new(Turn {
            active: false,
            responses: Vec::new(),
            requests: Vec::new(),
            first: None,
            ended: 0,
            keeper: None,
        })
    };
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
    TURN.with_borrow_mut(|turn| {
        turn.first = None;
        turn.ended = turn.ended.wrapping_add(1);
        woken.append(&mut turn.responses);
        woken.append(&mut turn.requests);
    });
    let any = !woken.is_empty();
    for waker in woken.drain(..) {
        waker.wake();
    }
    WOKEN.set(woken);
    any
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
                if turn.first.is_some() {
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
                let over = turn
                    .first
                    .is_some_and(|first| received.saturating_duration_since(first) >= BUDGET);
                if over {
                    turn.requests.push(cx.waker().clone());
                }
                over
            } else {
                if turn.first.is_none() {
                    turn.first = Some(received);
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
