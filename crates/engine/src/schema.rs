//! Topic schemas: the columns a topic's JSON records must have, checked on
//! append, and the Arrow form views and queries read them in.
//!
//! Every topic reads as a table with its columns (or one `payload` column of
//! raw JSON text for a topic without a schema) followed by the metadata
//! columns `_partition`, `_offset`, `_log_time` and `_key`.

use crate::EngineError;
pub use crate::decode::Checked;
use crate::decode::{RecordDecoder, decode_columns};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use kappa_log::RecordColumns;
use serde::{Deserialize, Serialize};
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
        RecordDecoder::new(self)
            .check(value)
            .map_err(|r| EngineError::RecordRejected {
                topic: self.name.clone(),
                index,
                field: r.field,
                reason: r.reason,
            })
    }

    /// Records of this topic as one Arrow batch in its table form. A record
    /// that does not fit (possible only for data appended outside the
    /// engine) is returned in the second list with the reason.
    pub fn to_batch(&self, records: &RecordColumns) -> (RecordBatch, Vec<(usize, String)>) {
        self.to_batch_reading(records, None)
    }

    /// The same for a view that reads only the columns marked in `reads`
    /// (the others are null): see [`RecordDecoder::reading`].
    pub fn to_batch_reading(
        &self,
        records: &RecordColumns,
        reads: Option<&[bool]>,
    ) -> (RecordBatch, Vec<(usize, String)>) {
        let (batch, rejected) = decode_columns(self, records, reads);
        let rejected = rejected
            .into_iter()
            .map(|(i, r)| (i, format!("does not fit topic {}: {r}", self.name)))
            .collect();
        (batch, rejected)
    }
}

/// RFC 3339 (or `YYYY-MM-DD HH:MM:SS[.f]`, read as UTC) to microseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s)
        .ok()
        .map(|n| n.div_euclid(1000))
}
