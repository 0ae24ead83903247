//! Criterion micro-benchmark of [`_ferrule::router::Router::lookup`].
//!
//! The same route tables as `benchmarks/routing/bench_routing.py`: `n` routes,
//! a quarter each of static pages, `{id:int}` items, `{name}` sub-resources
//! and `{*path}` catch-alls, looked up at the first, middle and last route.
//! Run with `cargo bench --bench router`.

// `criterion_group!` expands to an undocumented `pub fn`; a bench binary has no API.
#![allow(missing_docs)]

use std::hint::black_box;

use _ferrule::router::{Lookup, Methods, Router};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// `n` patterns and, for each, a path that matches it.
fn table(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| match i % 4 {
            0 => (format!("/section{i}/page"), format!("/section{i}/page")),
            1 => (
                format!("/api/v1/res{i}/{{id:int}}"),
                format!("/api/v1/res{i}/42"),
            ),
            2 => (
                format!("/users/{{name}}/res{i}/edit"),
                format!("/users/ann/res{i}/edit"),
            ),
            _ => (
                format!("/static{i}/{{*path}}"),
                format!("/static{i}/css/site.css"),
            ),
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_lookup");
    for n in [10, 100, 1000] {
        let routes = table(n);
        let mut router = Router::new(true);
        for (id, (pattern, _)) in routes.iter().enumerate() {
            router
                .insert(pattern, Methods::Only(vec!["GET".into()]), id)
                .unwrap();
        }
        let paths: Vec<&str> = [0, n / 2 + 1, n - 1]
            .iter()
            .map(|&i| routes[i].1.as_str())
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &paths, |b, paths| {
            b.iter(|| {
                for path in paths {
                    let found = router.lookup("GET", black_box(path));
                    assert!(matches!(found, Lookup::Found { .. }));
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
