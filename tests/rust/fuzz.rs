//! The fuzz target's function over `fuzz/seeds/` and a bounded number of
//! inputs made from them (issue 3 item 7): CI's share of the fuzzing.
//!
//! The mutations are deterministic (a fixed-seed xorshift), so a failure
//! reproduces; it prints the input that broke.

use std::path::Path;

use _ferrule::http::fuzz::request_head;

/// Generated inputs per run (bounded: the suite must stay quick).
const GENERATED: usize = 100_000;

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("fuzz/seeds exists")
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "the seed corpus is in fuzz/seeds");
    seeds
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"chunked",
    b"Content-Length: ",
    b"Transfer-Encoding: ",
    b"0\r\n\r\n",
    b"%",
    b"%2F",
    b"\xff",
    b"HTTP/1.1",
    b"ffffffffffffffff",
];

fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let end = (at + rng.below(8)).min(data.len());
                data.drain(at.min(end)..end);
            }
            1 => data.insert(at, rng.next() as u8),
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            3 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            _ => {
                let copy = data[..at].to_vec();
                data.extend_from_slice(&copy);
            }
        }
    }
    data
}

#[test]
fn seeds_and_generated_inputs_never_panic() {
    let seeds = seeds();
    for seed in &seeds {
        request_head(seed);
    }
    let mut rng = XorShift(0x5eed_f00d_dead_beef);
    for _ in 0..GENERATED {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        let outcome = std::panic::catch_unwind(|| request_head(&input));
        assert!(
            outcome.is_ok(),
            "request_head panicked on {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}
