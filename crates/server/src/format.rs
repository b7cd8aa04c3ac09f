//! Query results in the formats clients ask for: JSON (columns and rows
//! as arrays, in order), NDJSON (one object per row) and CSV (with a
//! header).

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

/// A response format, from the request's `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
}

impl Format {
    /// The first supported type in `accept`; JSON when none is given or
    /// `*/*`. `None` when only unsupported types are acceptable.
    pub fn from_accept(accept: Option<&str>) -> Option<Format> {
        let Some(accept) = accept else {
            return Some(Format::Json);
        };
        for part in accept.split(',') {
            let mime = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match mime.as_str() {
                "application/json" | "*/*" | "application/*" | "" => return Some(Format::Json),
                "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                    return Some(Format::Ndjson);
                }
                "text/csv" | "text/*" => return Some(Format::Csv),
                _ => {}
            }
        }
        None
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// The SQL name of an Arrow type, as clients see it.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int16 | DataType::Int8 => "smallint".into(),
        DataType::UInt64 | DataType::UInt32 | DataType::UInt16 | DataType::UInt8 => "bigint".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Float32 => "real".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("numeric({p},{s})"),
        DataType::Interval(_) => "interval".into(),
        DataType::Null => "null".into(),
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// One cell as JSON: numbers and booleans as themselves (non-finite
/// floats as strings), everything else as its display text.
pub fn cell(array: &dyn Array, i: usize, options: &FormatOptions) -> Value {
    use datafusion::arrow::datatypes::*;
    if array.is_null(i) {
        return Value::Null;
    }
    let float = |v: f64| {
        serde_json::Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
    };
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(i).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(i).into(),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(i).to_string()),
        _ => match ArrayFormatter::try_new(array, options) {
            Ok(f) => Value::String(f.value(i).to_string()),
            Err(e) => Value::String(format!("<{e}>")),
        },
    }
}

/// One value as JSON, as [`cell`] writes it.
pub fn scalar(v: &datafusion::common::ScalarValue) -> Value {
    match v.to_array() {
        Ok(array) => cell(array.as_ref(), 0, &options()),
        Err(e) => Value::String(format!("<{e}>")),
    }
}

fn options() -> FormatOptions<'static> {
    FormatOptions::default().with_null("")
}

/// `{"columns": [{"name", "type"}], "rows": [[...], ...]}`.
pub fn json(schema: &Schema, batches: &[RecordBatch]) -> Value {
    let options = options();
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({ "name": f.name(), "type": type_name(f.data_type()) }))
        .collect();
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            rows.push(Value::Array(
                b.columns()
                    .iter()
                    .map(|c| cell(c.as_ref(), i, &options))
                    .collect(),
            ));
        }
    }
    serde_json::json!({ "columns": columns, "rows": rows })
}

/// One JSON object per row, one per line.
pub fn ndjson(schema: &Schema, batches: &[RecordBatch]) -> Vec<u8> {
    let options = options();
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            let mut object = Map::new();
            for (f, c) in schema.fields().iter().zip(b.columns()) {
                object.insert(f.name().clone(), cell(c.as_ref(), i, &options));
            }
            serde_json::to_writer(&mut out, &Value::Object(object)).expect("a Value serializes");
            out.push(b'\n');
        }
    }
    out
}

/// Each row as a JSON object, by column name.
pub fn objects(schema: &Schema, batch: &RecordBatch) -> Vec<Value> {
    let options = options();
    (0..batch.num_rows())
        .map(|i| {
            let object: Map<String, Value> = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| (f.name().clone(), cell(c.as_ref(), i, &options)))
                .collect();
            Value::Object(object)
        })
        .collect()
}

/// CSV with a header row; NULL is an empty field.
pub fn csv(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let mut writer = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(Vec::new());
    let empty = [RecordBatch::new_empty(std::sync::Arc::new(schema.clone()))];
    // With no rows, the header still says which columns there are.
    let batches = if batches.is_empty() {
        &empty[..]
    } else {
        batches
    };
    for b in batches {
        writer.write(b).map_err(|e| e.to_string())?;
    }
    Ok(writer.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_first_supported_type() {
        assert_eq!(Format::from_accept(None), Some(Format::Json));
        assert_eq!(Format::from_accept(Some("text/csv")), Some(Format::Csv));
        assert_eq!(
            Format::from_accept(Some("application/x-ndjson, application/json;q=0.5")),
            Some(Format::Ndjson)
        );
        assert_eq!(Format::from_accept(Some("image/png")), None);
        assert_eq!(
            Format::from_accept(Some("image/png, */*")),
            Some(Format::Json)
        );
    }
}
