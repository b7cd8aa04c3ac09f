//! Topic schemas: the columns a topic's JSON records must have, checked on
//! append, and the Arrow form views and queries read them in.
//!
//! Every topic reads as a table with its columns (or one `payload` column of
//! raw JSON text for a topic without a schema) followed by the metadata
//! columns `_partition`, `_offset`, `_log_time` and `_key`.

use crate::EngineError;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use kappa_log::Record;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The column types a topic may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    Text,
    BigInt,
    Double,
    Boolean,
    /// Microseconds, no time zone; JSON gives RFC 3339 text.
    Timestamp,
}

impl ColumnType {
    /// From a SQL type name (PostgreSQL spellings).
    pub fn from_sql(name: &str) -> Option<ColumnType> {
        let n = name.to_ascii_lowercase();
        Some(match n.as_str() {
            "text" | "varchar" | "string" | "character varying" => ColumnType::Text,
            "bigint" | "int8" | "int" | "integer" | "int4" | "smallint" | "int2" => {
                ColumnType::BigInt
            }
            "double" | "double precision" | "float8" | "float" | "real" | "float4" => {
                ColumnType::Double
            }
            "boolean" | "bool" => ColumnType::Boolean,
            "timestamp" | "timestamp without time zone" => ColumnType::Timestamp,
            _ => return None,
        })
    }

    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Text => "TEXT",
            ColumnType::BigInt => "BIGINT",
            ColumnType::Double => "DOUBLE",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Timestamp => "TIMESTAMP",
        }
    }

    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub not_null: bool,
}

/// A topic as the engine knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDef {
    pub name: String,
    /// `None`: raw JSON, read through the `payload` column.
    pub columns: Option<Vec<Column>>,
    /// The column whose value is the record key.
    pub key: Option<String>,
    /// The column whose value is the record's event time.
    pub event_time: Option<String>,
}

pub const PAYLOAD: &str = "payload";
pub const META_COLUMNS: [&str; 4] = ["_partition", "_offset", "_log_time", "_key"];

impl TopicDef {
    /// The table a topic reads as.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = match &self.columns {
            Some(cols) => cols
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow(), !c.not_null))
                .collect(),
            None => vec![Field::new(PAYLOAD, DataType::Utf8, true)],
        };
        fields.push(Field::new("_partition", DataType::UInt32, false));
        fields.push(Field::new("_offset", DataType::UInt64, false));
        fields.push(Field::new(
            "_log_time",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ));
        fields.push(Field::new("_key", DataType::Utf8, true));
        Arc::new(Schema::new(fields))
    }

    /// Checks one record's value against the schema. `index` is the
    /// record's place in its batch, for the error. Returns the key and the
    /// event time (microseconds) the schema names, if any.
    pub fn check(&self, index: usize, value: &[u8]) -> Result<Checked, EngineError> {
        let bad = |field: Option<&str>, reason: String| EngineError::RecordRejected {
            topic: self.name.clone(),
            index,
            field: field.map(str::to_string),
            reason,
        };
        let json: Value =
            serde_json::from_slice(value).map_err(|e| bad(None, format!("not valid JSON: {e}")))?;
        self.check_value(index, &json)
    }

    /// [`TopicDef::check`] for a value already parsed.
    pub fn check_value(&self, index: usize, json: &Value) -> Result<Checked, EngineError> {
        let bad = |field: Option<&str>, reason: String| EngineError::RecordRejected {
            topic: self.name.clone(),
            index,
            field: field.map(str::to_string),
            reason,
        };
        let Some(columns) = &self.columns else {
            return Ok(Checked::default());
        };
        let Value::Object(obj) = &json else {
            return Err(bad(
                None,
                format!("expected a JSON object, got {}", kind(json)),
            ));
        };
        if let Some(unknown) = obj.keys().find(|k| !columns.iter().any(|c| &c.name == *k)) {
            return Err(bad(
                Some(unknown),
                format!(
                    "the topic has no column {unknown:?} (its columns: {})",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let mut checked = Checked::default();
        for c in columns {
            let v = obj.get(&c.name).unwrap_or(&Value::Null);
            if v.is_null() {
                if c.not_null {
                    return Err(bad(Some(&c.name), "is NOT NULL but missing or null".into()));
                }
                continue;
            }
            let ok = match c.ty {
                ColumnType::Text => v.is_string(),
                ColumnType::BigInt => v.is_i64() || v.is_u64() && v.as_i64().is_some(),
                ColumnType::Double => v.is_number(),
                ColumnType::Boolean => v.is_boolean(),
                ColumnType::Timestamp => v.as_str().and_then(parse_timestamp).is_some(),
            };
            if !ok {
                return Err(bad(
                    Some(&c.name),
                    format!("expected {}, got {}", c.ty.sql_name(), kind(v)),
                ));
            }
            if self.key.as_deref() == Some(c.name.as_str()) {
                checked.key = Some(match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
            if self.event_time.as_deref() == Some(c.name.as_str()) {
                checked.event_time = v.as_str().and_then(parse_timestamp);
            }
        }
        Ok(checked)
    }

    /// Records of this topic as one Arrow batch in its table form. A record
    /// that does not fit (possible only for data appended outside the
    /// engine) is returned in the second list with the reason.
    pub fn to_batch(&self, records: &[Record]) -> (RecordBatch, Vec<(usize, String)>) {
        let schema = self.arrow_schema();
        let mut rejected = Vec::new();
        let mut keep = Vec::with_capacity(records.len());
        let mut parsed = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let value = r.value.as_deref().unwrap_or(b"null");
            // Parsed once: checked, then read into the columns.
            let checked = serde_json::from_slice::<Value>(value)
                .map_err(|e| format!("not valid JSON: {e}"))
                .and_then(|json| {
                    self.check_value(i, &json)
                        .map(|_| json)
                        .map_err(|e| e.to_string())
                });
            match checked {
                Err(reason) => rejected.push((i, reason)),
                Ok(json) => {
                    keep.push(i);
                    parsed.push(if self.columns.is_some() {
                        json
                    } else {
                        Value::Null
                    });
                }
            }
        }
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        match &self.columns {
            None => {
                let mut b = StringBuilder::new();
                for &i in &keep {
                    let v = records[i].value.as_deref().unwrap_or(b"null");
                    b.append_value(String::from_utf8_lossy(v));
                }
                arrays.push(Arc::new(b.finish()));
            }
            Some(cols) => {
                for c in cols {
                    let name = c.name.as_str();
                    let array: ArrayRef = match c.ty {
                        ColumnType::Text => {
                            let mut b = StringBuilder::new();
                            for v in &parsed {
                                b.append_option(get_field(v, name).and_then(Value::as_str));
                            }
                            Arc::new(b.finish())
                        }
                        ColumnType::BigInt => {
                            let mut b = Int64Builder::new();
                            for v in &parsed {
                                b.append_option(get_field(v, name).and_then(Value::as_i64));
                            }
                            Arc::new(b.finish())
                        }
                        ColumnType::Double => {
                            let mut b = Float64Builder::new();
                            for v in &parsed {
                                b.append_option(get_field(v, name).and_then(Value::as_f64));
                            }
                            Arc::new(b.finish())
                        }
                        ColumnType::Boolean => {
                            let mut b = BooleanBuilder::new();
                            for v in &parsed {
                                b.append_option(get_field(v, name).and_then(Value::as_bool));
                            }
                            Arc::new(b.finish())
                        }
                        ColumnType::Timestamp => {
                            let mut b = TimestampMicrosecondBuilder::new();
                            for v in &parsed {
                                b.append_option(
                                    get_field(v, name)
                                        .and_then(Value::as_str)
                                        .and_then(parse_timestamp),
                                );
                            }
                            Arc::new(b.finish())
                        }
                    };
                    arrays.push(array);
                }
            }
        }
        let mut partition = UInt32Builder::new();
        let mut offset = UInt64Builder::new();
        let mut log_time = TimestampMicrosecondBuilder::new();
        let mut key = StringBuilder::new();
        for &i in &keep {
            let r = &records[i];
            partition.append_value(r.partition);
            offset.append_value(r.offset);
            log_time.append_value(r.log_time.0 as i64);
            key.append_option(r.key.as_deref().map(String::from_utf8_lossy));
        }
        arrays.push(Arc::new(partition.finish()));
        arrays.push(Arc::new(offset.finish()));
        arrays.push(Arc::new(log_time.finish()));
        arrays.push(Arc::new(key.finish()));
        let batch = RecordBatch::try_new(schema, arrays).expect("arrays match the topic schema");
        (batch, rejected)
    }
}

/// What a checked record contributes besides its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    pub key: Option<String>,
    pub event_time: Option<i64>,
}

fn get_field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name).filter(|x| !x.is_null())
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() > 40 => {
            format!("text {:?}...", &s[..s.floor_char_boundary(40)])
        }
        Value::String(s) => format!("text {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// RFC 3339 (or `YYYY-MM-DD HH:MM:SS[.f]`, read as UTC) to microseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s)
        .ok()
        .map(|n| n.div_euclid(1000))
}
