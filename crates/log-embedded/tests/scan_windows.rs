//! A segment scanned a window at a time (as the log scans at open) gives
//! exactly what a scan of the whole segment gives: the same chunks and
//! end, or the same error, for windows smaller and larger than its
//! frames, on the segment whole, cut anywhere, and with a byte damaged
//! anywhere.

mod common;

use common::{append, options, rec, topic};
use kappa_log_embedded::EmbeddedLog;
use kappa_log_embedded::segment::scan::{scan, scan_windows};

/// A real segment: appends of one to five records of 1 to 1,500 bytes
/// to a 3-partition topic (frames of a few bytes to a few KiB).
fn segment_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), options()).unwrap();
    topic(&log, "t", 3);
    for i in 0..40usize {
        let value = "x".repeat((i * 379) % 1500 + 1);
        let records = (0..i % 5 + 1)
            .map(|k| rec("t", &format!("k{k}"), &value))
            .collect();
        append(&log, records);
    }
    drop(log);
    let mut segments: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "kseg"))
        .collect();
    assert_eq!(segments.len(), 1, "one segment: {segments:?}");
    std::fs::read(segments.pop().unwrap()).unwrap()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The scan in windows, and the most bytes it read at once.
fn by_windows(bytes: &[u8], window: usize, torn: bool) -> (String, usize) {
    let mut most = 0;
    let read = |buf: &mut [u8], at: u64| -> Result<(), String> {
        let at = at as usize;
        let from = bytes
            .get(at..at + buf.len())
            .ok_or_else(|| format!("a read past the end: {} at {at}", buf.len()))?;
        buf.copy_from_slice(from);
        most = most.max(buf.len());
        Ok(())
    };
    let got =
        scan_windows(bytes.len() as u64, window, read, 0, torn).expect("reads in the segment");
    (format!("{got:?}"), most)
}

fn whole(bytes: &[u8], torn: bool) -> String {
    format!("{:?}", scan(bytes, 0, torn))
}

#[test]
fn a_segment_scanned_in_windows_scans_as_a_whole() {
    let bytes = segment_bytes();
    assert!(bytes.len() > 50_000, "{} bytes", bytes.len());
    let clean = whole(&bytes, true);
    assert!(clean.contains("Clean"), "{clean}");
    let mut damaged: Vec<Vec<u8>> = (0..bytes.len())
        .step_by(997)
        .map(|cut| bytes[..cut].to_vec())
        .collect();
    damaged.extend((5..bytes.len()).step_by(1499).map(|at| {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x20;
        flipped
    }));
    for window in [1, 40, 100, 1000, 4096, bytes.len()] {
        let (got, most) = by_windows(&bytes, window, true);
        assert_eq!(got, clean, "window {window}");
        // One window at a time, or one frame (at most five records of
        // 1,500 bytes), never the whole segment.
        assert!(
            most <= window.max(16 << 10),
            "window {window}: read {most} bytes at once"
        );
        for b in &damaged {
            for torn in [true, false] {
                assert_eq!(
                    by_windows(b, window, torn).0,
                    whole(b, torn),
                    "window {window}, {} bytes, tail may be torn: {torn}",
                    b.len()
                );
            }
        }
    }
}
