//! The stored form of values and rows: a small, stable, self-describing
//! encoding (it outlives DataFusion and Arrow versions, unlike Arrow's row
//! format). Also used for group keys, so it is deterministic: equal values
//! encode to equal bytes.
//!
//! ```text
//! value  u8 tag, payload
//!        0 null | 1 false | 2 true | 3 i64 | 4 u64 | 5 f64 | 6 text (u32 len)
//!        | 7 timestamp i64 micros
//! row    u16 count, values
//! ```

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::ScalarValue;

/// The types Kappa can keep in a view (checked when a view is created).
pub fn supported(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Null
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Timestamp(_, _)
    )
}

/// Appends the value at `row` of `array` (of a [`supported`] type).
pub fn encode_cell(out: &mut Vec<u8>, array: &ArrayRef, row: usize) {
    if array.is_null(row) {
        out.push(0);
        return;
    }
    macro_rules! int {
        ($t:ty) => {
            put_int(out, array.as_primitive::<$t>().value(row) as i64)
        };
    }
    macro_rules! uint {
        ($t:ty) => {{
            out.push(4);
            out.extend_from_slice(&(array.as_primitive::<$t>().value(row) as u64).to_le_bytes());
        }};
    }
    match array.data_type() {
        DataType::Null => out.push(0),
        DataType::Boolean => out.push(if array.as_boolean().value(row) { 2 } else { 1 }),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => uint!(UInt8Type),
        DataType::UInt16 => uint!(UInt16Type),
        DataType::UInt32 => uint!(UInt32Type),
        DataType::UInt64 => uint!(UInt64Type),
        DataType::Float32 => put_f64(out, array.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => put_f64(out, array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => put_text(out, array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => put_text(out, array.as_string::<i64>().value(row)),
        DataType::Utf8View => put_text(out, array.as_string_view().value(row)),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => {
                    array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000
                }
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000
                }
            };
            out.push(7);
            out.extend_from_slice(&v.to_le_bytes());
        }
        other => unreachable!("type {other} is refused when the view is created"),
    }
}

/// Appends a scalar (of a [`supported`] type); the same bytes as
/// [`encode_cell`] gives the value in an array.
/// [`encode_scalar`] of an `Int64`, without making the `ScalarValue`.
pub(crate) fn encode_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => out.push(0),
        Some(x) => put_int(out, x),
    }
}

/// [`encode_scalar`] of a `Float64`, without making the `ScalarValue`.
pub(crate) fn encode_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => out.push(0),
        Some(x) => put_f64(out, x),
    }
}

pub fn encode_scalar(out: &mut Vec<u8>, v: &ScalarValue) {
    use ScalarValue as S;
    let int = put_int;
    let uint = |out: &mut Vec<u8>, x: u64| {
        out.push(4);
        out.extend_from_slice(&x.to_le_bytes());
    };
    let ts = |out: &mut Vec<u8>, micros: i64| {
        out.push(7);
        out.extend_from_slice(&micros.to_le_bytes());
    };
    match v {
        _ if v.is_null() => out.push(0),
        S::Boolean(Some(b)) => out.push(if *b { 2 } else { 1 }),
        S::Int8(Some(x)) => int(out, *x as i64),
        S::Int16(Some(x)) => int(out, *x as i64),
        S::Int32(Some(x)) => int(out, *x as i64),
        S::Int64(Some(x)) => int(out, *x),
        S::UInt8(Some(x)) => uint(out, *x as u64),
        S::UInt16(Some(x)) => uint(out, *x as u64),
        S::UInt32(Some(x)) => uint(out, *x as u64),
        S::UInt64(Some(x)) => uint(out, *x),
        S::Float32(Some(x)) => put_f64(out, *x as f64),
        S::Float64(Some(x)) => put_f64(out, *x),
        S::Utf8(Some(x)) | S::LargeUtf8(Some(x)) | S::Utf8View(Some(x)) => put_text(out, x),
        S::TimestampSecond(Some(x), _) => ts(out, x * 1_000_000),
        S::TimestampMillisecond(Some(x), _) => ts(out, x * 1_000),
        S::TimestampMicrosecond(Some(x), _) => ts(out, *x),
        S::TimestampNanosecond(Some(x), _) => ts(out, x / 1_000),
        other => {
            let array = other.to_array().expect("scalar to array");
            encode_cell(out, &array, 0);
        }
    }
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    // One NaN and one zero, so equal values encode equally.
    let v = if v.is_nan() {
        f64::NAN
    } else if v == 0.0 {
        0.0
    } else {
        v
    };
    out.push(5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_int(out: &mut Vec<u8>, x: i64) {
    out.push(3);
    out.extend_from_slice(&x.to_le_bytes());
}

pub(crate) fn put_text(out: &mut Vec<u8>, s: &str) {
    out.push(6);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads one value as `dt`, advancing `at`. `None` when the bytes are bad.
pub fn decode_scalar(b: &[u8], at: &mut usize, dt: &DataType) -> Option<ScalarValue> {
    let tag = *b.get(*at)?;
    *at += 1;
    let take8 = |at: &mut usize| -> Option<[u8; 8]> {
        let s = b.get(*at..*at + 8)?;
        *at += 8;
        s.try_into().ok()
    };
    let v = match tag {
        0 => return ScalarValue::try_from(dt).ok(),
        1 => ScalarValue::Boolean(Some(false)),
        2 => ScalarValue::Boolean(Some(true)),
        3 => ScalarValue::Int64(Some(i64::from_le_bytes(take8(at)?))),
        4 => ScalarValue::UInt64(Some(u64::from_le_bytes(take8(at)?))),
        5 => ScalarValue::Float64(Some(f64::from_le_bytes(take8(at)?))),
        6 => {
            let len = u32::from_le_bytes(b.get(*at..*at + 4)?.try_into().ok()?) as usize;
            *at += 4;
            let s = std::str::from_utf8(b.get(*at..*at + len)?).ok()?;
            *at += len;
            ScalarValue::Utf8(Some(s.to_string()))
        }
        7 => ScalarValue::TimestampMicrosecond(Some(i64::from_le_bytes(take8(at)?)), None),
        _ => return None,
    };
    v.cast_to(dt).ok()
}

pub fn encode_row(values: &[ScalarValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + values.len() * 9);
    out.extend_from_slice(&(values.len() as u16).to_le_bytes());
    for v in values {
        encode_scalar(&mut out, v);
    }
    out
}

pub fn decode_row(b: &[u8], types: &[DataType]) -> Option<Vec<ScalarValue>> {
    let n = u16::from_le_bytes(b.get(..2)?.try_into().ok()?) as usize;
    if n != types.len() {
        return None;
    }
    let mut at = 2;
    let row = types
        .iter()
        .map(|t| decode_scalar(b, &mut at, t))
        .collect::<Option<Vec<_>>>()?;
    (at == b.len()).then_some(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcuts for aggregate results encode as the scalars do.
    #[test]
    fn numbers_encode_as_their_scalars() {
        for v in [None, Some(0), Some(-1), Some(i64::MAX), Some(i64::MIN)] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_i64(&mut a, v);
            encode_scalar(&mut b, &ScalarValue::Int64(v));
            assert_eq!(a, b, "{v:?}");
        }
        for v in [
            None,
            Some(0.0),
            Some(-0.0),
            Some(f64::NAN),
            Some(-1.5),
            Some(f64::INFINITY),
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_f64(&mut a, v);
            encode_scalar(&mut b, &ScalarValue::Float64(v));
            assert_eq!(a, b, "{v:?}");
        }
    }

    #[test]
    fn rows_round_trip() {
        let types = vec![
            DataType::Utf8,
            DataType::Int64,
            DataType::Float64,
            DataType::Boolean,
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Float64,
        ];
        let row = vec![
            ScalarValue::Utf8(Some("acc-1".into())),
            ScalarValue::Int64(Some(-3)),
            ScalarValue::Float64(Some(2.5)),
            ScalarValue::Boolean(Some(true)),
            ScalarValue::TimestampMicrosecond(Some(1_700_000_000_000_000), None),
            ScalarValue::Float64(None),
        ];
        let b = encode_row(&row);
        assert_eq!(decode_row(&b, &types).unwrap(), row);
        assert!(decode_row(&b[..b.len() - 1], &types).is_none());
        assert_eq!(
            encode_row(&[ScalarValue::Float64(Some(-0.0))]),
            encode_row(&[ScalarValue::Float64(Some(0.0))])
        );
        // A scalar and the same value in an array encode alike (group keys
        // come from arrays, stored rows from scalars).
        for v in &row {
            let mut a = Vec::new();
            encode_scalar(&mut a, v);
            let mut b = Vec::new();
            encode_cell(&mut b, &v.to_array().unwrap(), 0);
            assert_eq!(a, b, "{v:?}");
        }
    }
}
