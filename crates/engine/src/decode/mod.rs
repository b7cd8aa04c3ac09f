//! Topic records to Arrow columns, checked against the topic's schema in
//! the same pass. One set of rules serves appends (a record that does not
//! fit fails its batch) and views (a record in the log that does not fit,
//! possible only when it was appended around the engine, is a dead
//! letter).
//!
//! Each record is parsed once by serde_json, straight into per-column
//! slots (no `serde_json::Value` tree), checked, then appended to the
//! column builders, so a rejected record leaves no partial row behind.

mod flat;

use crate::schema::{ColumnType, TopicDef, parse_timestamp};
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Float64Builder, Int64Array, Int64Builder,
    StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
    UInt32Array, UInt32Builder, UInt64Array, UInt64Builder, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::record_batch::RecordBatch;
use kappa_log::{LogTime, Record, RecordColumns};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::sync::Arc;

/// Why one record does not fit its topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field {field:?}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// What a checked record contributes besides its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub key: Option<String>,
    pub event_time: Option<i64>,
}

/// One JSON value as parsed, before its column's type is applied.
#[derive(Clone, Debug)]
enum Got {
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    /// Above `i64::MAX`.
    BigUint(u64),
    Float(f64),
    /// A range of the decoder's text scratch.
    Text(usize, usize),
    Array,
    Object,
}

enum Builder {
    Text(StringBuilder),
    BigInt(Int64Builder),
    Double(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

/// Decodes the records of one topic into its table form.
pub struct RecordDecoder<'t> {
    def: &'t TopicDef,
    /// For a view: the columns it reads (the others are left null and not
    /// checked: appends through the engine check every column, and a
    /// record that reached the log another way is a dead letter only for
    /// views that read a column it does not fit), and no [`Checked`] is
    /// made. `None`: every column, checked. Past the topic's columns, the
    /// flags of its meta columns (`_partition` ...).
    reads: Option<Vec<bool>>,
    /// The topic's columns read, in order (all of them when `reads` is
    /// `None`): the per-record loops visit only these.
    read_columns: Vec<usize>,
    /// Whether `_key` is read (or else left null).
    reads_key: bool,
    /// Records appended.
    rows: usize,
    /// The columns' names, for the fast path.
    names: flat::Names<'t>,
    slots: Vec<Got>,
    scratch: String,
    builders: Vec<Builder>,
    payload: StringBuilder,
    partition: UInt32Builder,
    offset: UInt64Builder,
    log_time: TimestampMicrosecondBuilder,
    key: StringBuilder,
}

impl<'t> RecordDecoder<'t> {
    pub fn new(def: &'t TopicDef) -> RecordDecoder<'t> {
        RecordDecoder::with_capacity(def, None, 0)
    }

    /// A decoder for a view that reads only the columns marked in `reads`
    /// (`None`: all, checked).
    pub fn reading(def: &'t TopicDef, reads: Option<&[bool]>) -> RecordDecoder<'t> {
        RecordDecoder::with_capacity(def, reads, 0)
    }

    /// [`RecordDecoder::reading`], its builders sized for `rows` records
    /// (a replay's batches are tens of thousands: grown from the default,
    /// each column was copied a dozen times over).
    pub fn with_capacity(
        def: &'t TopicDef,
        reads: Option<&[bool]>,
        rows: usize,
    ) -> RecordDecoder<'t> {
        let columns = def.columns.as_deref().unwrap_or_default();
        let read = |i: usize| reads_column(reads, i);
        let reads_key = read(columns.len() + 3);
        // Bytes of text a read column is given at first; it grows past it.
        const TEXT_BYTES: usize = 16;
        let text = |n: usize, read: bool| {
            StringBuilder::with_capacity(n, if read { n * TEXT_BYTES } else { 0 })
        };
        let n = rows;
        RecordDecoder {
            def,
            reads: reads.map(<[bool]>::to_vec),
            read_columns: (0..columns.len()).filter(|&i| read(i)).collect(),
            reads_key,
            rows: 0,
            names: flat::Names::new(columns),
            slots: vec![Got::Missing; columns.len()],
            scratch: String::new(),
            builders: columns
                .iter()
                .enumerate()
                .map(|(i, c)| match c.ty {
                    ColumnType::Text => Builder::Text(text(n, read(i))),
                    ColumnType::BigInt => Builder::BigInt(Int64Builder::with_capacity(n)),
                    ColumnType::Double => Builder::Double(Float64Builder::with_capacity(n)),
                    ColumnType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(n)),
                    ColumnType::Timestamp => {
                        Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(n))
                    }
                })
                .collect(),
            payload: text(if def.columns.is_none() { n } else { 0 }, true),
            partition: UInt32Builder::with_capacity(n),
            offset: UInt64Builder::with_capacity(n),
            log_time: TimestampMicrosecondBuilder::with_capacity(n),
            key: text(n, reads_key),
        }
    }

    /// Parses and checks one value; on success it is held until
    /// [`RecordDecoder::append`] (or the next `check`).
    pub fn check(&mut self, value: &[u8]) -> Result<Checked, Rejection> {
        let bad = |field: Option<&str>, reason: String| Rejection {
            field: field.map(str::to_string),
            reason,
        };
        let def = self.def;
        let Some(columns) = def.columns.as_deref() else {
            // A raw topic takes any JSON value.
            let mut de = serde_json::Deserializer::from_slice(value);
            <IgnoredAny as serde::Deserialize>::deserialize(&mut de)
                .and_then(|_| de.end())
                .map_err(|e| bad(None, format!("not valid JSON: {e}")))?;
            return Ok(Checked::default());
        };
        // Only read columns' slots are ever filled.
        for &i in &self.read_columns {
            self.slots[i] = Got::Missing;
        }
        self.scratch.clear();
        let reads = self.reads.as_deref();
        if !flat::scan(
            value,
            &self.names,
            reads,
            &mut self.slots,
            &mut self.scratch,
        ) {
            self.parse(value)?;
        }
        self.typed(columns)
    }

    /// The record through serde_json, for what [`flat::scan`] declines.
    fn parse(&mut self, value: &[u8]) -> Result<(), Rejection> {
        let columns = self.def.columns.as_deref().unwrap_or_default();
        let bad = |field: Option<&str>, reason: String| Rejection {
            field: field.map(str::to_string),
            reason,
        };
        for s in &mut self.slots {
            *s = Got::Missing;
        }
        self.scratch.clear();
        let mut unknown = None;
        let mut top = None;
        let parsed = {
            let mut de = serde_json::Deserializer::from_slice(value);
            let visitor = RecordVisitor {
                def: self.def,
                reads: self.reads.as_deref(),
                slots: &mut self.slots,
                scratch: &mut self.scratch,
                unknown: &mut unknown,
                top: &mut top,
            };
            de.deserialize_any(visitor).and_then(|_| de.end())
        };
        if let Some(name) = unknown {
            return Err(bad(
                Some(&name),
                format!(
                    "the topic has no column {name:?} (its columns: {})",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(kind) = top {
            return Err(bad(None, format!("expected a JSON object, got {kind}")));
        }
        parsed.map_err(|e| bad(None, format!("not valid JSON: {e}")))
    }

    /// The slots checked against their columns' types.
    fn typed(&mut self, columns: &'t [crate::schema::Column]) -> Result<Checked, Rejection> {
        let bad = |field: Option<&str>, reason: String| Rejection {
            field: field.map(str::to_string),
            reason,
        };
        let mut checked = Checked::default();
        let reads = self.reads.as_deref();
        for &i in &self.read_columns {
            let (c, got) = (&columns[i], &mut self.slots[i]);
            if matches!(got, Got::Missing | Got::Null) {
                if c.not_null {
                    return Err(bad(Some(&c.name), "is NOT NULL but missing or null".into()));
                }
                continue;
            }
            let ok = match (c.ty, &*got) {
                (ColumnType::Text, Got::Text(..)) => true,
                (ColumnType::BigInt, Got::Int(_)) => true,
                (ColumnType::Double, Got::Int(i)) => {
                    *got = Got::Float(*i as f64);
                    true
                }
                (ColumnType::Double, Got::BigUint(u)) => {
                    *got = Got::Float(*u as f64);
                    true
                }
                (ColumnType::Double, Got::Float(_)) => true,
                (ColumnType::Boolean, Got::Bool(_)) => true,
                (ColumnType::Timestamp, Got::Text(a, b)) => {
                    match parse_timestamp(&self.scratch[*a..*b]) {
                        Some(micros) => {
                            if reads.is_some() {
                                *got = Got::Int(micros);
                                continue;
                            }
                            if self.def.event_time.as_deref() == Some(c.name.as_str()) {
                                checked.event_time = Some(micros);
                            }
                            if self.def.key.as_deref() == Some(c.name.as_str()) {
                                checked.key = Some(self.scratch[*a..*b].to_string());
                            }
                            *got = Got::Int(micros);
                            continue;
                        }
                        None => false,
                    }
                }
                _ => false,
            };
            if !ok {
                return Err(bad(
                    Some(&c.name),
                    format!(
                        "expected {}, got {}",
                        c.ty.sql_name(),
                        describe(got, &self.scratch)
                    ),
                ));
            }
            if reads.is_none() && self.def.key.as_deref() == Some(c.name.as_str()) {
                checked.key = Some(match &*got {
                    Got::Text(a, b) => self.scratch[*a..*b].to_string(),
                    Got::Int(i) => i.to_string(),
                    Got::Float(f) => json_number(*f),
                    Got::Bool(b) => b.to_string(),
                    _ => String::new(),
                });
            }
        }
        Ok(checked)
    }

    /// Appends the record last checked, with its position in the log.
    pub fn append(&mut self, value: &[u8], r: Position<'_>) {
        self.rows += 1;
        if self.def.columns.is_none() {
            self.payload
                .append_value(std::str::from_utf8(value).unwrap_or_default());
        }
        let columns = self.def.columns.as_deref().unwrap_or_default();
        let reads = self.reads.as_deref();
        for &i in &self.read_columns {
            match (&mut self.builders[i], &self.slots[i]) {
                (Builder::Text(b), Got::Text(x, y)) => b.append_value(&self.scratch[*x..*y]),
                (Builder::BigInt(b), Got::Int(v)) => b.append_value(*v),
                (Builder::Double(b), Got::Float(v)) => b.append_value(*v),
                (Builder::Boolean(b), Got::Bool(v)) => b.append_value(*v),
                (Builder::Timestamp(b), Got::Int(v)) => b.append_value(*v),
                (Builder::Text(b), _) => b.append_null(),
                (Builder::BigInt(b), _) => b.append_null(),
                (Builder::Double(b), _) => b.append_null(),
                (Builder::Boolean(b), _) => b.append_null(),
                (Builder::Timestamp(b), _) => b.append_null(),
            }
        }
        let meta = columns.len();
        if reads_column(reads, meta) {
            self.partition.append_value(r.partition);
        }
        if reads_column(reads, meta + 1) {
            self.offset.append_value(r.offset);
        }
        self.log_time.append_value(r.log_time.0 as i64);
        if self.reads_key {
            match r.key {
                Some(k) => self.key.append_value(String::from_utf8_lossy(k)),
                None => self.key.append_null(),
            }
        }
    }

    /// The records appended so far, as one batch of the topic's table. A
    /// column not read is all nulls, or, NOT NULL, any value of its type
    /// (a checked record has it; the view does not look).
    pub fn finish(mut self) -> RecordBatch {
        let n = self.rows;
        let schema = self.def.arrow_schema();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        if self.def.columns.is_none() {
            arrays.push(Arc::new(self.payload.finish()));
        }
        let columns = self.def.columns.as_deref().unwrap_or_default();
        let reads = self.reads.as_deref();
        let unread = |i: usize| !reads_column(reads, i);
        let filler = |field: &Field| -> ArrayRef {
            if field.is_nullable() {
                return new_null_array(field.data_type(), n);
            }
            let zeros = || vec![0; n];
            match field.data_type() {
                DataType::Utf8 => {
                    Arc::new(StringArray::from_iter_values(std::iter::repeat_n("", n)))
                }
                DataType::Int64 => Arc::new(Int64Array::from(zeros())),
                DataType::UInt32 => Arc::new(UInt32Array::from(vec![0u32; n])),
                DataType::UInt64 => Arc::new(UInt64Array::from(vec![0u64; n])),
                DataType::Float64 => Arc::new(Float64Array::from(vec![0.0; n])),
                DataType::Boolean => Arc::new(BooleanArray::from(vec![false; n])),
                DataType::Timestamp(..) => Arc::new(TimestampMicrosecondArray::from(zeros())),
                other => unreachable!("no column of the topic table is {other}"),
            }
        };
        let first = usize::from(self.def.columns.is_none());
        for (i, b) in self.builders.iter_mut().enumerate() {
            if unread(i) {
                arrays.push(filler(schema.field(first + i)));
                continue;
            }
            arrays.push(match b {
                Builder::Text(b) => Arc::new(b.finish()),
                Builder::BigInt(b) => Arc::new(b.finish()),
                Builder::Double(b) => Arc::new(b.finish()),
                Builder::Boolean(b) => Arc::new(b.finish()),
                Builder::Timestamp(b) => Arc::new(b.finish()),
            });
        }
        let meta = first + columns.len();
        let m = columns.len();
        arrays.push(if unread(m) {
            filler(schema.field(meta))
        } else {
            Arc::new(self.partition.finish())
        });
        arrays.push(if unread(m + 1) {
            filler(schema.field(meta + 1))
        } else {
            Arc::new(self.offset.finish())
        });
        arrays.push(Arc::new(self.log_time.finish()));
        arrays.push(if self.reads_key {
            Arc::new(self.key.finish())
        } else {
            filler(schema.field(meta + 3))
        });
        RecordBatch::try_new(schema, arrays).expect("the builders follow the topic's schema")
    }
}

/// Whether column `i` of the topic's table (past the topic's columns, its
/// meta columns) is read by a decoder reading `reads`: the others are not
/// built row by row, but made whole by [`RecordDecoder::finish`].
fn reads_column(reads: Option<&[bool]>, i: usize) -> bool {
    reads.is_none_or(|r| r.get(i).copied().unwrap_or(true))
}

/// Records as one batch of the topic's table; those that do not fit are
/// left out and returned with their index and why.
pub fn decode_records(
    def: &TopicDef,
    records: &[Record],
) -> (RecordBatch, Vec<(usize, Rejection)>) {
    decode_reading(def, records, None)
}

/// The same for a view that reads only the columns marked in `reads`
/// ([`RecordDecoder::reading`]).
pub fn decode_reading(
    def: &TopicDef,
    records: &[Record],
    reads: Option<&[bool]>,
) -> (RecordBatch, Vec<(usize, Rejection)>) {
    decode_each(
        def,
        reads,
        records.iter().map(|r| {
            let at = Position {
                partition: r.partition,
                offset: r.offset,
                log_time: r.log_time,
                key: r.key.as_deref(),
            };
            (r.value.as_deref(), at)
        }),
    )
}

/// [`decode_reading`] for records read as columns.
pub fn decode_columns(
    def: &TopicDef,
    records: &RecordColumns,
    reads: Option<&[bool]>,
) -> (RecordBatch, Vec<(usize, Rejection)>) {
    decode_each(
        def,
        reads,
        records.entries().iter().map(|e| {
            let at = Position {
                partition: e.partition,
                offset: e.offset,
                log_time: e.log_time,
                key: records.key(e),
            };
            (records.value(e), at)
        }),
    )
}

/// A record's place in the log, and its key: what a decoded row carries
/// beside the record's columns.
#[derive(Clone, Copy)]
pub struct Position<'a> {
    pub partition: u32,
    pub offset: u64,
    pub log_time: LogTime,
    pub key: Option<&'a [u8]>,
}

fn decode_each<'a>(
    def: &TopicDef,
    reads: Option<&[bool]>,
    records: impl Iterator<Item = (Option<&'a [u8]>, Position<'a>)>,
) -> (RecordBatch, Vec<(usize, Rejection)>) {
    let mut d = RecordDecoder::with_capacity(def, reads, records.size_hint().0);
    let mut rejected = Vec::new();
    for (i, (value, at)) in records.enumerate() {
        let value = value.unwrap_or(b"null");
        match d.check(value) {
            Ok(_) => d.append(value, at),
            Err(why) => rejected.push((i, why)),
        }
    }
    (d.finish(), rejected)
}

fn json_number(f: f64) -> String {
    serde_json::Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string())
}

fn describe(got: &Got, scratch: &str) -> String {
    match got {
        Got::Missing | Got::Null => "null".into(),
        Got::Bool(b) => format!("boolean {b}"),
        Got::Int(i) => format!("number {i}"),
        Got::BigUint(u) => format!("number {u}"),
        Got::Float(f) => format!("number {}", json_number(*f)),
        Got::Text(a, b) => {
            let s = &scratch[*a..*b];
            if s.len() > 40 {
                format!("text {:?}...", &s[..s.floor_char_boundary(40)])
            } else {
                format!("text {s:?}")
            }
        }
        Got::Array => "an array".into(),
        Got::Object => "an object".into(),
    }
}

/// The top level of a record: an object whose keys are columns.
struct RecordVisitor<'a> {
    def: &'a TopicDef,
    /// Columns whose values are wanted (`None`: all); the others are
    /// skipped unparsed into values.
    reads: Option<&'a [bool]>,
    slots: &'a mut Vec<Got>,
    scratch: &'a mut String,
    /// Set when a key names no column (parsing stops there).
    unknown: &'a mut Option<String>,
    /// Set when the record is not an object: what it is.
    top: &'a mut Option<String>,
}

impl RecordVisitor<'_> {
    fn not_object<E: de::Error>(self, got: Got) -> Result<(), E> {
        *self.top = Some(describe(&got, self.scratch));
        Err(E::custom("not an object"))
    }
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let columns = self.def.columns.as_deref().unwrap_or_default();
        while let Some(i) = map.next_key_seed(KeySeed {
            columns,
            unknown: self.unknown,
        })? {
            if self.reads.is_some_and(|r| !r[i]) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let got = map.next_value_seed(ValueSeed {
                scratch: self.scratch,
            })?;
            self.slots[i] = got;
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.not_object(Got::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.not_object(Got::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.not_object(i64::try_from(v).map_or(Got::BigUint(v), Got::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.not_object(Got::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let a = self.scratch.len();
        self.scratch.push_str(v);
        let b = self.scratch.len();
        self.not_object(Got::Text(a, b))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_object(Got::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_object(Got::Array)
    }
}

/// An object key: the index of the column it names.
struct KeySeed<'a> {
    columns: &'a [crate::schema::Column],
    unknown: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        match self.columns.iter().position(|c| c.name == v) {
            Some(i) => Ok(i),
            None => {
                *self.unknown = Some(v.to_string());
                Err(E::custom("unknown column"))
            }
        }
    }
}

/// A field's value, whatever its JSON type.
struct ValueSeed<'a> {
    scratch: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Got;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Got, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Got;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Got, E> {
        Ok(Got::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Got, E> {
        Ok(Got::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Got, E> {
        Ok(i64::try_from(v).map_or(Got::BigUint(v), Got::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Got, E> {
        Ok(Got::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Got, E> {
        let a = self.scratch.len();
        self.scratch.push_str(v);
        Ok(Got::Text(a, self.scratch.len()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Got, E> {
        Ok(Got::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Got, E> {
        Ok(Got::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Got, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Got::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Got, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Got::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Column;

    fn def() -> TopicDef {
        let col = |name: &str, ty, not_null| Column {
            name: name.into(),
            ty,
            not_null,
        };
        TopicDef {
            name: "t".into(),
            columns: Some(vec![
                col("account", ColumnType::Text, true),
                col("amount", ColumnType::Double, false),
                col("n", ColumnType::BigInt, false),
                col("ok", ColumnType::Boolean, false),
                col("ts", ColumnType::Timestamp, false),
            ]),
            key: Some("account".into()),
            event_time: Some("ts".into()),
        }
    }

    #[test]
    fn checks_each_rule_and_names_the_field() {
        let def = def();
        let mut d = RecordDecoder::new(&def);
        let ok = d
            .check(br#"{"account":"a\"1","amount":3,"n":-2,"ok":true,"ts":"2026-01-01T00:00:01Z"}"#)
            .unwrap();
        assert_eq!(ok.key.as_deref(), Some("a\"1"));
        assert_eq!(ok.event_time, Some(1_767_225_601_000_000));
        let cases: &[(&[u8], Option<&str>, &str)] = &[
            (b"[1]", None, "expected a JSON object, got an array"),
            (b"12", None, "expected a JSON object, got number 12"),
            (b"{\"account\":", None, "not valid JSON"),
            (b"{\"account\":\"a\"} x", None, "not valid JSON"),
            (
                br#"{"account":"a","zz":1}"#,
                Some("zz"),
                "has no column \"zz\"",
            ),
            (br#"{"amount":1}"#, Some("account"), "NOT NULL"),
            (br#"{"account":null}"#, Some("account"), "NOT NULL"),
            (
                br#"{"account":1}"#,
                Some("account"),
                "expected TEXT, got number 1",
            ),
            (
                br#"{"account":"a","n":1.5}"#,
                Some("n"),
                "expected BIGINT, got number 1.5",
            ),
            (
                br#"{"account":"a","n":18446744073709551615}"#,
                Some("n"),
                "expected BIGINT",
            ),
            (
                br#"{"account":"a","amount":"1"}"#,
                Some("amount"),
                "expected DOUBLE, got text \"1\"",
            ),
            (
                br#"{"account":"a","ok":{"x":1}}"#,
                Some("ok"),
                "expected BOOLEAN, got an object",
            ),
            (
                br#"{"account":"a","ts":"yesterday"}"#,
                Some("ts"),
                "expected TIMESTAMP",
            ),
        ];
        for (value, field, reason) in cases {
            let e = d.check(value).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                *field,
                "{}",
                String::from_utf8_lossy(value)
            );
            assert!(e.reason.contains(reason), "{e} should say {reason}");
        }
    }

    /// A record of topic `t` at `offset` with value `v`.
    fn rec(offset: u64, v: &str) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset,
            log_time: kappa_log::LogTime(offset + 1),
            event_time: None,
            key: None,
            value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
        }
    }

    #[test]
    fn a_rejected_record_leaves_no_partial_row() {
        let def = def();
        let records = vec![
            rec(0, r#"{"account":"a","amount":1.5}"#),
            rec(1, r#"{"account":"b","amount":2,"n":"x"}"#),
            rec(2, r#"{"account":"c","n":7}"#),
        ];
        let (batch, rejected) = decode_records(&def, &records);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 1);
        let accounts = batch
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(accounts.value(1), "c");
    }

    #[test]
    fn a_view_decodes_and_checks_only_the_columns_it_reads() {
        use datafusion::arrow::array::{Array, AsArray, Float64Array};
        use datafusion::arrow::datatypes::Int64Type;
        let def = def();
        // The NOT NULL `account` is missing from the second record and
        // `ts` is not a timestamp: neither is read by the view.
        let records = vec![
            rec(0, r#"{"account":"a","amount":1.5,"n":1,"ts":"nope"}"#),
            rec(1, r#"{"amount":2,"n":"x"}"#),
        ];
        let reads = [false, true, false, false, false];
        let (batch, rejected) = decode_reading(&def, &records, Some(&reads));
        assert!(rejected.is_empty(), "{rejected:?}");
        assert_eq!(batch.num_rows(), 2);
        let amounts = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!((amounts.value(0), amounts.value(1)), (1.5, 2.0));
        // Unread columns hold nothing from the records.
        assert_eq!(batch.column(2).as_primitive::<Int64Type>().null_count(), 2);
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "");
        // Meta columns are read unless the flags past the topic's say not.
        let offsets = |b: &RecordBatch| {
            let o = b
                .column(6)
                .as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
            o.values().to_vec()
        };
        assert_eq!(offsets(&batch), vec![0, 1]);
        let reads = [false, true, false, false, false, true, false, true, false];
        let (batch, _) = decode_reading(&def, &records, Some(&reads));
        assert_eq!(
            batch
                .column(5)
                .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
                .values()
                .to_vec(),
            vec![0, 0]
        );
        assert_eq!(offsets(&batch), vec![0, 0], "an unread offset is filler");
        assert_eq!(batch.column(8).null_count(), 2, "an unread key is null");
        assert_eq!(batch.column(4).null_count(), 2);
        // A read column is still checked.
        let reads = [false, false, true, false, false];
        let (batch, rejected) = decode_reading(&def, &records, Some(&reads));
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].0, 1);
        assert_eq!(rejected[0].1.field.as_deref(), Some("n"));
        // Every column, checked: both records are rejected.
        assert_eq!(decode_records(&def, &records).1.len(), 2);
    }
}
