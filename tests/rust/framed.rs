//! The read timers of [`Framed`]: idle keep-alive, and a connection the
//! framer stopped judging. Time is tokio's paused clock, so the deadlines are
//! exact and the tests take no wall-clock time.

use std::time::Duration;

use _ferrule::http::framer::{Framed, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

const TIMEOUTS: Timeouts = Timeouts {
    keep_alive: Duration::from_secs(5),
    header: Duration::from_secs(10),
    body: Duration::from_secs(60),
};

/// Read from `framed` until it reports the end of input; the bytes read.
async fn read_to_end<S>(framed: &mut Framed<S>) -> Vec<u8>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = framed.read(&mut buf).await.expect("read");
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&buf[..n]);
    }
}

/// The request every keep-alive test starts with.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A client and the server's framed end, the client having sent [`REQUEST`].
async fn after_one_request() -> (DuplexStream, Framed<DuplexStream>) {
    let (mut client, server) = tokio::io::duplex(4096);
    client.write_all(REQUEST).await.unwrap();
    (client, Framed::new(server, 8190, TIMEOUTS))
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_ends_after_keep_alive() {
    let (_client, mut framed) = after_one_request().await;
    let started = Instant::now();
    let read = read_to_end(&mut framed).await;
    assert_eq!(read, REQUEST);
    assert_eq!(started.elapsed(), TIMEOUTS.keep_alive);
}

#[tokio::test(start_paused = true)]
async fn a_connection_no_longer_judged_ends_after_the_longest_wait() {
    // HTTP/1.0 without keep-alive is the connection's last message: the framer
    // stops judging after it, and only the longest allowed silence ends it.
    let (mut client, server) = tokio::io::duplex(4096);
    let mut framed = Framed::new(server, 8190, TIMEOUTS);
    client
        .write_all(b"POST / HTTP/1.0\r\nContent-Length: 10\r\n\r\n12345")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = framed.read(&mut buf).await.unwrap();
    assert_eq!(
        &buf[..n],
        b"POST / HTTP/1.0\r\nContent-Length: 10\r\n\r\n12345"
    );
    // A byte 30 s later restarts the wait.
    tokio::time::sleep(Duration::from_secs(30)).await;
    client.write_all(b"6").await.unwrap();
    let n = framed.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"6");
    let started = Instant::now();
    assert_eq!(read_to_end(&mut framed).await, b"");
    // max(header + keep-alive, body) = max(15 s, 60 s)
    assert_eq!(started.elapsed(), TIMEOUTS.body);
}

#[tokio::test(start_paused = true)]
async fn empty_lines_between_requests_do_not_keep_a_connection_alive() {
    // RFC 9112 §2.2 lets a server ignore empty lines before a request line; they
    // are not a request, so they neither restart the idle wait nor start a head.
    let (mut client, mut framed) = after_one_request().await;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if client.write_all(b"\r\n").await.is_err() {
                break;
            }
        }
        client
    });
    let read = read_to_end(&mut framed).await;
    assert_eq!(read, REQUEST);
    assert_eq!(started.elapsed(), TIMEOUTS.keep_alive);
    drop(framed);
    writer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bytes_read_before_the_framer_are_judged_first() {
    // A connection handed over by ferrule's own exchange: what it read (here
    // a whole request and half a head) comes before the socket's bytes.
    let (mut client, server) = tokio::io::duplex(4096);
    let unread = bytes::BytesMut::from(&b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTT"[..]);
    let mut framed = Framed::new(server, 8190, TIMEOUTS).with_unread(unread);
    client.write_all(b"P/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let read = read_to_end(&mut framed).await;
    assert_eq!(
        read,
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_head_among_the_unread_bytes_is_answered_at_shutdown() {
    let (mut client, server) = tokio::io::duplex(4096);
    let smuggled =
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let unread = bytes::BytesMut::from(&smuggled[..]);
    let mut framed = Framed::new(server, 8190, TIMEOUTS).with_unread(unread);
    assert_eq!(read_to_end(&mut framed).await, b"");
    framed.shutdown().await.unwrap();
    drop(framed);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(
        reply.contains("Transfer-Encoding and Content-Length"),
        "{reply}"
    );
}
