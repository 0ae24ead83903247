//! ferrule's Rust integration tests: one binary (STYLE.md rule 12).

mod framed;
mod fuzz;
mod http_raw;
mod router;
mod sendfile;
mod support;
