//! A second "limit" for `hello` and `echo`: the same answers as `ferrule-bench-limit`,
//! with no HTTP library beyond httparse. One tokio current_thread runtime; each
//! connection parses request heads with httparse where they were read, skips a
//! `Content-Length` body, and writes its answers, all the requests of one read in one
//! write (pipelined or not). No chunked bodies, no limits, no timeouts: it measures
//! what a server's own HTTP/1.1 path could cost at least, against hyper's
//! (benchmarks/README.md, "What the remaining goals would take").
//!
//! Usage: `ferrule-bench-raw --bind 127.0.0.1:PORT`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HELLO: &[u8] = b"Hello, World!";

/// `date: <IMF-fixdate>\r\n`, made again at most once a second.
struct Date {
    line: Vec<u8>,
    made: SystemTime,
}

impl Date {
    fn new() -> Date {
        let mut date = Date {
            line: Vec::new(),
            made: SystemTime::UNIX_EPOCH,
        };
        date.refresh();
        date
    }

    fn refresh(&mut self) {
        let now = SystemTime::now();
        if now.duration_since(self.made).unwrap_or_default() >= Duration::from_secs(1) {
            self.made = now;
            self.line = format!("date: {}\r\n", httpdate::fmt_http_date(now)).into_bytes();
        }
    }
}

/// Append one answer: `text/plain` `body`, with its length.
fn answer(out: &mut Vec<u8>, date: &Date, body: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ");
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&date.line);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let mut date = Date::new();
    let mut start = 0; // the first byte of `buf` not yet answered
    let mut skip = 0usize; // body bytes of the last request still to come
    loop {
        if buf.len() == buf.capacity() {
            buf.drain(..start);
            start = 0;
            if buf.len() == buf.capacity() {
                buf.reserve(buf.capacity());
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        date.refresh();
        loop {
            let take = skip.min(buf.len() - start);
            start += take;
            skip -= take;
            if skip > 0 || start == buf.len() {
                break;
            }
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut fields);
            let httparse::Status::Complete(head) = request
                .parse(&buf[start..])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            else {
                break;
            };
            let length = request
                .headers
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case("content-length"))
                .and_then(|f| std::str::from_utf8(f.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            if request.path == Some("/echo") {
                let mut digits = itoa::Buffer::new();
                let text = digits.format(length).as_bytes().to_vec();
                answer(&mut out, &date, &text);
            } else {
                answer(&mut out, &date, HELLO);
            }
            start += head;
            skip = length;
        }
        if start == buf.len() {
            buf.clear();
            start = 0;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

fn main() {
    let mut bind: SocketAddr = "127.0.0.1:8000".parse().expect("default address");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--bind", Some(value)) => bind = value.parse().expect("--bind HOST:PORT"),
            _ => {
                eprintln!("usage: ferrule-bench-raw --bind 127.0.0.1:PORT");
                std::process::exit(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(bind).await.expect("bind");
        eprintln!("raw limit: listening on http://{bind}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream));
        }
    });
}
