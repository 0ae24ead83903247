//! The bytes → request head → environ path, as one function for fuzzing.
//!
//! `fuzz/` drives [`request_head`] with libFuzzer for hours by hand; the test
//! suite drives it over `fuzz/seeds/` plus a bounded number of generated
//! inputs (`tests/rust/fuzz.rs`). It must never panic, whatever the bytes.

use super::framer::Framer;
use super::{framing, Limits};
use crate::wsgi::environ::RequestVars;

/// Run `data` through the framer (in two reads), then parse the first head the
/// framer passed and compute its environ variables, limit and framing checks.
///
/// # Panics
///
/// Only on a broken invariant: the framer passes bytes that are not the
/// input's, in order (empty lines before a head aside), or a request-target
/// whose percent-decoded path is longer than the target.
pub fn request_head(data: &[u8]) {
    let mut framer = Framer::new(8190);
    let mut passed = Vec::new();
    let mid = data.len() / 2;
    let _refused = framer
        .feed(&data[..mid], &mut passed)
        .and_then(|()| framer.feed(&data[mid..], &mut passed));
    // The framer passes the input's own bytes in order; it drops only the
    // empty lines before a head, holds back what follows a refusal or an
    // unfinished head, and may end with its poisoned chunk line. So, CR and
    // LF aside, what passed (less that line) begins the input.
    let passed_own = passed
        .strip_suffix(super::framer::POISON)
        .unwrap_or(&passed);
    let strip = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect()
    };
    assert!(
        strip(data).starts_with(&strip(passed_own)),
        "the framer passed bytes that are not the input's"
    );
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut fields);
    let Ok(httparse::Status::Complete(_)) = request.parse(&passed) else {
        return;
    };
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(target);
    for field in request.headers.iter() {
        builder = builder.header(field.name, field.value);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let parts = crate::http::RequestHead::from_parts(request.into_parts().0);
    let vars = RequestVars::new(&parts, "/app");
    assert!(
        vars.path_info.len() <= target.len(),
        "decoding never lengthens a path"
    );
    let _ = Limits::default().check_head(&parts, true);
    let _ = framing::check(&parts);
}
