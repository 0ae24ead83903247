//! Lingering close: how a connection the server ends is torn down (RFC 9112
//! §9.6).
//!
//! A socket closed while bytes its peer sent are still unread in it is not
//! ended but reset: the kernel sends a TCP RST instead of a FIN, and drops
//! whatever of the last response it had not sent yet. So a client that sent
//! more than the server read (pipelined requests behind a `Connection:
//! close` response, the rest of a body refused with a 413) and reads the
//! response late loses its tail: a truncated body, `ECONNRESET`. RFC 9112
//! §9.6: "servers typically close a connection in stages. First, the server
//! performs a half-close by closing only the write side of the read/write
//! connection. The server then continues to read from the connection until it
//! receives a corresponding close by the client, or until the server is
//! reasonably certain that its own TCP stack has received the client's
//! acknowledgement of the packet(s) containing the server's last response.
//! Finally, the server fully closes the connection."
//!
//! So every connection ferrule ends while its client may still send goes:
//! the outbox settled ([`super::turn`]), the last response written, the
//! write side shut down (the FIN follows the response; under TLS a
//! close_notify first), then [`linger`] reads and discards until the client
//! ends its side, and only then is the socket dropped. The reading is bounded,
//! as nginx's `lingering_close` and Apache's lingering close are: at most
//! [`LINGER_TIME`] in all, [`LINGER_GAP`] without a byte, [`LINGER_BYTES`]
//! read. A connection whose client ended first, or an idle one closed with
//! nothing read and nothing waiting, needs none of it (nginx does not linger
//! there either), and the keep-alive path never comes here.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// The longest a closing connection is read, in all: 5 s (nginx's
/// `lingering_time` is 30 s, Apache's bound 30 s, in 2 s waits).
///
/// Long enough for a client to take a last response its window held back
/// and end its side, or to finish sending a body the server refused; short
/// enough that a client which never ends its side holds the task, and a
/// graceful stop (`--graceful-timeout`, 30 s by default), only briefly.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// The longest a closing connection waits for its client's next byte (or its
/// end): 2 s, Apache's `SECONDS_TO_LINGER` (nginx's `lingering_timeout` is
/// 5 s).
pub const LINGER_GAP: Duration = Duration::from_secs(2);

/// The most bytes read and discarded from a closing connection: 64 MiB,
/// what a 100 Mbit/s client sends in about [`LINGER_TIME`]; a faster one
/// (on the same machine) would otherwise cost the loop's thread seconds of
/// copying.
pub const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes asked of each read while lingering.
const READ_SIZE: usize = 16 * 1024;

/// How a [`linger`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lingered {
    /// The client ended its side (or a read failed: it is gone).
    Ended,
    /// No byte came for [`LINGER_GAP`].
    Quiet,
    /// [`LINGER_TIME`] passed.
    Late,
    /// [`LINGER_BYTES`] were read.
    Full,
}

/// The bounds of a [`linger`]: its whole time, its longest wait for a byte,
/// and the most bytes it reads.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The longest it reads, in all. Default is [`LINGER_TIME`].
    pub time: Duration,
    /// The longest it waits for the next byte. Default is [`LINGER_GAP`].
    pub gap: Duration,
    /// The most bytes it reads. Default is [`LINGER_BYTES`].
    pub bytes: u64,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            time: LINGER_TIME,
            gap: LINGER_GAP,
            bytes: LINGER_BYTES,
        }
    }
}

/// Read and discard what the client still sends on `io`, whose write side
/// the caller has shut down, until the client ends its side or a bound of
/// `bounds` passes (module docs); the caller then drops `io`.
///
/// A client that had ended its side already costs one read (and a buffer):
/// no timer is registered until a read finds nothing waiting.
pub async fn linger<S: AsyncRead + Unpin>(io: &mut S, bounds: Bounds) -> Lingered {
    let start = Instant::now();
    let end = start + bounds.time;
    let mut buf = vec![0; READ_SIZE];
    let mut read = 0u64;
    let timer = tokio::time::sleep_until((start + bounds.gap).min(end));
    tokio::pin!(timer);
    loop {
        tokio::select! {
            biased;
            n = io.read(&mut buf) => match n {
                Ok(0) | Err(_) => return Lingered::Ended,
                Ok(n) => {
                    read += n as u64;
                    if read >= bounds.bytes {
                        return Lingered::Full;
                    }
                    let next = (Instant::now() + bounds.gap).min(end);
                    timer.as_mut().reset(next);
                }
            },
            () = timer.as_mut() => {
                return if Instant::now() >= end {
                    Lingered::Late
                } else {
                    Lingered::Quiet
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A connected pair: (the server's side, the client's).
    async fn pair() -> (TcpStream, TcpStream) {
        pair_with(None).await
    }

    /// A connected pair whose client has a receive buffer of `rcvbuf` bytes.
    async fn pair_with(rcvbuf: Option<u32>) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let client = socket.connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    const SHORT: Bounds = Bounds {
        time: Duration::from_millis(1500),
        gap: Duration::from_millis(300),
        bytes: 1 << 20,
    };

    #[test]
    fn the_response_is_read_whole_and_ends_cleanly_behind_unread_requests() {
        // The client sent more than the server reads, then reads the response
        // late, through a small window: without the lingering the close resets
        // the connection and drops the tail the server's socket still held.
        runtime().block_on(async {
            let (mut server, mut client) = pair_with(Some(8192)).await;
            client.write_all(&[b'x'; 50_000]).await.unwrap();
            let response = vec![b'r'; 4 << 20];
            let write = async {
                server.write_all(&response).await.unwrap();
                server.shutdown().await.unwrap();
                let lingered = linger(&mut server, SHORT).await;
                drop(server);
                lingered
            };
            let read = async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut got = Vec::new();
                let end = client.read_to_end(&mut got).await;
                drop(client);
                (end.map_err(|e| e.kind()), got.len())
            };
            let (lingered, (end, got)) = tokio::join!(write, read);
            assert_eq!(end, Ok(4 << 20));
            assert_eq!(got, 4 << 20);
            assert_eq!(lingered, Lingered::Ended);
        });
    }

    #[test]
    fn a_client_that_ended_first_costs_one_read() {
        runtime().block_on(async {
            let (mut server, mut client) = pair().await;
            client.write_all(b"bytes before the end").await.unwrap();
            client.shutdown().await.unwrap();
            server.shutdown().await.unwrap();
            let start = Instant::now();
            assert_eq!(
                linger(&mut server, Bounds::default()).await,
                Lingered::Ended
            );
            assert!(start.elapsed() < Duration::from_secs(1));
        });
    }

    #[test]
    fn each_bound_ends_it() {
        runtime().block_on(async {
            // Silent: the gap.
            let (mut server, _client) = pair().await;
            server.shutdown().await.unwrap();
            let start = Instant::now();
            assert_eq!(linger(&mut server, SHORT).await, Lingered::Quiet);
            let took = start.elapsed();
            assert!(took >= SHORT.gap && took < SHORT.time, "{took:?}");

            // A byte every 50 ms: the whole time.
            let (mut server, mut client) = pair().await;
            server.shutdown().await.unwrap();
            let drip = async {
                while client.write_all(b"x").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let start = Instant::now();
            tokio::select! {
                lingered = linger(&mut server, SHORT) => assert_eq!(lingered, Lingered::Late),
                () = drip => panic!("the client's writes failed first"),
            }
            let took = start.elapsed();
            assert!(took >= SHORT.time && took < 3 * SHORT.time, "{took:?}");

            // A flood: the bytes.
            let (mut server, mut client) = pair().await;
            server.shutdown().await.unwrap();
            let flood = async {
                let block = vec![0u8; 64 * 1024];
                while client.write_all(&block).await.is_ok() {}
            };
            tokio::select! {
                lingered = linger(&mut server, SHORT) => assert_eq!(lingered, Lingered::Full),
                () = flood => panic!("the client's writes failed first"),
            }
        });
    }
}
