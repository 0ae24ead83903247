//! ferrule's own HTTP/1.1 exchange (src/http/h1.rs) over real TCP sockets:
//! its responses match hyper's byte for byte, the hand-off to hyper keeps a
//! pipeline in order, a broken body closes the connection, and its timers
//! fire. An HTTP/1.1 request is sent to hyper instead by giving it an empty
//! chunked body (`Transfer-Encoding` makes a head not plain), an HTTP/1.0
//! one by an `Expect: 100-continue` field (see [`HTTP10_TO_HYPER`]).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use _ferrule::http::{self, ResponseBody, RunOptions};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::support::connect;

/// The stand-in application: the path picks the response.
fn answer(job: http::Job, handle: &tokio::runtime::Handle) {
    // hyper's path streams a body; the exchange reads it whole.
    let via: &'static [u8] = match job.body {
        http::RequestBody::Stream(_) => b"hyper",
        http::RequestBody::Buffered(_) => b"exchange",
    };
    let body = match job.body {
        http::RequestBody::Stream(body) => handle.block_on(body.collect()).unwrap().to_bytes(),
        http::RequestBody::Buffered(body) => body,
    };
    let path = job.head.uri.path().to_owned();
    let stream = |chunks: &[&'static [u8]], fail: bool| {
        let (tx, body) = ResponseBody::channel(job.abort.clone());
        let chunks: Vec<_> = chunks.iter().map(|c| Bytes::from_static(c)).collect();
        std::thread::spawn(move || {
            for chunk in chunks {
                let _ = tx.blocking_send(Ok(chunk));
            }
            if fail {
                let _ = tx.blocking_send(Err(http::BodyError("failed".into())));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        body
    };
    let mut response = ::http::Response::new(ResponseBody::Empty);
    let mut headers = ::http::HeaderMap::new();
    match path.as_str() {
        "/full" => {
            headers.insert("content-type", "text/plain".parse().unwrap());
            headers.append("x-multi", "a".parse().unwrap());
            headers.append("x-multi", "b".parse().unwrap());
            *response.body_mut() = ResponseBody::Full(Some(Bytes::from_static(b"hello")));
        }
        "/echo" => *response.body_mut() = ResponseBody::Full(Some(body)),
        "/via" => *response.body_mut() = ResponseBody::Full(Some(Bytes::from_static(via))),
        "/stream" => *response.body_mut() = stream(&[b"ab", b"", b"cd"], false),
        "/stream-length" => {
            headers.insert("content-length", "4".parse().unwrap());
            *response.body_mut() = stream(&[b"ab", b"cd"], false);
        }
        "/overrun" => {
            headers.insert("content-length", "3".parse().unwrap());
            *response.body_mut() = stream(&[b"ab", b"cd"], false);
        }
        "/short" => {
            headers.insert("content-length", "5".parse().unwrap());
            *response.body_mut() = stream(&[b"ab"], false);
        }
        "/fail" => *response.body_mut() = stream(&[b"ab"], true),
        "/slow" => {
            let (tx, body) = ResponseBody::channel(job.abort.clone());
            std::thread::spawn(move || {
                let _ = tx.blocking_send(Ok(Bytes::from_static(b"ab")));
                std::thread::sleep(Duration::from_millis(800));
                let _ = tx.blocking_send(Ok(Bytes::from_static(b"cd")));
            });
            *response.body_mut() = body;
        }
        "/reason" => {
            *response.status_mut() = ::http::StatusCode::from_u16(299).unwrap();
            let reason = hyper::ext::ReasonPhrase::try_from(&b"Fine Thing"[..]).unwrap();
            response.extensions_mut().insert(reason);
            *response.body_mut() = ResponseBody::Full(Some(Bytes::from_static(b"r")));
        }
        "/no-content" => *response.status_mut() = ::http::StatusCode::NO_CONTENT,
        "/not-modified" => {
            *response.status_mut() = ::http::StatusCode::NOT_MODIFIED;
            headers.insert("etag", "\"x\"".parse().unwrap());
        }
        "/late" => {
            // Answered only after a while: a stop meanwhile finds no head
            // written yet.
            std::thread::sleep(Duration::from_millis(500));
            *response.body_mut() = ResponseBody::Full(Some(Bytes::from_static(b"late")));
        }
        "/close" => {
            headers.insert("connection", "close".parse().unwrap());
            *response.body_mut() = ResponseBody::Full(Some(Bytes::from_static(b"bye")));
        }
        _ => {}
    }
    response.headers_mut().extend(headers);
    let _ = job.reply.send(response.into());
}

/// The stand-in for `start_response`'s replies: `/lines/...` answers what
/// `/...` does, its fields sent as field lines ([`http::FieldLines`]) in the
/// buffer the connection lent the job, a whole body of a few bytes after them
/// (`ResponseBody::Small`), as `start_response` sends them.
fn answer_lines(mut job: http::Job, handle: &tokio::runtime::Handle) {
    let Some(path) = job.head.uri.path().strip_prefix("/lines") else {
        return answer(job, handle);
    };
    job.head.uri = path.parse().unwrap();
    let buffer = std::mem::take(&mut job.lines_buffer);
    let slot = std::sync::Arc::new(http::ReplySlot::default());
    let (reply, response) = slot.expect();
    let inner = std::mem::replace(&mut job.reply, reply);
    answer(job, handle);
    let mut response = handle.block_on(response).unwrap().into_response();
    let mut lines = http::FieldLines::in_buffer(buffer, 0);
    let mut last = None;
    for (name, value) in std::mem::take(response.headers_mut()) {
        // A map yields a repeated name once, before its first value.
        let name: ::http::HeaderName = name.or(last).unwrap();
        last = Some(name.clone());
        if name == ::http::header::CONTENT_LENGTH {
            lines.content_length = value.to_str().unwrap().parse().ok();
        } else if name == ::http::header::CONNECTION {
            lines.close = true;
        } else {
            lines.push(&name, value.as_bytes());
        }
    }
    let mut reply = http::Reply::from(response);
    if let ResponseBody::Full(Some(data)) = &reply.body {
        lines.set_body(data);
        reply.body = ResponseBody::Small;
    }
    reply.lines = lines;
    let _ = inner.send(reply);
}

fn start(options: RunOptions) -> (u16, tokio::sync::watch::Sender<bool>) {
    crate::support::serve_with(options, answer_lines)
}

/// Send `request`, then read until the server closes the connection.
fn exchange(port: u16, request: &[u8]) -> String {
    let mut stream = connect(port);
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// `reply` with the value of every `date` field replaced by `*`.
fn without_dates(reply: &str) -> String {
    reply
        .split("\r\n")
        .map(|line| match line.strip_prefix("date: ") {
            Some(_) => "date: *",
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Every response shape the differential tests send: method and path (a
/// path under `/lines` answers with the application's field lines).
const SHAPES: [(&str, &str); 20] = [
    ("GET", "/lines/full"),
    ("HEAD", "/lines/full"),
    ("GET", "/lines/stream"),
    ("GET", "/lines/stream-length"),
    ("HEAD", "/lines/stream-length"),
    ("GET", "/lines/reason"),
    ("GET", "/lines/not-modified"),
    ("GET", "/lines/close"),
    ("GET", "/full"),
    ("HEAD", "/full"),
    ("GET", "/empty"),
    ("HEAD", "/empty"),
    ("GET", "/stream"),
    ("HEAD", "/stream"),
    ("GET", "/stream-length"),
    ("GET", "/overrun"),
    ("GET", "/reason"),
    ("GET", "/no-content"),
    ("GET", "/not-modified"),
    ("GET", "/close"),
];

#[test]
fn responses_match_hypers_byte_for_byte() {
    let (port, _stop) = start(RunOptions::default());
    for (method, path) in SHAPES {
        // A value with a byte outside ASCII names no token for hyper.
        for close in [
            "",
            "Connection: close\r\n",
            "Connection: close\r\nConnection: foo\r\n",
            "Connection: close, \u{e9}\r\n",
        ] {
            // Each request is followed by a plain one: the connection's
            // state after the response must be the same too, and its field
            // lines written where the last response's were.
            let plain = format!(
                "{method} {path} HTTP/1.1\r\nHost: a\r\n{close}\r\n\
                 GET /lines/full HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            );
            let hyper = format!(
                "{method} {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n{close}\r\n\
                 0\r\n\r\nGET /lines/full HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            );
            let ours = without_dates(&exchange(port, plain.as_bytes()));
            let theirs = without_dates(&exchange(port, hyper.as_bytes()));
            assert!(ours.starts_with("HTTP/1.1 "), "{method} {path}: {ours:?}");
            assert!(
                ours.contains("\r\ndate: *\r\n"),
                "{method} {path}: {ours:?}"
            );
            assert_eq!(ours, theirs, "{method} {path} {close:?}");
        }
    }
}

/// A field that hands an HTTP/1.0 head to hyper and changes nothing else:
/// `Expect` makes a head not plain, and hyper ignores `100-continue` in an
/// HTTP/1.0 request (it sends `100 Continue` only to HTTP/1.1 and later,
/// `proto/h1/conn.rs`, and the bodies here are read at once anyway). Chunked
/// cannot be used: hyper refuses `Transfer-Encoding` in HTTP/1.0 (400).
const HTTP10_TO_HYPER: &str = "Expect: 100-continue\r\n";

#[test]
fn http10_requests_are_served_by_the_exchange() {
    let (port, _stop) = start(RunOptions::default());
    let via = |fields: &str| {
        let reply = exchange(
            port,
            format!("GET /via HTTP/1.0\r\n{fields}\r\n").as_bytes(),
        );
        reply.rsplit("\r\n\r\n").next().unwrap().to_owned()
    };
    assert_eq!(via(""), "exchange");
    assert_eq!(via("Connection: keep-alive\r\n"), "exchange");
    // The premise of http10_responses_match_hypers_byte_for_byte.
    assert_eq!(via(HTTP10_TO_HYPER), "hyper");
}

#[test]
fn http10_responses_match_hypers_byte_for_byte() {
    let (port, _stop) = start(RunOptions::default());
    let shapes = SHAPES.iter().chain(&[("POST", "/echo")]);
    for &(method, path) in shapes {
        let body = if method == "POST" {
            "Content-Length: 3\r\n\r\nabc"
        } else {
            "\r\n"
        };
        for connection in [
            "",
            "Connection: keep-alive\r\n",
            "Connection: close\r\n",
            "Connection: Keep-Alive\r\nConnection: close\r\n",
            "Connection: close\r\nConnection: keep-alive\r\n",
            "Connection: keep-alive\r\nConnection: foo\r\n",
            "Connection: keep-alive, \u{e9}\r\n",
        ] {
            // The request after it (HTTP/1.0, no Host: the last one) is
            // answered only if the connection stays open.
            let next = "GET /full HTTP/1.0\r\n\r\n";
            let plain = format!("{method} {path} HTTP/1.0\r\nHost: a\r\n{connection}{body}{next}");
            let hyper = format!(
                "{method} {path} HTTP/1.0\r\nHost: a\r\n{connection}{HTTP10_TO_HYPER}{body}{next}"
            );
            let ours = without_dates(&exchange(port, plain.as_bytes()));
            let theirs = without_dates(&exchange(port, hyper.as_bytes()));
            let case = format!("{method} {path} {connection:?}");
            assert!(ours.starts_with("HTTP/1.0 "), "{case}: {ours:?}");
            assert!(ours.contains("\r\ndate: *\r\n"), "{case}: {ours:?}");
            assert_eq!(ours, theirs, "{case}");
        }
    }
}

/// A server with `--limit-request-field-size 0`.
fn start_without_field_size_limit() -> (u16, tokio::sync::watch::Sender<bool>) {
    let limits = http::Limits {
        field_size: 0,
        ..http::Limits::default()
    };
    start(RunOptions {
        limits,
        ..RunOptions::default()
    })
}

#[test]
fn a_field_name_longer_than_the_http_crate_takes_is_hypers_to_answer() {
    // With no field-size limit a plain head may hold a name of any length;
    // the http crate's `HeaderName` takes at most 65,535 bytes, and hyper
    // answers a longer one with 431. The exchange must not serve it.
    let (port, _stop) = start_without_field_size_limit();
    let request = |len: usize| {
        let name = "n".repeat(len);
        format!("GET /via HTTP/1.1\r\nHost: a\r\n{name}: v\r\nConnection: close\r\n\r\n")
    };
    let reply = exchange(port, request(65_535).as_bytes());
    assert!(reply.starts_with("HTTP/1.1 200 "), "{:?}", &reply[..300]);
    assert!(reply.ends_with("\r\n\r\nexchange"), "{:?}", &reply[..80]);
    let reply = exchange(port, request(65_536).as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431 "), "{:?}", &reply[..80]);
}

#[test]
fn a_head_over_the_framers_limit_is_refused_as_on_hypers_path() {
    // With no field-size limit hyper's buffer may hold a head of megabytes,
    // but the framer in front of it refuses one over 1 MiB (431): so must
    // the exchange, which hands such a head over.
    let (port, _stop) = start_without_field_size_limit();
    let request = |fields: usize| {
        let value = "v".repeat(50_000);
        let lines: String = (0..fields).map(|i| format!("x-{i}: {value}\r\n")).collect();
        format!("GET /via HTTP/1.1\r\nHost: a\r\n{lines}Connection: close\r\n\r\n")
    };
    let reply = exchange(port, request(18).as_bytes());
    assert!(reply.starts_with("HTTP/1.1 200 "), "{:?}", &reply[..80]);
    assert!(reply.ends_with("\r\n\r\nexchange"), "{:?}", &reply[..80]);
    let reply = exchange(port, request(30).as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431 "), "{:?}", &reply[..80]);
    assert!(
        reply.ends_with("the request head is too large\n"),
        "{reply:?}"
    );
}

#[test]
fn a_pipeline_handed_to_hyper_midway_is_answered_in_order() {
    let (port, _stop) = start(RunOptions::default());
    let reply = exchange(
        port,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
          POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nfg",
    );
    let bodies: Vec<&str> = reply
        .split("HTTP/1.1 200 OK")
        .skip(1)
        .map(|r| r.rsplit("\r\n\r\n").next().unwrap())
        .collect();
    assert_eq!(bodies, ["abc", "de", "fg"], "{reply}");
}

#[test]
fn a_body_split_over_reads_is_read_whole() {
    let (port, _stop) = start(RunOptions::default());
    let mut stream = connect(port);
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01234")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(b"56789").unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.ends_with("\r\n\r\n0123456789"), "{reply}");
}

#[test]
fn a_failed_stream_ends_the_connection_without_a_last_chunk() {
    let (port, _stop) = start(RunOptions::default());
    let reply = exchange(
        port,
        b"GET /fail HTTP/1.1\r\nHost: a\r\n\r\nGET /full HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    assert!(reply.contains("transfer-encoding: chunked"), "{reply}");
    assert!(reply.ends_with("\r\n\r\n2\r\nab\r\n"), "{reply:?}");
    assert_eq!(reply.matches("HTTP/1.1").count(), 1, "{reply}");
}

#[test]
fn a_body_longer_than_its_content_length_is_cut_and_the_connection_kept() {
    // As hyper does: the bytes past the length are never sent, so the
    // framing holds and the next request is answered.
    let (port, _stop) = start(RunOptions::default());
    let reply = exchange(
        port,
        b"GET /overrun HTTP/1.1\r\nHost: a\r\n\r\nGET /full HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let (first, second) = reply
        .split_once("HTTP/1.1 200 OK\r\ncontent-type")
        .expect(&reply);
    assert!(first.ends_with("\r\n\r\nabc"), "{reply:?}");
    assert!(second.ends_with("\r\n\r\nhello"), "{reply:?}");
}

#[test]
fn a_body_shorter_than_its_content_length_closes_the_connection() {
    let (port, _stop) = start(RunOptions::default());
    let reply = exchange(
        port,
        b"GET /short HTTP/1.1\r\nHost: a\r\n\r\nGET /full HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    assert!(reply.ends_with("\r\n\r\nab"), "{reply:?}");
    assert_eq!(reply.matches("HTTP/1.1").count(), 1, "{reply}");
}

fn short_timeouts() -> RunOptions {
    RunOptions {
        keep_alive: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..RunOptions::default()
    }
}

/// Send `request` and read to the end; the reply and how long it took.
fn timed(port: u16, request: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let reply = exchange(port, request);
    (reply, started.elapsed())
}

#[test]
fn an_idle_connection_closes_after_keep_alive() {
    let (port, _stop) = start(short_timeouts());
    let (reply, took) = timed(port, b"GET /full HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(reply.ends_with("hello"), "{reply}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn a_busy_connection_outlives_keep_alive() {
    // The keep-alive timer is re-armed lazily: requests every 300 ms for
    // 2.4 s must keep a connection with --keep-alive 1 open.
    let (port, _stop) = start(short_timeouts());
    let mut stream = connect(port);
    for _ in 0..8 {
        stream
            .write_all(b"GET /full HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut reply = [0u8; 4096];
        let n = stream.read(&mut reply).unwrap();
        let reply = String::from_utf8_lossy(&reply[..n]);
        assert!(reply.ends_with("hello"), "{reply}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The timer fired early and was moved while the connection was busy;
    // idle now, it must still close it, --keep-alive after the last reply.
    let idle = Instant::now();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    let took = idle.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn a_late_head_gets_408() {
    let (port, _stop) = start(short_timeouts());
    let (reply, took) = timed(port, b"GET /full HTTP/1.1\r\nHo");
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert!(reply.contains("--header-timeout"), "{reply}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn a_late_body_gets_408() {
    let (port, _stop) = start(short_timeouts());
    let (reply, took) = timed(
        port,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n012",
    );
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn the_stop_flag_closes_an_idle_connection() {
    let (port, stop) = start(RunOptions::default());
    let mut stream = connect(port);
    stream
        .write_all(b"GET /full HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut reply = [0u8; 4096];
    let n = stream.read(&mut reply).unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).ends_with("hello"));
    let started = Instant::now();
    stop.send_replace(true);
    let n = stream.read(&mut reply).unwrap();
    assert_eq!(n, 0, "closed, not answered");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Send `/slow` (0.8 s) with a request pipelined behind it, set the stop
/// flag `after` its head arrived, and read to the end.
fn stop_during_a_slow_response(options: RunOptions, after: Duration) -> String {
    let (port, stop) = start(options);
    let mut stream = connect(port);
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /full HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200 OK"));
    std::thread::sleep(after);
    stop.send_replace(true);
    let mut all = first[..n].to_vec();
    let _ = stream.read_to_end(&mut all);
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn a_stop_during_a_response_closes_the_connection_after_it() {
    // As hyper's graceful shutdown: the response in flight is finished, and
    // a request pipelined behind it is not started.
    let all = stop_during_a_slow_response(RunOptions::default(), Duration::ZERO);
    assert!(all.ends_with("2\r\ncd\r\n0\r\n\r\n"), "{all:?}");
    assert_eq!(all.matches("HTTP/1.1").count(), 1, "{all}");
}

#[test]
fn the_drain_window_runs_from_the_stop_not_from_the_end_of_the_response() {
    // Stop 0.1 s into a 0.8 s response with a 0.5 s drain window: the window
    // is over when the response ends, so the request behind it is not
    // started (hyper's connection task times it the same way).
    let options = RunOptions {
        drain_window: Duration::from_millis(500),
        ..RunOptions::default()
    };
    let all = stop_during_a_slow_response(options, Duration::from_millis(100));
    assert!(all.ends_with("2\r\ncd\r\n0\r\n\r\n"), "{all:?}");
    assert_eq!(all.matches("HTTP/1.1").count(), 1, "{all}");
}

/// Send `request` (for `/late` or `/lines/late`: answered 0.5 s after it
/// arrives) to a new server, set the stop flag 0.1 s later, and read to the
/// end.
fn stop_before_a_late_reply(options: RunOptions, request: &str) -> String {
    let (port, stop) = start(options);
    let mut stream = connect(port);
    stream.write_all(request.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.send_replace(true);
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn a_reply_during_a_stop_says_what_hypers_says() {
    // The stop flag marks the reply `close` (Dispatch::submit). hyper's
    // graceful shutdown, once the drain window is over, also turns its
    // keep-alive off, and then (proto/h1/conn.rs, fix_keep_alive) adds no
    // `keep-alive` token for an HTTP/1.0 client that asked for one: a
    // window over before the reply gets `connection: close` alone; one
    // still open, `connection: close, keep-alive` (the response closes the
    // connection either way).
    let windows = [
        (Duration::ZERO, true),
        (Duration::from_millis(200), true),
        (Duration::from_secs(10), false),
    ];
    let mut cases = Vec::new();
    for (window, over) in windows {
        for path in ["/late", "/lines/late"] {
            cases.push((
                window,
                over,
                format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
                format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n{HTTP10_TO_HYPER}\r\n"),
            ));
            cases.push((
                window,
                over,
                format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n"),
                format!(
                    "GET {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                ),
            ));
        }
    }
    std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|(window, _, plain, hyper)| {
                let options = || RunOptions {
                    drain_window: *window,
                    ..RunOptions::default()
                };
                let ours = scope.spawn(move || stop_before_a_late_reply(options(), plain));
                let theirs = scope.spawn(move || stop_before_a_late_reply(options(), hyper));
                (ours, theirs)
            })
            .collect();
        for ((window, over, plain, _), (ours, theirs)) in cases.iter().zip(runs) {
            let ours = without_dates(&ours.join().unwrap());
            let theirs = without_dates(&theirs.join().unwrap());
            let case = format!("{plain:?}, drain window {window:?}");
            assert!(ours.ends_with("\r\n\r\nlate"), "{case}: {ours:?}");
            let connection = if *over || plain.contains("HTTP/1.1") {
                "\r\nconnection: close\r\n"
            } else {
                "\r\nconnection: close, keep-alive\r\n"
            };
            assert!(ours.contains(connection), "{case}: {ours:?}");
            assert_eq!(ours, theirs, "{case}");
        }
    });
}

#[test]
fn a_head_that_starts_behind_a_slow_body_gets_its_own_header_timeout() {
    // The body takes longer than --header-timeout; the next head, which
    // arrives with its last byte, is timed from then.
    let options = RunOptions {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(10),
        ..RunOptions::default()
    };
    let (port, _stop) = start(options);
    let mut stream = connect(port);
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\na")
        .unwrap();
    for piece in [&b"b"[..], b"cGET /full HTTP/1.1\r\n"] {
        std::thread::sleep(Duration::from_millis(700));
        stream.write_all(piece).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    stream
        .write_all(b"Host: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 2, "{reply}");
    assert!(reply.ends_with("hello"), "{reply}");
}

#[test]
fn the_body_timeout_bounds_each_piece_not_the_whole_body() {
    // --body-timeout is the longest wait for the next piece of a body.
    let options = RunOptions {
        body_timeout: Duration::from_millis(700),
        ..RunOptions::default()
    };
    let (port, _stop) = start(options);
    let mut stream = connect(port);
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\na",
        )
        .unwrap();
    for piece in [b"b", b"c", b"d"] {
        std::thread::sleep(Duration::from_millis(400));
        stream.write_all(piece).unwrap();
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nabcd"), "{reply}");
}
