//! File bodies sent with `sendfile(2)` through the real HTTP layer: a Rust
//! stand-in for the application answers with [`FileBody`]s over loopback TCP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use _ferrule::http::{FileBody, Job, ResponseBody};
use bytes::Bytes;

use crate::support::connect;

/// 3 MiB + 7 of bytes that differ from their neighbours.
fn data() -> Vec<u8> {
    (0..3 * 1024 * 1024 + 7u32)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// A server whose "application" answers `/file?OFFSET&LENGTH[&short]` with
/// that part of [`data`] as a file body (`short`: a Content-Length 10 bytes
/// longer than what is sent), and anything else with `plain`.
fn start() -> u16 {
    let path = std::env::temp_dir().join(format!("ferrule-sendfile-it-{}", std::process::id()));
    std::fs::write(&path, data()).unwrap();
    let (port, stop) = crate::support::serve(move |job, _| {
        let response = answer(&job, &path);
        let _ = job.reply.send(response.into());
    });
    std::mem::forget(stop); // serve until the test process ends
    port
}

fn answer(job: &Job, path: &std::path::Path) -> ::http::Response<ResponseBody> {
    let query = job.head.uri.query().unwrap_or("");
    let args: Vec<&str> = query.split('&').collect();
    if job.head.uri.path() != "/file" {
        return ::http::Response::new(ResponseBody::Full(Some(Bytes::from_static(b"plain"))));
    }
    let offset: u64 = args[0].parse().unwrap();
    let length: u64 = args[1].parse().unwrap();
    let short = args.get(2) == Some(&"short");
    let queue = job
        .sendfile
        .clone()
        .expect("plain TCP has a sendfile queue");
    let file = std::fs::File::open(path).unwrap();
    let body = FileBody::new(file, offset, length, short, queue, job.abort.clone());
    let declared = if short { length + 10 } else { length };
    let mut response = ::http::Response::new(ResponseBody::File(body));
    response
        .headers_mut()
        .insert(::http::header::CONTENT_LENGTH, declared.into());
    response
}

/// Read one response with a Content-Length body: (head, body, complete).
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>, bool) {
    let mut chunk = vec![0; 256 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before a head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    buf.drain(..head_end);
    while buf.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let body = std::mem::take(buf);
                return (head, body, false);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf.drain(..length).collect();
    (head, body, true)
}

#[test]
fn file_bodies_arrive_exactly_and_keep_alive_goes_on() {
    let port = start();
    let data = data();
    let mut stream = connect(port);
    let mut buf = Vec::new();
    for (offset, length) in [(0, data.len()), (1, 1), (65_535, 65_537), (12_345, 2 << 20)] {
        let request = format!("GET /file?{offset}&{length} HTTP/1.1\r\nHost: a\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let (head, body, complete) = read_response(&mut stream, &mut buf);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(complete, "{offset} {length}");
        assert!(body == data[offset..offset + length], "{offset} {length}");
    }
    // Pipelined: a file, a plain response, a file, on one write.
    stream
        .write_all(
            b"GET /file?100&300000 HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /plain HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /file?7&9 HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .unwrap();
    let (_, body, _) = read_response(&mut stream, &mut buf);
    assert!(body == data[100..300_100]);
    let (_, body, _) = read_response(&mut stream, &mut buf);
    assert_eq!(body, b"plain");
    let (_, body, _) = read_response(&mut stream, &mut buf);
    assert_eq!(body, &data[7..16]);
}

#[test]
fn a_short_file_closes_the_connection_before_the_declared_length() {
    let port = start();
    let data = data();
    let mut stream = connect(port);
    let mut buf = Vec::new();
    stream
        .write_all(b"GET /file?0&70000&short HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let (head, body, complete) = read_response(&mut stream, &mut buf);
    assert!(head.contains("content-length: 70010"), "{head}");
    assert!(!complete, "the connection closed before 70010 bytes");
    assert!(body.len() <= 70_000 && body == data[..body.len()]);
}

#[test]
fn a_slow_reader_gets_every_byte() {
    let port = start();
    let data = data();
    let stream = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stream.set_recv_buffer_size(4096).unwrap();
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    stream.connect(&address.into()).unwrap();
    let mut stream: TcpStream = stream.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /file?3&1000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the server blocks on a full socket
    let mut buf = Vec::new();
    let (_, body, complete) = read_response(&mut stream, &mut buf);
    assert!(complete);
    assert!(body == data[3..1_000_003]);
}
