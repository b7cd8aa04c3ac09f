//! Upserts and deletes by key, all in one buffer: a commit of a million
//! rows is two allocations, not two million.

/// Where one entry's key and value are in [`Puts`]' buffer.
#[derive(Clone, Copy, Debug)]
struct Entry {
    key: (usize, usize),
    /// `None`: a deletion.
    value: Option<(usize, usize)>,
}

/// A key's first 16 bytes, padded, as a big-endian number: two keys'
/// heads compare as the keys do, or are equal. Sorting by the head first
/// reads only the array being sorted for most comparisons, not keys all
/// over a buffer.
pub fn key_head(key: &[u8]) -> u128 {
    let mut head = [0u8; 16];
    let n = key.len().min(16);
    head[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(head)
}

/// Writes an entry's value at the end of the buffer.
pub type WriteValue<'a> = dyn Fn(&mut Vec<u8>) + 'a;

/// Keyed upserts (`Some`) and deletes (`None`).
#[derive(Clone, Debug, Default)]
pub struct Puts {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl Puts {
    /// Entries over a buffer the caller filled: each is (start, len) of
    /// its key, and of its value unless it is a deletion. The buffer is
    /// taken as it is (no copy); get it back with [`Puts::into_bytes`].
    pub fn over(
        bytes: Vec<u8>,
        entries: impl IntoIterator<Item = ((usize, usize), Option<(usize, usize)>)>,
    ) -> Puts {
        let entries = entries
            .into_iter()
            .map(|(key, value)| {
                assert!(key.0 + key.1 <= bytes.len(), "key span inside the buffer");
                if let Some(v) = value {
                    assert!(v.0 + v.1 <= bytes.len(), "value span inside the buffer");
                }
                Entry { key, value }
            })
            .collect();
        Puts { bytes, entries }
    }

    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let key = self.append(key);
        let value = value.map(|v| self.append(v));
        self.entries.push(Entry { key, value });
    }

    /// Appends an entry whose key is `key_parts` one after another and
    /// whose value `value` writes (or a deletion).
    pub fn push_with(&mut self, key_parts: &[&[u8]], value: Option<&WriteValue>) {
        let start = self.bytes.len();
        for p in key_parts {
            self.bytes.extend_from_slice(p);
        }
        let key = (start, self.bytes.len() - start);
        let value = value.map(|write| {
            let start = self.bytes.len();
            write(&mut self.bytes);
            (start, self.bytes.len() - start)
        });
        self.entries.push(Entry { key, value });
    }

    fn append(&mut self, b: &[u8]) -> (usize, usize) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(b);
        (start, b.len())
    }

    fn slice(&self, (start, len): (usize, usize)) -> &[u8] {
        &self.bytes[start..start + len]
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Heap bytes held (capacity, not length).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in their current order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.entries
            .iter()
            .map(|e| (self.slice(e.key), e.value.map(|v| self.slice(v))))
    }

    /// Orders the entries by key (stable: of equal keys, the last pushed
    /// stays last, and wins when applied in order).
    ///
    /// Sorted as (first 16 bytes of the key, padded, big-endian; then the
    /// whole key; then the entry's place), so that most comparisons read
    /// only the array being sorted and not keys all over the buffer.
    pub fn sort_by_key(&mut self) {
        let key = |e: &Entry| &self.bytes[e.key.0..e.key.0 + e.key.1];
        if self.entries.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
            return;
        }
        let mut order: Vec<(u128, u32)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (key_head(key(e)), i as u32))
            .collect();
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| {
                    key(&self.entries[a.1 as usize]).cmp(key(&self.entries[b.1 as usize]))
                })
                .then(a.1.cmp(&b.1))
        });
        self.entries = order
            .iter()
            .map(|&(_, i)| self.entries[i as usize])
            .collect();
    }

    /// Moves every entry of `other` to the end of this one.
    pub fn append_puts(&mut self, other: &Puts) {
        for (k, v) in other.iter() {
            self.push(k, v);
        }
    }

    /// The buffer, emptied, to be used again.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut b = self.bytes;
        b.clear();
        b
    }
}

impl From<Vec<(Vec<u8>, Option<Vec<u8>>)>> for Puts {
    fn from(puts: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Puts {
        let mut out = Puts::default();
        for (k, v) in &puts {
            out.push(k, v.as_deref());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_their_bytes_and_sort_by_key() {
        let mut p = Puts::default();
        p.push(b"b", Some(b"2"));
        p.push(b"a", None);
        p.push_with(
            &[b"a", b"b"],
            Some(&|out: &mut Vec<u8>| out.extend_from_slice(b"xy")),
        );
        p.push(b"b", Some(b"3"));
        // Keys alike in their first 16 bytes, and a key that is another
        // one padded with zeros.
        p.push(b"0123456789abcdefZ", Some(b"z"));
        p.push(b"0123456789abcdefA", Some(b"a"));
        p.push(b"0123456789abcdef", Some(b"-"));
        p.push(b"a\0", Some(b"0"));
        p.sort_by_key();
        let got: Vec<_> = p
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"0123456789abcdef".to_vec(), Some(b"-".to_vec())),
                (b"0123456789abcdefA".to_vec(), Some(b"a".to_vec())),
                (b"0123456789abcdefZ".to_vec(), Some(b"z".to_vec())),
                (b"a".to_vec(), None),
                (b"a\0".to_vec(), Some(b"0".to_vec())),
                (b"ab".to_vec(), Some(b"xy".to_vec())),
                (b"b".to_vec(), Some(b"2".to_vec())),
                (b"b".to_vec(), Some(b"3".to_vec())),
            ]
        );
        let over = Puts::over(b"kv".to_vec(), [((0, 1), Some((1, 1))), ((1, 1), None)]);
        let got: Vec<_> = over.iter().collect();
        assert_eq!(got, vec![(&b"k"[..], Some(&b"v"[..])), (&b"v"[..], None)]);
    }
}
