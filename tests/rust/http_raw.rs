//! The HTTP layer over real TCP sockets, with a Rust stand-in for the
//! application side: raw request bytes in, raw response bytes out.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use _ferrule::http::{self, ResponseBody};
use bytes::Bytes;
use http_body_util::BodyExt;

/// A server on a free loopback port whose "application" echoes the method,
/// path and body. Returns the port and the stop flag.
fn start() -> (u16, tokio::sync::watch::Sender<bool>) {
    crate::support::serve(|job, handle| {
        let body = match job.body {
            http::RequestBody::Stream(body) => handle.block_on(body.collect()).unwrap().to_bytes(),
            http::RequestBody::Buffered(body) => body,
        };
        let text = format!("{} {} {}", job.head.method, job.head.uri, body.len());
        let response = ::http::Response::new(ResponseBody::Full(Some(Bytes::from(text))));
        let _ = job.reply.send(response.into());
    })
}

fn exchange(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (port, _stop) = start();
    let reply = exchange(
        port,
        b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
          GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let one = reply.find("GET /one 0").expect(&reply);
    let two = reply.find("POST /two 3").expect(&reply);
    let three = reply.find("GET /three 0").expect(&reply);
    assert!(one < two && two < three, "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 3, "{reply}");
}

#[test]
fn http11_without_host_or_with_two_is_400() {
    let (port, _stop) = start();
    let reply = exchange(port, b"GET / HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let reply = exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let reply = exchange(port, b"GET / HTTP/1.0\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
}

#[test]
fn chunked_request_body_is_decoded() {
    let (port, _stop) = start();
    let reply = exchange(
        port,
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer-Field: x\r\n\r\n",
    );
    assert!(reply.contains("POST /c 5"), "{reply}");
}

#[test]
fn malformed_heads_get_a_4xx() {
    let (port, _stop) = start();
    for (request, status) in [
        (
            &b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"[..],
            "400",
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX : ab\r\n\r\n", "400"),
        (b"GARBAGE\r\n\r\n", "400"),
    ] {
        let reply = exchange(port, request);
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?}: {reply:?}"
        );
    }
}

#[test]
fn transfer_encoding_with_content_length_is_refused_before_hyper() {
    // RFC 9112 §6.1 and request smuggling: the framer refuses the head, the
    // request before it is still answered, and nothing after it is served.
    let (port, _stop) = start();
    let reply = exchange(
        port,
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n\
          POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let first = reply.find("GET /first 0").expect(&reply);
    let refused = reply.find("HTTP/1.1 400 Bad Request").expect(&reply);
    assert!(first < refused, "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 2, "{reply}");
    assert!(
        !reply.contains("smuggled") && reply.contains("Transfer-Encoding and Content-Length"),
        "{reply}"
    );
}

#[test]
fn smuggling_after_an_http10_keep_alive_request_is_refused() {
    // hyper keeps an HTTP/1.0 connection open when any `Connection` field
    // says `keep-alive` and none says `close` (proto/h1/role.rs), however
    // many other fields follow: the framer must go on judging after it. The
    // `Expect` field hands the first head to hyper and the framer (a plain
    // one would be served by ferrule's own exchange).
    let (port, _stop) = start();
    let reply = exchange(
        port,
        b"GET /first HTTP/1.0\r\nConnection: keep-alive\r\nConnection: foo\r\n\
          Expect: 100-continue\r\n\r\n\
          POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let first = reply.find("GET /first 0").expect(&reply);
    let refused = reply.find("HTTP/1.1 400 Bad Request").expect(&reply);
    assert!(first < refused, "{reply}");
    assert!(
        !reply.contains("POST / ") && !reply.contains("smuggled"),
        "{reply}"
    );
    assert!(
        reply.contains("Transfer-Encoding and Content-Length"),
        "{reply}"
    );
}

#[test]
fn nothing_is_judged_after_a_request_any_close_ends() {
    // In HTTP/1.1 (and 1.0) a `close` in any `Connection` field ends the
    // connection after the response, whatever fields follow it (hyper,
    // proto/h1/role.rs): the head after it is never read, so it is not
    // answered, not even with the framer's 400. `Transfer-Encoding` hands
    // the first head to hyper and the framer.
    let (port, _stop) = start();
    for connection in [
        "Connection: close\r\nConnection: foo\r\n",
        "Connection: close\r\nConnection: keep-alive\r\n",
    ] {
        for version in ["1.0", "1.1"] {
            let te = if version == "1.1" {
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            } else {
                "Expect: 100-continue\r\n\r\n"
            };
            let request = format!(
                "POST /first HTTP/{version}\r\nHost: a\r\n{connection}{te}\
                 POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            );
            let reply = exchange(port, request.as_bytes());
            let case = format!("HTTP/{version} {connection:?}");
            assert!(reply.contains("POST /first 0"), "{case}: {reply}");
            assert_eq!(reply.matches("HTTP/1.").count(), 1, "{case}: {reply}");
            assert!(!reply.contains(" 400 "), "{case}: {reply}");
        }
    }
}
