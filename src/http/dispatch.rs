//! The hyper service: checks a request head, queues it as a [`Job`], awaits the
//! application's response.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::sync::Arc;

use tokio::sync::{oneshot, watch, Notify};

use super::{Limits, Peer, ResponseBody};

/// One request waiting for a Python thread.
#[derive(Debug)]
pub struct Job {
    /// Request line and fields.
    pub parts: http::request::Parts,
    /// The message body; reading it is what sends `100 Continue`.
    pub body: Incoming,
    /// The client (`REMOTE_ADDR`, `REMOTE_PORT`).
    pub peer: Peer,
    /// Index of the listener that accepted the connection.
    pub listener: usize,
    /// Where the application thread sends the response head and body.
    pub reply: oneshot::Sender<Response<ResponseBody>>,
    /// The connection's abort signal, for [`ResponseBody::channel`].
    pub abort: Arc<Notify>,
    /// When the request head was received (access log request time).
    pub received: std::time::Instant,
}

/// Shared state of the service: the job queue and the request budget.
#[derive(Debug)]
pub struct Dispatch {
    jobs: crossbeam_channel::Sender<Job>,
    served: AtomicU64,
    max_requests: Option<u64>,
    stop: watch::Sender<bool>,
    limits: Limits,
}

impl Dispatch {
    /// A dispatcher feeding `jobs`.
    ///
    /// With `max_requests`, the request that reaches the budget sets `stop`, so
    /// the server closes that connection after its response and stops accepting
    /// (wsgiref's `handle_request()`).
    pub fn new(
        jobs: crossbeam_channel::Sender<Job>,
        max_requests: Option<u64>,
        stop: watch::Sender<bool>,
        limits: Limits,
    ) -> Dispatch {
        Dispatch {
            jobs,
            served: AtomicU64::new(0),
            max_requests,
            stop,
            limits,
        }
    }

    /// Answer one request: a 400 for a bad head, else the application's response.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: Peer,
        listener: usize,
        abort: Arc<Notify>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
        // code to any HTTP/1.1 request message that lacks a Host header field and
        // to any request message that contains more than one Host header field".
        let hosts = req.headers().get_all(HOST).iter().count();
        if hosts > 1 || (hosts == 0 && req.version() == Version::HTTP_11) {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "HTTP/1.1 requests need exactly one Host field (RFC 9112 section 3.2)",
            ));
        }
        let (parts, body) = req.into_parts();
        let length = hyper::body::Body::size_hint(&body).exact();
        let checked = self.limits.check_head(&parts).and_then(|()| match length {
            Some(length) => self.limits.check_body_length(length),
            None => Ok(()),
        });
        if let Err(refused) = checked {
            return Ok(error_response(refused.status, &refused.message));
        }
        if let Err((status, why)) = super::framing::check(&parts) {
            return Ok(error_response(status, &why));
        }
        if let Some(max) = self.max_requests {
            if self.served.fetch_add(1, Ordering::Relaxed) + 1 >= max {
                self.stop.send_replace(true);
            }
        }
        let (reply, response) = oneshot::channel();
        let job = Job {
            parts,
            body,
            peer,
            listener,
            reply,
            abort,
            received: std::time::Instant::now(),
        };
        if self.jobs.send(job).is_err() {
            return Ok(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            ));
        }
        let mut response = response.await.unwrap_or_else(|_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        });
        if *self.stop.borrow() {
            // Stopping: this is the connection's last response (RFC 9112 §9.6).
            response
                .headers_mut()
                .insert(CONNECTION, http::HeaderValue::from_static("close"));
        }
        Ok(response)
    }
}

/// A short `text/plain` response that closes the connection.
pub fn error_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let body = format!(
        "{} {}\n{message}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(ResponseBody::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONNECTION, http::HeaderValue::from_static("close"));
    response
}
