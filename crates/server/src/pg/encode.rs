//! Arrow results as PostgreSQL rows: each column's type, and each value
//! in the text or binary format the client asked for.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::*;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use std::sync::Arc;

/// The PostgreSQL type a column is sent as. Types without a native
/// encoding here (decimals, intervals, lists...) go as text in
/// PostgreSQL's own text form.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Date32 => Type::DATE,
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float32 => Type::FLOAT4,
        DataType::Float16 | DataType::Float64 => Type::FLOAT8,
        _ => Type::TEXT,
    }
}

pub fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format.format_for(i),
            )
        })
        .collect()
}

fn text_options() -> FormatOptions<'static> {
    FormatOptions::default()
}

/// Every row of `batches`.
pub fn rows(fields: &Arc<Vec<FieldInfo>>, batches: &[RecordBatch]) -> PgWireResult<Vec<DataRow>> {
    let mut out = Vec::new();
    let mut encoder = DataRowEncoder::new(fields.clone());
    let options = text_options();
    for b in batches {
        let formatters: Vec<Option<ArrayFormatter>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for i in 0..b.num_rows() {
            for ((c, f), field) in b.columns().iter().zip(&formatters).zip(fields.iter()) {
                let text = field.format() == FieldFormat::Text;
                cell(&mut encoder, c.as_ref(), i, f.as_ref(), text)?;
            }
            out.push(encoder.take_row());
        }
    }
    Ok(out)
}

fn cell(
    e: &mut DataRowEncoder,
    a: &dyn Array,
    i: usize,
    text: Option<&ArrayFormatter>,
    text_format: bool,
) -> PgWireResult<()> {
    let ty = pg_type(a.data_type());
    if text_format && matches!(ty, Type::FLOAT4 | Type::FLOAT8) {
        // PostgreSQL's text form: shortest round trip, no trailing `.0`.
        let v = (!a.is_null(i)).then(|| {
            let f = match a.data_type() {
                DataType::Float32 => a.as_primitive::<Float32Type>().value(i) as f64,
                _ => float(a, i),
            };
            pg_float(f, a.data_type() == &DataType::Float32)
        });
        return e.encode_field_with_type_and_format(
            &v,
            &ty,
            FieldFormat::Text,
            &pgwire::types::format::FormatOptions::default(),
        );
    }
    if matches!(ty, Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::DATE) {
        return time_cell(e, a, i, &ty, text, text_format);
    }
    match ty {
        Type::BOOL => e.encode_field(&(!a.is_null(i)).then(|| a.as_boolean().value(i))),
        Type::INT2 => e.encode_field(&(!a.is_null(i)).then(|| int(a, i) as i16)),
        Type::INT4 => e.encode_field(&(!a.is_null(i)).then(|| int(a, i) as i32)),
        Type::INT8 => e.encode_field(&(!a.is_null(i)).then(|| int(a, i))),
        Type::FLOAT4 => {
            e.encode_field(&(!a.is_null(i)).then(|| a.as_primitive::<Float32Type>().value(i)))
        }
        Type::FLOAT8 => e.encode_field(&(!a.is_null(i)).then(|| float(a, i))),
        _ => {
            let value = if a.is_null(i) {
                None
            } else {
                Some(match (a.data_type(), text) {
                    (DataType::Utf8, _) => a.as_string::<i32>().value(i).to_string(),
                    (DataType::LargeUtf8, _) => a.as_string::<i64>().value(i).to_string(),
                    (DataType::Utf8View, _) => a.as_string_view().value(i).to_string(),
                    (_, Some(f)) => pg_text(a.data_type(), f.value(i).to_string()),
                    (_, None) => String::new(),
                })
            };
            e.encode_field(&value)
        }
    }
}

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch for binary
/// dates and timestamps.
const PG_EPOCH_DAYS: i64 = 10_957;

/// A timestamp or date: text as PostgreSQL writes it, or binary
/// (microseconds or days since 2000-01-01).
fn time_cell(
    e: &mut DataRowEncoder,
    a: &dyn Array,
    i: usize,
    ty: &Type,
    text: Option<&ArrayFormatter>,
    text_format: bool,
) -> PgWireResult<()> {
    let options = pgwire::types::format::FormatOptions::default();
    if text_format {
        let value = (!a.is_null(i))
            .then(|| text.map(|f| pg_text(a.data_type(), f.value(i).to_string())))
            .flatten();
        return e.encode_field_with_type_and_format(&value, ty, FieldFormat::Text, &options);
    }
    if a.is_null(i) {
        return e.encode_field_with_type_and_format(
            &None::<i64>,
            ty,
            FieldFormat::Binary,
            &options,
        );
    }
    match a.data_type() {
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(i) as i64 - PG_EPOCH_DAYS;
            e.encode_field_with_type_and_format(&(days as i32), ty, FieldFormat::Binary, &options)
        }
        DataType::Timestamp(unit, _) => {
            let micros = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(i) * 1_000_000,
                TimeUnit::Millisecond => {
                    a.as_primitive::<TimestampMillisecondType>().value(i) * 1_000
                }
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => {
                    a.as_primitive::<TimestampNanosecondType>().value(i) / 1_000
                }
            };
            let since_2000 = micros - PG_EPOCH_DAYS * 86_400_000_000;
            e.encode_field_with_type_and_format(&since_2000, ty, FieldFormat::Binary, &options)
        }
        _ => e.encode_field_with_type_and_format(&None::<i64>, ty, FieldFormat::Binary, &options),
    }
}

fn pg_float(f: f64, single: bool) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if single {
        format!("{}", f as f32)
    } else {
        format!("{f}")
    }
}

/// Arrow's display of a timestamp (`2026-01-01T00:00:00`) in
/// PostgreSQL's text form (`2026-01-01 00:00:00`).
fn pg_text(dt: &DataType, s: String) -> String {
    match dt {
        DataType::Timestamp(..) => s.replacen('T', " ", 1),
        _ => s,
    }
}

fn int(a: &dyn Array, i: usize) -> i64 {
    match a.data_type() {
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i) as i64,
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i) as i64,
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i) as i64,
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i) as i64,
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i) as i64,
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i) as i64,
        // Beyond i64::MAX cannot be sent as int8; saturate (log offsets
        // and counts never get there).
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).min(i64::MAX as u64) as i64,
        _ => 0,
    }
}

fn float(a: &dyn Array, i: usize) -> f64 {
    match a.data_type() {
        DataType::Float16 => a.as_primitive::<Float16Type>().value(i).to_f64(),
        _ => a.as_primitive::<Float64Type>().value(i),
    }
}

/// One row of scalars (a change), after `prefix` columns already encoded.
pub fn scalar_cells(
    e: &mut DataRowEncoder,
    values: &[ScalarValue],
    fields: &[FieldInfo],
) -> PgWireResult<()> {
    for (v, field) in values.iter().zip(fields) {
        let array = v
            .to_array()
            .map_err(|err| pgwire::error::PgWireError::ApiError(Box::new(err)))?;
        let options = text_options();
        let f = ArrayFormatter::try_new(array.as_ref(), &options).ok();
        cell(
            e,
            array.as_ref(),
            0,
            f.as_ref(),
            field.format() == FieldFormat::Text,
        )?;
    }
    Ok(())
}

/// A scalar in COPY's text format (`\N` for NULL, escaped).
pub fn copy_text(v: &ScalarValue) -> String {
    if v.is_null() {
        return "\\N".into();
    }
    let Ok(array) = v.to_array() else {
        return "\\N".into();
    };
    let options = text_options();
    let text = match ArrayFormatter::try_new(array.as_ref(), &options) {
        Ok(f) => pg_text(array.data_type(), f.value(0).to_string()),
        Err(_) => return "\\N".into(),
    };
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}
