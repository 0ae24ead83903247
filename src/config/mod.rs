//! Configuration: the command line as typed, and bind addresses.
//!
//! [`cli::Args`] records exactly what the user typed (clap, gunicorn's option
//! names); [`bind::Bind`] turns one `--bind` value into socket addresses.

pub mod bind;
pub mod cli;
pub mod forwarded;
pub mod sources;

pub use bind::Bind;
pub use cli::Args;
