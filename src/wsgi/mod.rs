//! The rules of PEP 3333 that need no interpreter.
//!
//! Everything here works on plain Rust types, so `cargo test` checks it without
//! Python: [`environ`] computes the per-request CGI variables from a request
//! head, and [`status`] validates what an application passes to `start_response`.

pub mod access_log;
pub mod environ;
pub mod status;
