//! The benchmark's "limit": what serving ferrule's benchmark requests costs with no
//! Python at all. hyper 1 on a tokio current_thread runtime, one thread, HTTP/1.1
//! keep-alive, answering by path:
//!
//! - `/echo`: reads the whole request body, answers its length;
//! - `/big`: 1 MiB as 16 frames of 64 KiB, with Content-Length;
//! - `/file`: the file named by `--file`, read from disk on each request;
//! - anything else: `Hello, World!` (13 bytes, text/plain).
//!
//! Usage: `ferrule-bench-limit --bind 127.0.0.1:PORT [--file PATH]`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const HELLO: &[u8] = b"Hello, World!";
const CHUNK_SIZE: usize = 64 * 1024;
const CHUNKS: usize = 16;

/// A body of `left` copies of one chunk, each its own frame, with an exact length.
struct Chunks {
    chunk: Bytes,
    left: usize,
}

impl Chunks {
    fn one(data: Bytes) -> Self {
        Chunks {
            chunk: data,
            left: 1,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.chunk.len() * self.left) as u64)
    }
}

struct State {
    big_chunk: Bytes,
    file: Option<String>,
}

fn respond(status: StatusCode, content_type: &'static str, body: Chunks) -> Response<Chunks> {
    let length = body.chunk.len() * body.left;
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

async fn handle(
    request: Request<Incoming>,
    state: &'static State,
) -> Result<Response<Chunks>, hyper::Error> {
    Ok(match request.uri().path() {
        "/echo" => {
            let body = request.into_body().collect().await?.to_bytes();
            let answer = Bytes::from(body.len().to_string());
            respond(StatusCode::OK, "text/plain", Chunks::one(answer))
        }
        "/big" => {
            let body = Chunks {
                chunk: state.big_chunk.clone(),
                left: CHUNKS,
            };
            respond(StatusCode::OK, "application/octet-stream", body)
        }
        "/file" => match state.file.as_deref().map(std::fs::read) {
            Some(Ok(data)) => respond(
                StatusCode::OK,
                "application/octet-stream",
                Chunks::one(Bytes::from(data)),
            ),
            _ => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                Chunks::one(Bytes::from_static(b"no file")),
            ),
        },
        _ => respond(
            StatusCode::OK,
            "text/plain",
            Chunks::one(Bytes::from_static(HELLO)),
        ),
    })
}

fn main() {
    let mut bind: SocketAddr = "127.0.0.1:8000".parse().expect("default address");
    let mut file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--bind", Some(value)) => bind = value.parse().expect("--bind HOST:PORT"),
            ("--file", Some(value)) => file = Some(value),
            _ => {
                eprintln!("usage: ferrule-bench-limit --bind 127.0.0.1:PORT [--file PATH]");
                std::process::exit(2);
            }
        }
    }
    let state: &'static State = Box::leak(Box::new(State {
        big_chunk: Bytes::from(vec![b'x'; CHUNK_SIZE]),
        file,
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(bind).await.expect("bind");
        eprintln!("limit: listening on http://{bind}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(move |request| handle(request, state));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
