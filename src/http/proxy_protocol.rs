//! The PROXY protocol (HAProxy's, versions 1 and 2): `--proxy-protocol`.
//!
//! A load balancer that speaks it sends one header before the HTTP bytes,
//! naming the client's address. ferrule looks for it only on connections from
//! peers in `--proxy-allow-from`, and, as gunicorn's `proxy_protocol = auto`,
//! only when the connection starts like one (`PROXY ` or the v2 signature):
//! others are plain HTTP. It consumes exactly the header's bytes (peek, then
//! read), so the HTTP bytes behind it reach hyper untouched. Parsing is the
//! `ppp` crate's. A `LOCAL` (v2) or `UNKNOWN` (v1) header keeps the
//! connection's own address; a malformed header gets a 400 and the connection
//! is closed.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest header: v2's 16-byte prefix plus a 16-bit length.
const MAX_HEADER: usize = 16 + 65_535;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Whether `start` (the first bytes seen) could still begin a PROXY header.
fn may_be_header(start: &[u8]) -> bool {
    [V1_PREFIX, V2_SIGNATURE].iter().any(|sig| {
        let n = start.len().min(sig.len());
        start[..n] == sig[..n]
    })
}

/// Read the PROXY header at the start of `stream`; returns the client address.
///
/// # Errors
///
/// Timeouts, malformed headers and I/O errors (a 400 is written first for a
/// malformed header).
pub async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> io::Result<SocketAddr> {
    match tokio::time::timeout(timeout, read(stream, peer)).await {
        Ok(Ok(addr)) => Ok(addr),
        Ok(Err(err)) => {
            if err.kind() == io::ErrorKind::InvalidData {
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
            Err(err)
        }
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

async fn read(stream: &mut TcpStream, peer: SocketAddr) -> io::Result<SocketAddr> {
    let mut buf = vec![0u8; 536];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if !may_be_header(&buf[..n]) {
            return Ok(peer); // plain HTTP from an allowed peer
        }
        let result = HeaderResult::parse(&buf[..n]);
        // A v1 line is complete at its CRLF and at most 107 bytes (the spec's
        // limit): past either, "incomplete" really means malformed.
        let v1_done =
            buf.starts_with(V1_PREFIX) && (n >= 107 || buf[..n].windows(2).any(|w| w == b"\r\n"));
        if result.is_incomplete() && v1_done {
            return Err(invalid("malformed PROXY protocol v1 line"));
        }
        if result.is_incomplete() {
            if n == buf.len() {
                if buf.len() >= MAX_HEADER {
                    return Err(invalid("PROXY header too long"));
                }
                buf.resize((buf.len() * 4).min(MAX_HEADER), 0);
            } else {
                // Wait for more bytes: peek returns at once with what is there.
                stream.readable().await?;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            continue;
        }
        let (len, addr) = match result {
            HeaderResult::V1(Ok(header)) => {
                let addr = match header.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        SocketAddr::from((a.source_address, a.source_port))
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        SocketAddr::from((a.source_address, a.source_port))
                    }
                    ppp::v1::Addresses::Unknown => peer,
                };
                (header.header.len(), addr)
            }
            HeaderResult::V2(Ok(header)) => {
                let addr = match (&header.command, &header.addresses) {
                    (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                        SocketAddr::from((a.source_address, a.source_port))
                    }
                    (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                        SocketAddr::from((a.source_address, a.source_port))
                    }
                    _ => peer,
                };
                (header.len(), addr)
            }
            _ => return Err(invalid("malformed PROXY protocol header")),
        };
        let mut header = vec![0u8; len];
        stream.read_exact(&mut header).await?;
        return Ok(addr);
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn exchange(prefix: &[u8]) -> (io::Result<SocketAddr>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let prefix = prefix.to_vec();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // Split in two writes: the parser must wait for the rest.
            let (a, b) = prefix.split_at(prefix.len() / 2);
            s.write_all(a).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.write_all(b).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
            rest
        });
        let (mut stream, peer) = listener.accept().await.unwrap();
        let result = read_header(&mut stream, peer, Duration::from_secs(5)).await;
        let mut after = vec![0u8; 16];
        if result.is_ok() {
            stream.read_exact(&mut after).await.unwrap();
        }
        drop(stream);
        let _ = client.await;
        (result, after)
    }

    #[tokio::test]
    async fn v1_header_gives_the_client_and_leaves_http_intact() {
        let (addr, after) = exchange(b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 80\r\n").await;
        assert_eq!(addr.unwrap(), "203.0.113.9:51000".parse().unwrap());
        assert_eq!(after, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn v2_header() {
        let mut raw = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        raw.extend_from_slice(&[0x21, 0x11, 0, 12]);
        raw.extend_from_slice(&[198, 51, 100, 7, 10, 0, 0, 1]);
        raw.extend_from_slice(&4242u16.to_be_bytes());
        raw.extend_from_slice(&80u16.to_be_bytes());
        let (addr, after) = exchange(&raw).await;
        assert_eq!(addr.unwrap(), "198.51.100.7:4242".parse().unwrap());
        assert_eq!(after, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn plain_http_passes_through() {
        let (addr, after) = exchange(b"").await;
        assert!(addr.unwrap().ip().is_loopback());
        assert_eq!(after, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        for line in [
            &b"PROXY NOPE\r\n"[..],
            b"PROXY TCP4 192.168.0.1 192.16...\r\n",
        ] {
            let (result, _) = exchange(line).await;
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
    }
}
