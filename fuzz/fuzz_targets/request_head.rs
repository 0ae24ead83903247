//! libFuzzer target: bytes → framer → request head → environ.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    _ferrule::http::fuzz::request_head(data);
});
