//! The HTTP/1.1 side: listeners, connections and the hand-off to the application.
//!
//! Plain requests (HTTP/1.1 or HTTP/1.0 with at most a small `Content-Length`
//! body, the common case) are served by ferrule's own exchange (`h1`); a
//! connection that sends anything else is handed to hyper, which owns the
//! rest of HTTP/1.1 (chunked bodies in, `Expect: 100-continue`). Both frame
//! responses alike (persistent connections, pipelining, chunked bodies out,
//! HEAD/204/304 without a body). This module adds what hyper leaves to a
//! server: the RFC 9112 §3.2 Host rule, graceful shutdown, and the queue of
//! [`Job`]s that Python threads take.

pub mod body;
pub mod dispatch;
pub mod framer;
pub mod framing;
pub mod fuzz;
pub mod h1;
pub mod head;
pub mod limits;
pub mod linger;
pub mod listener;
pub mod proxy_protocol;
pub mod reply;
pub mod send_timeout;
pub mod sendfile;
pub mod server;
pub mod tls;
pub mod trim;
pub mod turn;

pub use body::{BodyError, ResponseBody};
pub use dispatch::{ConnectionKept, Dispatch, InlineHandler, Job, Origin, RequestBody};
pub use head::{HeadBox, RequestHead};
pub use limits::Limits;
pub use reply::{FieldLines, Reply, ReplyExtra, ReplyReceiver, ReplySender, ReplySlot};
pub use send_timeout::SendTimeout;
pub use sendfile::{FileBody, SendfileQueue};
pub use server::{run, Listener, Peer, RunOptions};
