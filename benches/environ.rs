//! Criterion micro-benchmarks of the environ's pure-Rust half (issue 5):
//! computing the CGI variables of a request head, and `HTTP_*` key names.
//!
//! Run with `cargo bench --bench environ`. On the 2-core machine (2026-11-30):
//! `RequestVars::new` of an 8-field browser head 225 ns, `http_key` 5 ns for a
//! name in the table and 40 ns for one built.

// `criterion_group!` expands to an undocumented `pub fn`; a bench binary has no API.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use _ferrule::http::RequestHead;
use _ferrule::wsgi::environ::{http_key, RequestVars};

/// A browser-like request head: the common case the field-name table covers.
fn browser_head() -> RequestHead {
    let request = http::Request::builder()
        .uri("/shop/caf%C3%A9/items?page=2&sort=price")
        .header("host", "example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        )
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-language", "en-US,en;q=0.5")
        .header("accept-encoding", "gzip, deflate, br")
        .header("cookie", "session=abc123")
        .header("cookie", "theme=dark")
        .header("x-request-id", "7f3c9a")
        .body(())
        .unwrap();
    RequestHead::from_parts(request.into_parts().0)
}

fn environ(c: &mut Criterion) {
    let parts = browser_head();
    c.bench_function("RequestVars::new (browser head, 8 fields)", |b| {
        b.iter(|| {
            let vars = RequestVars::new(black_box(&parts), black_box("/shop"));
            vars.fields().count()
        })
    });
    c.bench_function("http_key (common name, table)", |b| {
        b.iter(|| http_key(black_box(b"Accept-Language")))
    });
    c.bench_function("http_key (custom name, built)", |b| {
        b.iter(|| http_key(black_box(b"X-Request-Id")))
    });
}

criterion_group!(benches, environ);
criterion_main!(benches);
