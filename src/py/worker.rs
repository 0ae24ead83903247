//! Python threads that call the application, and the inline path.
//!
//! Each thread attaches to the interpreter once and keeps its thread state for
//! its whole life; it releases the GIL only while it waits for the next
//! [`Job`] or for the client. With `--threads 1` the event loop's thread calls
//! the application itself ([`inline_handler`]) and iterates the response one
//! item per turn of the loop ([`iterate_inline`]). Per request it builds the environ, calls
//! `app(environ, start_response)`, sends the body, and calls the iterable's
//! `close()` exactly once, whatever happened (PEP 3333: "the server must call
//! close() upon completion of the current request, whether the request was
//! completed normally, or terminated early due to an application error").

use std::cell::OnceCell;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{Method, StatusCode};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use tokio::runtime::Handle;

use super::environ::{self, ListenerInfo};
use super::errors;
use super::file_wrapper::{FileWrapper, OpenFile};
use super::input::{self, EmptyInput, Input};
use super::start_response::{self, StartResponse};
use crate::http::{ConnectionKept, HeadBox, InlineHandler, Job, Peer, RequestHead};
use crate::supervisor::Scoreboard;
use crate::wsgi::access_log::{clf_now, AccessFormat, AccessRecord};

/// What every worker thread shares.
#[derive(Debug)]
pub(crate) struct WorkerContext {
    pub app: Py<PyAny>,
    pub templates: Vec<Py<PyDict>>,
    pub listeners: Vec<ListenerInfo>,
    pub runtime: Handle,
    /// The access log, when `--access-logfile` is set.
    pub access: Option<Arc<AccessLog>>,
    /// `--limit-request-body`, in bytes (0: unlimited), for chunked bodies.
    pub body_limit: u64,
    /// `--body-timeout`.
    pub body_timeout: std::time::Duration,
    /// This worker's scoreboard record, under a master: threads mark the
    /// request they run, so `--timeout` can find and name it.
    pub board: Option<(Arc<Scoreboard>, usize)>,
    /// The `wsgi.input` of every request without a body.
    pub empty_input: Py<EmptyInput>,
}

/// `--access-logformat`, rendered to the `ferrule.access` logger.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub format: AccessFormat,
    /// One JSON object per line instead of the text format.
    pub json: bool,
}

impl AccessLog {
    fn log(
        &self,
        py: Python<'_>,
        head: &RequestHead,
        peer: crate::http::Peer,
        start_response: &StartResponse,
        received: std::time::Instant,
        environ: Option<&Bound<'_, PyDict>>,
    ) {
        let (status, headers, bytes) = start_response.access();
        if status == 0 {
            return; // the client left before any response: nothing was served
        }
        let empty = http::HeaderMap::new();
        // REMOTE_ADDR as the application saw it (a trusted proxy's client).
        let remote = environ
            .and_then(|env| env.get_item("REMOTE_ADDR").ok().flatten())
            .and_then(|v| v.extract::<String>().ok())
            .filter(|r| !r.is_empty())
            .or_else(|| peer.ip().map(|ip| ip.to_string()))
            .unwrap_or_else(|| "-".to_owned());
        let time = clf_now();
        let record = AccessRecord {
            remote: &remote,
            method: head.method.as_str(),
            path: head.uri.path(),
            query: head.uri.query().unwrap_or(""),
            protocol: crate::wsgi::environ::protocol(head.version),
            request_headers: &head.header_map(),
            status,
            response_headers: headers.unwrap_or(&empty),
            bytes,
            elapsed: received.elapsed(),
            time: &time,
            pid: std::process::id(),
        };
        let lookup = |key: &str| -> Option<String> {
            let value = environ?.get_item(key).ok()??;
            value.str().ok().map(|s| s.to_string())
        };
        let line = if self.json {
            self.format.json(&record, &lookup)
        } else {
            self.format.line(&record, &lookup)
        };
        errors::log_access(py, &line);
    }
}

/// Start `threads` worker threads taking jobs from `jobs`.
///
/// They exit when every sender of `jobs` is gone and the queue is empty.
pub(crate) fn spawn(
    context: Arc<WorkerContext>,
    jobs: &crossbeam_channel::Receiver<Job>,
    handoffs: &crossbeam_channel::Receiver<Call>,
    threads: u16,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..threads)
        .map(|n| {
            let context = context.clone();
            let queues = Queues {
                jobs: jobs.clone(),
                handoffs: handoffs.clone(),
            };
            std::thread::Builder::new()
                .name(format!("ferrule-app-{n}"))
                .spawn(move || work(&context, &queues, usize::from(n)))
        })
        .collect()
}

/// The two queues a worker thread serves.
struct Queues {
    jobs: crossbeam_channel::Receiver<Job>,
    handoffs: crossbeam_channel::Receiver<Call>,
}

enum Work {
    Job(Job),
    Call(Call),
}

impl Queues {
    /// The next piece of work; `None` once both queues are closed and empty.
    ///
    /// Work already waiting is taken without releasing the GIL; the GIL is
    /// released only to wait (DESIGN.md §2).
    fn next(&self, py: Python<'_>) -> Option<Work> {
        if let Ok(call) = self.handoffs.try_recv() {
            return Some(Work::Call(call));
        }
        if let Ok(job) = self.jobs.try_recv() {
            return Some(Work::Job(job));
        }
        py.allow_threads(|| {
            crossbeam_channel::select! {
                recv(self.handoffs) -> call => match call {
                    Ok(call) => Some(Work::Call(call)),
                    Err(_) => self.jobs.recv().ok().map(Work::Job),
                },
                recv(self.jobs) -> job => match job {
                    Ok(job) => Some(Work::Job(job)),
                    Err(_) => self.handoffs.recv().ok().map(Work::Call),
                },
            }
        })
    }
}

thread_local! {
    /// The scoreboard record and slot of this worker thread, for
    /// [`waiting_for_client`]: set once by [`work`] (a thread keeps its slot
    /// for life); unset on every other thread (the event loop's, threads the
    /// application started), whose waits are not paused.
    static SLOT: OnceCell<(Arc<Scoreboard>, usize, usize)> = const { OnceCell::new() };
}

/// Run `wait`, a wait for the client of the request this thread runs (room
/// for a response chunk, the next piece of the request body), with the
/// request's `--timeout` clock stopped; it restarts from zero after `wait`
/// (busy since now, under the same label). Call it without the GIL, on the
/// slow path only: after a `try_send` found the connection's channel full,
/// around a read that has to wait.
///
/// `--timeout` is for an application that hangs: a client that is slow to
/// take a response or to send a body (bounded by `--body-timeout`) must not
/// get the worker killed, with every other request in flight on it. The
/// inline path (`--threads 1`) never waits here: its iteration pauses the
/// clock itself between items ([`Iteration::step`]).
///
/// Outside a request (its slot not busy) and on a thread that is not a
/// worker thread, `wait` just runs.
pub(crate) fn waiting_for_client<R>(wait: impl FnOnce() -> R) -> R {
    SLOT.with(|slot| match slot.get() {
        Some((board, worker, thread)) if board.busy(*worker, *thread) => {
            board.pause(*worker, *thread);
            let waited = wait();
            board.resume(*worker, *thread);
            waited
        }
        _ => wait(),
    })
}

/// Put `item` in the response channel `tx` once it has room: a wait for the
/// client ([`waiting_for_client`]); false if the client is gone. Call it
/// without the GIL, after a `try_send` found the channel full.
pub(crate) fn send_when_room(
    tx: &tokio::sync::mpsc::Sender<super::start_response::Chunk>,
    item: super::start_response::Chunk,
) -> bool {
    waiting_for_client(|| tx.blocking_send(item).is_ok())
}

fn work(context: &WorkerContext, queues: &Queues, thread: usize) {
    if let Some((board, worker)) = &context.board {
        SLOT.with(|slot| slot.set((board.clone(), *worker, thread)))
            .expect("a worker thread runs work() once");
    }
    Python::with_gil(|py| {
        while let Some(work) = queues.next(py) {
            if let Some((board, slot)) = &context.board {
                let head = match &work {
                    Work::Job(job) => &job.head,
                    Work::Call(call) => &call.head,
                };
                mark_busy(board, *slot, thread, head);
            }
            match work {
                Work::Job(job) => {
                    if let Some(call) = begin(py, context, job, false) {
                        complete(py, context, call);
                    }
                }
                Work::Call(call) => complete(py, context, call),
            }
            if let Some((board, slot)) = &context.board {
                board.end(*slot, thread);
            }
        }
    });
}

/// The inline path (`--threads 1`): the event loop's thread calls the
/// application itself, holding the GIL, with no hand-off per request.
///
/// A response that is complete when the application returns (a one-element
/// list or tuple of bytes, or an exception before anything was sent) is
/// finished right there. Any other iterable is iterated on the loop's thread
/// too, one item per turn of the loop ([`iterate_inline`]): each block is
/// handed to the connection before the next is asked for (PEP 3333: a server
/// "must not delay the transmission of any block"), and while the client is
/// slow to take them only this response waits. A regular file behind
/// `wsgi.file_wrapper` goes to the connection for `sendfile(2)` right there;
/// where it cannot (TLS, HEAD), a worker thread reads and sends it without
/// the GIL.
pub(crate) fn inline_handler(
    context: Arc<WorkerContext>,
    handoff: crossbeam_channel::Sender<Call>,
    slot: usize,
) -> InlineHandler {
    Arc::new(move |job: Job| {
        // Held here and taken inside: a closure that owned the job was
        // copied whole (a `memcpy` call) as it was made and again as it ran.
        let mut job = Some(job);
        Python::with_gil(|py| {
            let job = job.take().expect("taken once");
            if let Some((board, worker)) = &context.board {
                mark_busy(board, *worker, slot, &job.head);
            }
            let mut pending = None;
            let mut iterated = false;
            if let Some(mut call) = begin(py, &context, job, true) {
                match call.inline_plan(py) {
                    Plan::Finish => complete(py, &context, call),
                    Plan::Iterate => {
                        // The first item now, as the other paths send theirs:
                        // a task spawned for it would wait behind every
                        // connection already queued, and its reply with it
                        // (a framework's one-item iterable then answered a
                        // turn of the loop late, some connections more often
                        // than others).
                        iterated = true;
                        let mut iteration = Iteration::new(py, call);
                        match iteration.step(py, &context, slot) {
                            Step::Done => {}
                            step => pending = Some((iteration, step)),
                        }
                    }
                    Plan::HandOff => {
                        if let Err(unsent) = handoff.send(call) {
                            // No worker thread is left (shutting down): finish here.
                            complete(py, &context, unsent.0);
                        }
                    }
                }
            }
            // An iteration's step marks the scoreboard itself.
            if let (Some((board, worker)), false) = (&context.board, iterated) {
                board.end(*worker, slot);
            }
            if let Some((iteration, step)) = pending {
                // The rest after the connection had its turn to write what
                // this step sent (it runs before the spawned task).
                context
                    .runtime
                    .spawn(iterate_inline(context.clone(), iteration, step, slot));
            }
        });
    })
}

/// Send the rest of an inline response, one item of the application's
/// iterable per turn of the event loop, then `close()` it and end the
/// response (see [`inline_handler`]); `step` is what the last step asked for.
async fn iterate_inline(
    context: Arc<WorkerContext>,
    mut iteration: Iteration,
    mut step: Step,
    slot: usize,
) {
    // No wait before the first step here: the connection's task was running
    // when this one was spawned, and has written what the handler's step
    // sent, or holds a whole body for the end of the turn
    // (`crate::http::turn`), before this task runs.
    if matches!(step, Step::Next) {
        step = Python::with_gil(|py| iteration.step(py, &context, slot));
    }
    loop {
        match step {
            Step::Done => return,
            // The client is slow: wait for room without holding anything else.
            Step::Wait(tx) => drop(tx.reserve().await),
            // Let the connection write this block before the next is made.
            Step::Next => tokio::task::yield_now().await,
        }
        step = Python::with_gil(|py| iteration.step(py, &context, slot));
    }
}

/// An inline response being iterated.
struct Iteration {
    /// `None` once the application's part is over (its chunks may still be
    /// waiting in the response's overflow).
    call: Option<Call>,
    /// The response, kept until every chunk reached the connection.
    start_response: Py<StartResponse>,
    iterator: Option<Py<pyo3::types::PyIterator>>,
}

/// What an iteration's step leaves to do.
enum Step {
    Done,
    Wait(tokio::sync::mpsc::Sender<Result<Bytes, crate::http::BodyError>>),
    Next,
}

impl Iteration {
    fn new(py: Python<'_>, call: Call) -> Iteration {
        Iteration {
            start_response: call.start_response.clone_ref(py),
            call: Some(call),
            iterator: None,
        }
    }

    /// Take one item of the iterable and send it; at the end (or on an
    /// error), call `close()` and finish the response.
    fn step(&mut self, py: Python<'_>, context: &WorkerContext, slot: usize) -> Step {
        let start_response = self.start_response.bind(py).clone();
        if let Some(tx) = start_response.borrow_mut().pump() {
            return Step::Wait(tx);
        }
        let Some(call) = self.call.as_ref() else {
            // Concluded, and now the last chunks are delivered too.
            if let Some((board, worker)) = &context.board {
                board.end(*worker, slot);
            }
            return Step::Done;
        };
        if let Some((board, worker)) = &context.board {
            mark_busy(board, *worker, slot, &call.head);
        }
        let outcome = self.advance(py, &start_response);
        let step = match outcome {
            Ok(true) => match start_response.borrow().full_stream() {
                Some(tx) => Step::Wait(tx),
                None => Step::Next,
            },
            Ok(false) | Err(_) => {
                let call = self.call.take().expect("checked above");
                end_body(py, context, call, outcome.map(|_| ()));
                Self::drain(&start_response)
            }
        };
        if let Some((board, worker)) = &context.board {
            if matches!(step, Step::Done) {
                board.end(*worker, slot);
            } else {
                board.pause(*worker, slot);
            }
        }
        step
    }

    /// After the application's part: wait while chunks still sit in the
    /// response's overflow (a list of blocks sent in one turn).
    fn drain(start_response: &Bound<'_, StartResponse>) -> Step {
        match start_response.borrow_mut().pump() {
            Some(tx) => Step::Wait(tx),
            None => Step::Done,
        }
    }

    /// Send the next item (every item of a list or tuple); `Ok(false)` when
    /// the body is complete.
    fn advance(
        &mut self,
        py: Python<'_>,
        start_response: &Bound<'_, StartResponse>,
    ) -> PyResult<bool> {
        let call = self.call.as_ref().expect("a call in progress");
        let iterable = match &call.result {
            Ok(iterable) => iterable.bind(py),
            Err(err) => return Err(err.clone_ref(py)),
        };
        if self.iterator.is_none() {
            self.iterator = Some(iterable.try_iter()?.unbind());
        }
        // A list or tuple holds every block already: nothing is produced
        // between them, so all go to the connection in this one turn (the
        // chunks past the channel's room wait in the response's overflow).
        let made =
            iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>();
        let mut iterator = self.iterator.as_ref().expect("set above").bind(py).clone();
        loop {
            let Some(item) = iterator.next() else {
                return Ok(false);
            };
            if !send_item(py, start_response, &item?)? {
                return Ok(false);
            }
            if !made {
                return Ok(true);
            }
        }
    }
}

/// Record in the scoreboard that `thread` runs the request of `head`.
fn mark_busy(board: &Scoreboard, worker: usize, thread: usize, head: &RequestHead) {
    let method = head.method.as_str().as_bytes();
    match head.uri.path_and_query() {
        Some(target) if head.uri.scheme().is_none() => {
            board.begin_parts(worker, thread, &[method, b" ", target.as_str().as_bytes()]);
        }
        _ => {
            let target = head.uri.to_string();
            board.begin_parts(worker, thread, &[method, b" ", target.as_bytes()]);
        }
    }
}

/// A request between the application call and the end of its response; it can
/// move from the event loop's thread to a worker thread.
pub(crate) struct Call {
    head: HeadBox,
    peer: Peer,
    received: std::time::Instant,
    start_response: Py<StartResponse>,
    /// `None` for a request without a body: `wsgi.input` was the worker's `EmptyInput`.
    input: Option<Py<Input>>,
    environ: Option<Py<PyDict>>,
    /// The connection's state, where its environ waits for its next request
    /// ([`environ::release`]).
    kept: Arc<ConnectionKept>,
    /// The application's iterable, or what it raised: boxed, the rare error
    /// keeps a call within 128 bytes, so moving one is no `memcpy` call.
    result: Result<Py<PyAny>, Box<PyErr>>,
    /// The regular file behind a `wsgi.file_wrapper` result, once looked up.
    file: Option<OpenFile>,
}

/// What the inline path does with a call once the application returned.
enum Plan {
    /// The response is complete now: finish it here.
    Finish,
    /// Iterate it on the event loop's thread ([`iterate_inline`]).
    Iterate,
    /// A regular file the connection cannot `sendfile(2)` (TLS, HEAD): a
    /// worker thread reads and sends it without the GIL.
    HandOff,
}

impl Call {
    /// A regular file to send (before anything else was sent) is looked up
    /// here and kept in `self.file`.
    fn inline_plan(&mut self, py: Python<'_>) -> Plan {
        let iterable = match &self.result {
            Err(_) => return Plan::Finish,
            Ok(iterable) => iterable.bind(py).clone(),
        };
        let (sent, can_sendfile) = {
            let sr = self.start_response.borrow(py);
            (sr.sent(), sr.can_sendfile())
        };
        if let Ok(wrapper) = iterable.downcast::<FileWrapper>() {
            if let Some(file) = wrapper.borrow().regular_file(py) {
                if sent {
                    return Plan::HandOff; // iterated by a worker thread
                }
                self.file = Some(file);
                return if can_sendfile {
                    Plan::Finish
                } else {
                    Plan::HandOff
                };
            }
        }
        if !sent && single_item(&iterable).is_some_and(|item| item.is_instance_of::<PyBytes>()) {
            Plan::Finish
        } else {
            Plan::Iterate
        }
    }
}

/// Build the environ and call the application; `None` if the request was
/// answered already (the objects for it could not be made).
fn begin(py: Python<'_>, context: &WorkerContext, job: Job, inline: bool) -> Option<Call> {
    let Job {
        head,
        body,
        peer,
        listener,
        reply,
        abort,
        sendfile,
        received,
        kept,
        lines_buffer,
    } = job;
    let arm = start_response::Arm {
        reply,
        abort,
        sendfile,
        lines_buffer,
        no_body: head.method == Method::HEAD,
        inline,
        keep_head: context.access.is_some(),
    };
    let start_response = match start_response::acquire(py, arm) {
        Ok(sr) => sr,
        Err(err) => {
            errors::log_exception(py, "cannot create start_response", &err);
            return None;
        }
    };
    let input = if body.is_empty() {
        Ok(None)
    } else {
        let input = Input::new(
            body,
            context.runtime.clone(),
            context.body_limit,
            context.body_timeout,
        );
        input::acquire(py, input).map(Some)
    };
    let input = match input {
        Ok(input) => input,
        Err(err) => {
            errors::log_exception(py, "cannot create wsgi.input", &err);
            start_response
                .borrow_mut()
                .fail(py, StatusCode::INTERNAL_SERVER_ERROR);
            start_response::release(py, start_response);
            return None;
        }
    };
    let info = &context.listeners[listener];
    let mut environ = None;
    let stream = match &input {
        Some(input) => input.as_any(),
        None => context.empty_input.bind(py).as_any(),
    };
    let result = environ::build(
        py,
        context.templates[listener].bind(py),
        &head,
        peer,
        &kept,
        info,
        stream,
    )
    .and_then(|env| {
        let callable = StartResponse::callable(&start_response);
        let result = context.app.bind(py).call1((&env, callable));
        environ = Some(env.unbind());
        result.map(Bound::unbind)
    })
    .map_err(Box::new);
    Some(Call {
        head,
        peer,
        received,
        start_response: start_response.unbind(),
        input: input.map(Bound::unbind),
        environ,
        kept,
        result,
        file: None,
    })
}

/// Send the body, call `close()`, end the response, log; never raises: every
/// failure is logged and answered.
fn complete(py: Python<'_>, context: &WorkerContext, mut call: Call) {
    let start_response = call.start_response.bind(py);
    start_response.borrow_mut().leave_inline(py);
    let file = call.file.take();
    let sent = match &call.result {
        Ok(iterable) => send_body(py, start_response, iterable.bind(py), file),
        Err(err) => Err(err.clone_ref(py)),
    };
    end_body(py, context, call, sent);
}

/// After the body of `call` was sent (`sent`): call the iterable's `close()`,
/// end the response, and [`conclude`]. A `close()` that fails after the body
/// already failed is logged on its own, so neither error is lost.
fn end_body(py: Python<'_>, context: &WorkerContext, call: Call, sent: PyResult<()>) {
    let closed = match &call.result {
        Ok(iterable) => close(py, iterable.bind(py)),
        Err(_) => Ok(()),
    };
    if let (Err(_), Err(close_err)) = (&sent, &closed) {
        errors::log_exception(py, "close() of the response failed", close_err);
    }
    let outcome = sent
        .and(closed)
        .and_then(|()| call.start_response.borrow_mut(py).finish(py));
    conclude(py, context, call, outcome);
}

/// End the response of `call` after its body was sent (`outcome`): answer a
/// failure (500, or the request body's 400/408/413), finish `wsgi.input`,
/// write the access log line, and let go of the request's objects
/// (`start_response` and `wsgi.input` go back to their pools when no one
/// else holds them).
fn conclude(py: Python<'_>, context: &WorkerContext, call: Call, outcome: PyResult<()>) {
    let Call {
        head,
        peer,
        received,
        start_response,
        input,
        environ,
        kept,
        result,
        file: _,
    } = call;
    let start_response = start_response.into_bound(py);
    let input = input.map(|input| input.into_bound(py));
    if let Err(err) = outcome {
        let mut sr = start_response.borrow_mut();
        let (method, uri) = (&head.method, &head.uri);
        // A thread the application started may still be inside `read()`: a
        // failure it meets after this point is not this response's.
        let failure = input.as_ref().and_then(|input| input.borrow().failure());
        let status = match failure {
            Some(status) => {
                let why = format!("{method} {uri}: {status} while reading the request body: {err}");
                errors::log(py, "info", &why);
                status
            }
            None if sr.disconnected() => {
                errors::log(py, "debug", &format!("{method} {uri}: client disconnected"));
                StatusCode::INTERNAL_SERVER_ERROR
            }
            None => {
                let when = if sr.sent() {
                    " (after the response started: closing the connection)"
                } else {
                    ""
                };
                errors::log_exception(
                    py,
                    &format!("Error handling request {method} {uri}{when}"),
                    &err,
                );
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        sr.fail(py, status);
    }
    // No borrow of `wsgi.input` outlives a call into it (a read waits for the
    // client with the body taken out, src/py/input.rs): a thread the
    // application started that waits in `read()` now returns as at the end of
    // the body, and drops the body it holds (the object is not pooled while
    // that thread holds it).
    if let Some(input) = &input {
        input.borrow_mut().finish();
    }
    if let Some(access) = &context.access {
        let environ = environ.as_ref().map(|env| env.bind(py));
        access.log(py, &head, peer, &start_response.borrow(), received, environ);
    }
    // Let go of the environ and the iterable before the objects they may
    // hold are judged for reuse: a request's `wsgi.input` is in its environ.
    drop(result);
    if let Some(environ) = environ {
        let placeholder = context.empty_input.bind(py).as_any();
        let own = input.as_ref().map(Bound::as_any);
        environ::release(py, environ, &kept, own, placeholder);
    }
    start_response::release(py, start_response);
    if let Some(input) = input {
        input::release(py, input);
    }
}

/// Call the iterable's `close()` if it has one.
fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    // Lists and tuples (the common bodies) have none; asking would build and
    // discard an AttributeError on every request.
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    if iterable.hasattr(intern!(py, "close"))? {
        iterable.call_method0(intern!(py, "close"))?;
    }
    Ok(())
}

/// Send the application's iterable: fast paths for a one-element list or tuple
/// of bytes and for a real file (`file`, if [`Call::inline_plan`] looked
/// it up already), else item by item.
fn send_body(
    py: Python<'_>,
    start_response: &Bound<'_, StartResponse>,
    iterable: &Bound<'_, PyAny>,
    file: Option<OpenFile>,
) -> PyResult<()> {
    if let Some(only) = single_item(iterable) {
        if let Ok(bytes) = only.downcast::<PyBytes>() {
            return start_response.borrow_mut().send_whole(py, bytes);
        }
    }
    if let Ok(wrapper) = iterable.downcast::<FileWrapper>() {
        let sent = start_response.borrow().sent();
        if !sent {
            if let Some(file) = file.or_else(|| wrapper.borrow().regular_file(py)) {
                return send_file(py, start_response, file);
            }
        }
    }
    for item in iterable.try_iter()? {
        if !send_item(py, start_response, &item?)? {
            break;
        }
    }
    Ok(())
}

/// Send one item of the application's iterable; whether more body is
/// wanted (false once the declared length is complete, for HEAD, or after a
/// disconnect).
///
/// # Errors
///
/// A TypeError for an item that is not bytes; a send error.
fn send_item(
    py: Python<'_>,
    start_response: &Bound<'_, StartResponse>,
    item: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let Ok(bytes) = item.downcast::<PyBytes>() else {
        return Err(not_bytes(item));
    };
    let mut sr = start_response.borrow_mut();
    sr.send(py, chunk(bytes))?;
    Ok(sr.wants_body())
}

/// The TypeError for an iterable item that is not bytes.
fn not_bytes(item: &Bound<'_, PyAny>) -> PyErr {
    let kind = item
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    PyTypeError::new_err(format!(
        "the application's iterable yielded {kind}, not bytes: return an iterable of \
         bytes (PEP 3333), e.g. [b'...'] or ['text'.encode('utf-8')]"
    ))
}

fn single_item<'py>(iterable: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    if let Ok(list) = iterable.downcast::<PyList>() {
        return (list.len() == 1).then(|| list.get_item(0).ok()).flatten();
    }
    if let Ok(tuple) = iterable.downcast::<PyTuple>() {
        return (tuple.len() == 1).then(|| tuple.get_item(0).ok()).flatten();
    }
    None
}

/// Small chunks are copied; large ones are shared with the `bytes` object.
fn chunk(bytes: &Bound<'_, PyBytes>) -> Bytes {
    let data = bytes.as_bytes();
    if data.len() <= 4096 {
        Bytes::copy_from_slice(data)
    } else {
        Bytes::from_owner(PyBackedBytes::from(bytes.clone()))
    }
}

/// Send a regular file: handed to the connection for `sendfile(2)` when it
/// can (no byte is read here), else read in blocks with the GIL released.
fn send_file(
    py: Python<'_>,
    start_response: &Bound<'_, StartResponse>,
    file: OpenFile,
) -> PyResult<()> {
    let mut sr = start_response.borrow_mut();
    if sr.can_sendfile() {
        let (file, offset, available) = file.into_parts();
        return sr.send_file(py, file, offset, available);
    }
    let length = sr
        .declared_length()
        .map_or(file.length(), |d| d.min(file.length()));
    sr.start_sized_stream(length)?;
    let Some((tx, limit)) = sr.raw_stream() else {
        return Ok(());
    };
    let result = py.allow_threads(|| file.send(&tx, limit));
    drop(tx);
    match result {
        Ok((sent, disconnected)) => {
            sr.raw_stream_done(sent, disconnected);
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}
