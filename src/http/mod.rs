//! The HTTP/1.1 side: listeners, connections and the hand-off to the application.
//!
//! hyper owns HTTP/1.1 framing (persistent connections, pipelining, chunked
//! bodies in and out, `Expect: 100-continue`, HEAD/204/304 without a body);
//! this module adds what hyper leaves to a server: the RFC 9112 §3.2 Host rule,
//! graceful shutdown, and the queue of [`Job`]s that Python threads take.

pub mod body;
pub mod dispatch;
pub mod framer;
pub mod framing;
pub mod fuzz;
mod h1;
pub mod limits;
pub mod listener;
pub mod proxy_protocol;
pub mod sendfile;
pub mod server;
pub mod tls;

pub use body::{BodyError, ResponseBody};
pub use dispatch::{Dispatch, InlineHandler, Job, Origin, RequestBody};
pub use limits::Limits;
pub use sendfile::{FileBody, SendfileQueue};
pub use server::{run, Listener, Peer, RunOptions};
