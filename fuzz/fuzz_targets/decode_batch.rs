//! Fuzzes the batch decoder: frames, chunks and records from arbitrary bytes.
//! `cargo install cargo-fuzz && cargo +nightly fuzz run decode_batch`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kappa_log_embedded::codec::fuzz_decode(data);
});
