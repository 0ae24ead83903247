//! ferrule's Rust integration tests: one binary (STYLE.md rule 12).

mod framed;
mod fuzz;
mod h1;
mod http_raw;
mod router;
mod sendfile;
mod support;
