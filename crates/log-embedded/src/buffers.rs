//! Read buffers kept for the next read of a merged reader (a catch-up's
//! reading): a replay reads a few megabytes per batch, and a fresh buffer
//! each time was zeroed and then faulted in a page at a time (15% of a 1M
//! replay's page faults, docs/benchmarks.md, session 21). A buffer comes
//! back once the last record read into it is dropped.

use bytes::Bytes;
use std::sync::{Arc, Mutex, Weak};

/// Buffers kept: a replay holds two at a time (one batch being decoded,
/// the next one read), and reuses them in turn.
const KEPT: usize = 2;

/// A new buffer has room for a read this part longer (a quarter), so
/// that the next batch's read, a little longer or shorter, fits it.
const HEADROOM: usize = 4;

/// Reads smaller than this (a live step's) take a fresh buffer: not worth
/// keeping one for.
const POOLED_FROM: usize = 64 << 10;

#[derive(Debug, Default)]
pub struct ReadBuffers {
    free: Mutex<Vec<Vec<u8>>>,
}

impl ReadBuffers {
    pub fn new() -> Arc<ReadBuffers> {
        Arc::new(ReadBuffers::default())
    }

    /// A buffer of `len` bytes, filled by `fill`, as `Bytes` that give
    /// the buffer back when the last of them is dropped. Its bytes are
    /// whatever a read left in it until `fill` writes them.
    pub fn fill<E>(
        self: &Arc<Self>,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        if len < POOLED_FROM {
            let mut buf = vec![0u8; len];
            fill(&mut buf)?;
            return Ok(Bytes::from(buf));
        }
        let mut buf = self.take(len);
        fill(&mut buf)?;
        Ok(Bytes::from_owner(Kept {
            buf,
            home: Arc::downgrade(self),
        }))
    }

    /// A kept buffer that fits `len` without holding much more than it
    /// (a big buffer is not kept alive for a small read), else a new one.
    fn take(&self, len: usize) -> Vec<u8> {
        let kept = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let fits = free
                .iter()
                .position(|b| b.capacity() >= len && b.capacity() / 2 <= len);
            fits.map(|i| free.swap_remove(i))
        };
        match kept {
            Some(mut buf) => {
                // Only bytes past what the last read filled are zeroed.
                if buf.len() >= len {
                    buf.truncate(len);
                } else {
                    buf.resize(len, 0);
                }
                buf
            }
            None => {
                // Room for a somewhat longer read next time: batches vary.
                let mut buf = Vec::with_capacity(len + len / HEADROOM);
                buf.resize(len, 0);
                buf
            }
        }
    }

    /// Keeps `buf`, in place of the buffer given back longest ago when
    /// `KEPT` are kept already (the latest reads' sizes are the likeliest
    /// next).
    fn give_back(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() >= KEPT {
            free.remove(0);
        }
        free.push(buf);
    }

    /// Buffers kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A buffer lent out as `Bytes`; dropped with the last of them.
struct Kept {
    buf: Vec<u8>,
    home: Weak<ReadBuffers>,
}

impl AsRef<[u8]> for Kept {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_with(
        buffers: &Arc<ReadBuffers>,
        len: usize,
        byte: u8,
    ) -> Result<Bytes, std::convert::Infallible> {
        buffers.fill(len, |b| {
            b.fill(byte);
            Ok(())
        })
    }

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let buffers = ReadBuffers::new();
        let a = fill_with(&buffers, 100_000, 1).unwrap();
        let slice = a.slice(10..20);
        drop(a);
        assert_eq!(buffers.kept(), 0, "a slice still holds it");
        assert_eq!(&slice[..], &[1u8; 10]);
        drop(slice);
        assert_eq!(buffers.kept(), 1);
        // Reused: the next read gets its own bytes, of its own length.
        let b = fill_with(&buffers, 90_000, 2).unwrap();
        assert_eq!(buffers.kept(), 0);
        assert_eq!(b.len(), 90_000);
        assert!(b.iter().all(|&x| x == 2));
        drop(b);
        // Grown again past what was filled.
        let c = fill_with(&buffers, 120_000, 3).unwrap();
        assert_eq!(c.len(), 120_000);
        assert!(c.iter().all(|&x| x == 3));
    }

    #[test]
    fn small_reads_and_misfits_take_new_buffers() {
        let buffers = ReadBuffers::new();
        drop(fill_with(&buffers, 1_000, 1).unwrap());
        assert_eq!(buffers.kept(), 0, "a small read is not kept");
        drop(fill_with(&buffers, 1 << 20, 1).unwrap());
        assert_eq!(buffers.kept(), 1);
        // Far smaller than the kept one: a new buffer, the big one stays.
        drop(fill_with(&buffers, 100_000, 1).unwrap());
        assert_eq!(buffers.kept(), 2);
        // At most KEPT are kept, the latest given back.
        let held: Vec<_> = (0..4)
            .map(|_| fill_with(&buffers, 200_000, 1).unwrap())
            .collect();
        drop(held);
        assert_eq!(buffers.kept(), KEPT);
        let again = fill_with(&buffers, 200_000, 1).unwrap();
        assert_eq!(buffers.kept(), KEPT - 1, "a 200 KB buffer was kept");
        drop(again);
    }

    #[test]
    fn a_failed_fill_returns_the_error() {
        let buffers = ReadBuffers::new();
        let got = buffers.fill(100_000, |_| Err("disk"));
        assert_eq!(got.err(), Some("disk"));
    }

    #[test]
    fn buffers_outliving_their_reader_are_freed() {
        let buffers = ReadBuffers::new();
        let a = fill_with(&buffers, 100_000, 1).unwrap();
        drop(buffers);
        assert_eq!(a.len(), 100_000);
        drop(a);
    }
}
