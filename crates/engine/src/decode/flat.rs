//! The fast path of record decoding: a flat JSON object (the shape nearly
//! every record of a topic with a schema has) scanned by hand into the
//! column slots, without serde's visitor machinery per key and value.
//!
//! It takes only a subset of JSON on which its result is serde_json's by
//! construction, and declines everything else, which then goes through
//! serde_json whole (`RecordDecoder::check`): so the two paths cannot
//! disagree, and every error message comes from serde_json's path.
//!
//! Taken: an object whose keys are column names written without escapes;
//! values that are strings without escapes or control characters, `true`,
//! `false`, `null`, or numbers. Integers of up to 18 digits and decimals
//! of up to 15 digits without an exponent are read here (to the very
//! values serde_json reads, see [`decimal`]); other numbers are handed to
//! serde_json alone (the same parse it would have made in place). Declined: escapes, nested objects or arrays,
//! a key naming no column, anything malformed.

use super::{Got, ValueSeed};
use crate::schema::Column;
use serde::de::{DeserializeSeed, IgnoredAny};

/// Scans `v` into `slots` (one per column; text goes into `scratch`).
/// `false`: declined, and `slots` and `scratch` may hold part of the
/// record (the caller starts again).
pub(super) fn scan(
    v: &[u8],
    columns: &Names,
    reads: Option<&[bool]>,
    slots: &mut [Got],
    scratch: &mut String,
) -> bool {
    scan_object(v, columns, reads, slots, scratch).is_some()
}

/// A topic's column names, and whether each can be matched as the bytes
/// of a JSON key (no `"`, `\\` or control character: a key written with
/// those bytes is then that name and nothing else).
pub(super) struct Names<'t> {
    columns: &'t [Column],
    literal: Vec<bool>,
}

impl<'t> Names<'t> {
    pub(super) fn new(columns: &'t [Column]) -> Names<'t> {
        let literal = columns
            .iter()
            .map(|c| string_stop(c.name.as_bytes(), 0).is_none())
            .collect();
        Names { columns, literal }
    }
}

fn scan_object(
    v: &[u8],
    names: &Names,
    reads: Option<&[bool]>,
    slots: &mut [Got],
    scratch: &mut String,
) -> Option<()> {
    let columns = names.columns;
    let mut c = Cursor { b: v, i: 0 };
    c.ws();
    c.eat(b'{')?;
    c.ws();
    if c.eat(b'}').is_some() {
        return c.end();
    }
    // Records usually name the columns in the schema's order.
    let mut hint = 0;
    loop {
        c.eat(b'"')?;
        // The key the schema's order says comes next, if it is written
        // plainly; else any key, found by name.
        let i = match c.key_named(names, hint) {
            Some(i) => i,
            None => find(columns, c.plain_str()?, hint)?,
        };
        hint = i + 1;
        c.ws();
        c.eat(b':')?;
        c.ws();
        if reads.is_none_or(|r| r[i]) {
            slots[i] = c.value(scratch)?;
        } else {
            c.skip_value()?;
        }
        c.ws();
        match c.next()? {
            b',' => c.ws(),
            b'}' => return c.end(),
            _ => return None,
        }
    }
}

/// The column named `key`, trying `hint` first.
fn find(columns: &[Column], key: &[u8], hint: usize) -> Option<usize> {
    if columns
        .get(hint)
        .is_some_and(|c| same(c.name.as_bytes(), key))
    {
        return Some(hint);
    }
    columns.iter().position(|c| same(c.name.as_bytes(), key))
}

/// `a == b`, for the short strings column names are: two overlapping
/// loads per side instead of a call to `memcmp` (which was a tenth of a
/// record's decoding).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let u32_at = |s: &[u8], i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let u64_at =
        |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("eight bytes"));
    match n {
        0 => true,
        1..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=8 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        9..=16 => u64_at(a, 0) == u64_at(b, 0) && u64_at(a, n - 8) == u64_at(b, n - 8),
        _ => a == b,
    }
}

/// Where the first byte at or after `i` is that a plain string stops at
/// (`"`, `\` or a control character), looked for eight bytes at a time.
/// Each test below flags the lowest matching byte of a word exactly
/// (a borrow only carries upward from a byte that matched), so the
/// lowest flag of the three is the first such byte.
#[inline]
fn string_stop(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(word) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let flags = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        let flags = flags & HIGH;
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| matches!(c, b'"' | b'\\' | 0..0x20))
        .map(|p| i + p)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&want)).then(|| self.i += 1)
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.ws();
        (self.i == self.b.len()).then_some(())
    }

    /// Column `hint`'s name and a closing quote, if they are next (and
    /// the name can be matched as bytes); steps over them.
    #[inline]
    fn key_named(&mut self, names: &Names, hint: usize) -> Option<usize> {
        let name = names.columns.get(hint)?.name.as_bytes();
        let end = self.i + name.len();
        let matched = names.literal[hint]
            && self.b.get(end) == Some(&b'"')
            && same(&self.b[self.i..end], name);
        matched.then(|| {
            self.i = end + 1;
            hint
        })
    }

    /// The rest of a string whose opening quote was eaten, if it has no
    /// escape and no control character (as bytes: not checked as UTF-8).
    fn plain_str(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let stop = string_stop(self.b, start)?;
        if self.b[stop] != b'"' {
            return None;
        }
        self.i = stop + 1;
        Some(&self.b[start..stop])
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// The bytes a number can be made of, from here.
    fn number_extent(&mut self) -> &'a [u8] {
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
        }
        &self.b[start..self.i]
    }

    fn value(&mut self, scratch: &mut String) -> Option<Got> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                let s = std::str::from_utf8(self.plain_str()?).ok()?;
                let a = scratch.len();
                scratch.push_str(s);
                Some(Got::Text(a, scratch.len()))
            }
            b't' => self.literal(b"true").map(|()| Got::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Got::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Got::Null),
            b'-' | b'0'..=b'9' => {
                let n = self.number_extent();
                Some(match integer(n) {
                    Some(i) => Got::Int(i),
                    None if let Some(f) = decimal(n) => Got::Float(f),
                    None => {
                        let mut de = serde_json::Deserializer::from_slice(n);
                        let got = ValueSeed { scratch }.deserialize(&mut de).ok()?;
                        de.end().ok()?;
                        got
                    }
                })
            }
            _ => None,
        }
    }

    /// Steps over a value no column slot wants (still checked as JSON).
    fn skip_value(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                self.plain_str().map(drop)
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => {
                let n = self.number_extent();
                if integer(n).is_none() && decimal(n).is_none() {
                    let mut de = serde_json::Deserializer::from_slice(n);
                    <IgnoredAny as serde::Deserialize>::deserialize(&mut de).ok()?;
                    de.end().ok()?;
                }
                Some(())
            }
            _ => None,
        }
    }
}

/// Exact powers of ten as `f64` (up to 10^22, the last one exact).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number with a fraction and no exponent, of at most 15 digits:
/// its digits as an integer are exact in an `f64` (below 2^53), and so
/// is the power of ten it is divided by, so the one division rounds
/// correctly, which is exactly what serde_json computes (by the same
/// division, or by a correctly rounding parser with `float_roundtrip`).
fn decimal(n: &[u8]) -> Option<f64> {
    let (negative, digits) = match n {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, n),
    };
    let point = digits.iter().position(|&c| c == b'.')?;
    let (whole, fraction) = (&digits[..point], &digits[point + 1..]);
    if whole.is_empty()
        || fraction.is_empty()
        || whole.len() + fraction.len() > 15
        || (whole[0] == b'0' && whole.len() > 1)
    {
        return None;
    }
    let mut v: u64 = 0;
    for &d in whole.iter().chain(fraction) {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
    }
    let f = v as f64 / POW10[fraction.len()];
    Some(if negative { -f } else { f })
}

/// A JSON integer of 1 to 18 digits (so it fits an `i64` either way),
/// without a leading zero; `-0` is left to serde_json.
fn integer(n: &[u8]) -> Option<i64> {
    let (negative, digits) = match n {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, n),
    };
    if digits.is_empty()
        || digits.len() > 18
        || (digits[0] == b'0' && (negative || digits.len() > 1))
    {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::RecordDecoder;
    use crate::schema::{ColumnType, TopicDef};

    fn def() -> TopicDef {
        let col = |name: &str, ty| Column {
            name: name.into(),
            ty,
            not_null: false,
        };
        TopicDef {
            name: "t".into(),
            columns: Some(vec![
                col("account", ColumnType::Text),
                col("amount", ColumnType::Double),
                col("n", ColumnType::BigInt),
                col("ok", ColumnType::Boolean),
                // A name no key can spell plainly.
                col("a\"b", ColumnType::BigInt),
            ]),
            key: None,
            event_time: None,
        }
    }

    /// The slots as comparable text (text resolved, floats by their bits).
    fn shown(slots: &[Got], scratch: &str) -> Vec<String> {
        slots
            .iter()
            .map(|g| match g {
                Got::Text(a, b) => format!("text {:?}", &scratch[*a..*b]),
                Got::Float(f) => format!("float {:x}", f.to_bits()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Pieces records are made of: every JSON value kind, the number forms
    /// serde_json treats apart, escapes, and malformed bits.
    const VALUES: &[&str] = &[
        r#""acct-1""#,
        r#""""#,
        r#""é ü 日本""#,
        r#""a\"b""#,
        r#""a\nb""#,
        r#""\u00e9""#,
        "\"a\tb\"",
        r#""unterminated"#,
        r#""a plain string longer than sixteen bytes""#,
        r#""twelve bytes\"then more text""#,
        "\"nine byte\u{1f}s and on\"",
        "\"seven b\u{7f}\"",
        r#""ééééééééé""#,
        r#""unterminated and longer than a word"#,
        "0",
        "-0",
        "7",
        "-12",
        "123456789012345678",
        "1234567890123456789",
        "-9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
        "12.5",
        "-0.01",
        "1e3",
        "1E-2",
        "2.5e+10",
        "-0.0",
        "1.",
        "01",
        "--1",
        "1e",
        ".5",
        "+1",
        "1.2.3",
        "0.1234567890123456789",
        "1e400",
        "true",
        "false",
        "null",
        "nul",
        "tru",
        "[1,2]",
        "{\"x\":1}",
        "[]",
        "{}",
    ];
    const KEYS: &[&str] = &[
        "\"account\"",
        "\"amount\"",
        "\"n\"",
        "\"ok\"",
        "\"zz\"",
        "\"acc\\u006funt\"",
        "\"amount \"",
        "account",
        "\"accountant\"",
        "\"accoun\"",
        r#""a\"b""#,
        r#""a"b""#,
        // Unterminated: the name's bytes, then not its closing quote.
        "\"account:",
    ];
    const SPACE: &[&str] = &["", "", "", " ", "\n\t ", "\r"];

    /// The word-at-a-time search finds what a byte-at-a-time one finds,
    /// wherever the stop is and whatever surrounds it.
    #[test]
    fn string_stops_are_found_as_byte_by_byte() {
        let mut next = crate::test_rng::seeded();
        let pick: &[u8] = &[
            b'a', b'"', b'\\', 0, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xa0, 0xdc, 0xff,
        ];
        for _ in 0..100_000 {
            let len = next(40) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| match next(8) {
                    0 => pick[next(pick.len() as u64) as usize],
                    _ => b'a' + next(26) as u8,
                })
                .collect();
            let from = next(len as u64 + 1) as usize;
            let slow = text[from..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .map(|p| from + p);
            assert_eq!(string_stop(&text, from), slow, "{text:?} from {from}");
        }
    }

    #[test]
    fn short_names_compare_as_slices() {
        let names: &[&[u8]] = &[
            b"",
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            b"abce",
            b"xbcd",
            b"account",
            b"accounu",
            b"bccount",
            b"accoun",
            b"amount",
            b"amounts",
            b"twelve_chars",
            b"twelve_charz",
            b"zwelve_chars",
            b"sixteen_chars_ab",
            b"sixteen_chars_ac",
            b"seventeen_chars_x",
            b"seventeen_chars_y",
        ];
        for a in names {
            for b in names {
                assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// Decimals read here are the very `f64` serde_json reads, bit for
    /// bit, over random digit strings with the point anywhere.
    #[test]
    fn decimals_are_read_as_serde_json_reads_them() {
        let mut next = crate::test_rng::seeded();
        let mut read = 0;
        for _ in 0..200_000 {
            let digits = 1 + next(17) as usize;
            let mut text: String = (0..digits)
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            let point = next(digits as u64 + 1) as usize;
            text.insert(point, '.');
            if next(2) == 0 {
                text.insert(0, '-');
            }
            let ours = decimal(text.as_bytes());
            let theirs = serde_json::from_str::<f64>(&text).ok();
            match ours {
                Some(f) => {
                    read += 1;
                    let theirs = theirs.unwrap_or_else(|| panic!("{text}: serde_json refuses it"));
                    assert_eq!(
                        f.to_bits(),
                        theirs.to_bits(),
                        "{text}: {f} against {theirs}"
                    );
                }
                // Declined: serde_json's own path will read it.
                None => assert!(digits > 15 || theirs.is_none(), "{text} declined"),
            }
        }
        println!("{read} read here");
        assert!(read > 100_000, "{read}");
    }

    /// Whatever the fast path takes, serde_json's path takes too, into the
    /// same slots; and the fast path takes the common shapes.
    #[test]
    fn takes_only_what_serde_json_reads_the_same() {
        let mut rng = crate::test_rng::seeded();
        let mut next = move |n: usize| rng(n as u64) as usize;
        let def = def();
        let columns = def.columns.as_deref().unwrap();
        let (mut taken, mut plain, mut plain_taken) = (0, 0, 0);
        for case in 0..50_000 {
            // Mostly well-formed objects of plain values; now and then a
            // piece from anywhere, a cut or a trailing byte.
            let wild = next(4) == 0;
            let mut text = String::from(SPACE[next(SPACE.len())]);
            text.push('{');
            let fields = next(6);
            let mut simple = !wild;
            for f in 0..fields {
                if f > 0 {
                    text.push(',');
                }
                text.push_str(SPACE[next(SPACE.len())]);
                let key = if wild {
                    KEYS[next(KEYS.len())]
                } else {
                    KEYS[next(4)]
                };
                let value = if wild {
                    VALUES[next(VALUES.len())]
                } else {
                    VALUES[[0, 1, 2, 8, 12, 14, 16, 17, 23, 24, 38, 39, 40][next(13)]]
                };
                simple &= !value.contains('\\');
                text.push_str(key);
                text.push_str(SPACE[next(SPACE.len())]);
                text.push(':');
                text.push_str(SPACE[next(SPACE.len())]);
                text.push_str(value);
            }
            text.push_str(SPACE[next(SPACE.len())]);
            text.push('}');
            if wild && next(3) == 0 {
                let cut = next(text.len() + 1);
                text.truncate(text.floor_char_boundary(cut));
            }
            if wild && next(4) == 0 {
                text.push([' ', 'x', ',', '}'][next(4)]);
            }
            for reads in [None, Some([false, true, false, true, true])] {
                let mut slots = vec![Got::Missing; columns.len()];
                let mut scratch = String::new();
                let fast = scan(
                    text.as_bytes(),
                    &Names::new(columns),
                    reads.as_ref().map(|r| &r[..]),
                    &mut slots,
                    &mut scratch,
                );
                if simple {
                    plain += 1;
                    plain_taken += usize::from(fast);
                }
                if !fast {
                    continue;
                }
                taken += 1;
                let mut d = RecordDecoder::reading(&def, reads.as_ref().map(|r| &r[..]));
                if let Err(e) = d.parse(text.as_bytes()) {
                    panic!("case {case}: the fast path took {text:?}, serde_json says {e}");
                }
                assert_eq!(
                    shown(&slots, &scratch),
                    shown(&d.slots, &d.scratch),
                    "case {case}: {text:?} (reads {reads:?})"
                );
            }
        }
        println!("taken {taken}; plain records taken {plain_taken} of {plain}");
        assert_eq!(plain_taken, plain, "every plain record takes the fast path");
        assert!(taken > plain, "some wild records take it too");
    }
}
