//! A short, deterministic stand-in for the cargo-fuzz target (which needs
//! nightly): mutate valid frames and chunks and feed them to the decoder.
//! KAPPA_FUZZ_ITERATIONS sets the count; the seed is printed.

use kappa_log_embedded::codec::chunk::ChunkBuilder;
use kappa_log_embedded::codec::frame::FrameHeader;
use kappa_log_embedded::codec::fuzz_decode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn valid_frame(rng: &mut StdRng) -> Vec<u8> {
    let mut frame = vec![0u8; 32];
    let chunks = rng.random_range(1..4);
    for c in 0..chunks {
        let mut b = ChunkBuilder::default();
        for i in 0..rng.random_range(1..5) {
            let key = format!("k{i}");
            let value = "v".repeat(rng.random_range(0..20));
            b.push(i, Some(key.as_bytes()), Some(value.as_bytes()), &[], None);
        }
        frame.extend(b.finish(1, c, 0, 100));
    }
    let h = FrameHeader {
        frame_len: frame.len() as u32,
        first_log_time: 100,
        last_log_time: 110,
        chunk_count: chunks,
    };
    frame[..32].copy_from_slice(&h.encode());
    frame
}

#[test]
fn the_decoder_never_panics_on_mutated_input() {
    let iterations: u64 = std::env::var("KAPPA_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = rand::rng().random();
    println!("fuzz smoke: {iterations} iterations, seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..iterations {
        let mut data = valid_frame(&mut rng);
        if rng.random_bool(0.5) {
            data.extend(valid_frame(&mut rng));
        }
        for _ in 0..rng.random_range(0..4) {
            if data.is_empty() {
                break;
            }
            match rng.random_range(0..4) {
                0 => {
                    let i = rng.random_range(0..data.len());
                    data[i] ^= 1 << rng.random_range(0..8);
                }
                1 => data.truncate(rng.random_range(0..data.len())),
                2 => {
                    let i = rng.random_range(0..data.len());
                    data[i] = rng.random();
                }
                _ => data.extend((0..rng.random_range(0..40)).map(|_| rng.random::<u8>())),
            }
        }
        fuzz_decode(&data);
        if data.len() > 32 {
            fuzz_decode(&data[32..]);
        }
    }
}
