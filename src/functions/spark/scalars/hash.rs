//! Spark's `hash(…)`: 32-bit Murmur3 (x86) with seed 42 over each argument in turn, each
//! value hashed as Spark lays it out (an int as 4 bytes, a long, timestamp or double as 8,
//! text as its UTF-8 bytes with Spark's own handling of the last 1–3 bytes), so that the
//! same rows hash to the same numbers as in Spark (bucketing, sampling by hash).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, TimeUnit,
};
use datafusion::common::exec_err;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;

use super::Simple;

const SEED: u32 = 42;

pub(super) fn all() -> Vec<ScalarUDF> {
    vec![Simple::udf("hash", (1, usize::MAX), DataType::Int32, hash)]
}

fn hash(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let args: Vec<ArrayRef> = args
        .iter()
        .map(|a| match a.data_type() {
            // A timestamp hashes as its microseconds, whatever unit it is kept in.
            DataType::Timestamp(unit, zone) if *unit != TimeUnit::Microsecond => {
                datafusion::arrow::compute::cast(
                    a,
                    &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
                )
            }
            DataType::Utf8View | DataType::LargeUtf8 => {
                datafusion::arrow::compute::cast(a, &DataType::Utf8)
            }
            _ => Ok(a.clone()),
        })
        .collect::<std::result::Result<_, _>>()?;
    let rows = args.first().map_or(0, |a| a.len());
    let out = (0..rows)
        .map(|row| {
            let mut h = SEED;
            for a in &args {
                h = value(a, row, h)?;
            }
            Ok(h as i32)
        })
        .collect::<Result<Int32Array>>()?;
    Ok(Arc::new(out))
}

/// `seed` carried over row `row` of `array` (NULL leaves it unchanged).
fn value(array: &ArrayRef, row: usize, seed: u32) -> Result<u32> {
    if array.is_null(row) {
        return Ok(seed);
    }
    Ok(match array.data_type() {
        DataType::Boolean => hash_int(u32::from(array.as_boolean().value(row)), seed),
        DataType::Int8 => hash_int(
            array.as_primitive::<Int8Type>().value(row) as i32 as u32,
            seed,
        ),
        DataType::Int16 => hash_int(
            array.as_primitive::<Int16Type>().value(row) as i32 as u32,
            seed,
        ),
        DataType::Int32 => hash_int(array.as_primitive::<Int32Type>().value(row) as u32, seed),
        DataType::Date32 => hash_int(array.as_primitive::<Date32Type>().value(row) as u32, seed),
        DataType::Int64 => hash_long(array.as_primitive::<Int64Type>().value(row) as u64, seed),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros =
                array.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
            hash_long(micros.value(row) as u64, seed)
        }
        DataType::Float32 => {
            let f = array.as_primitive::<Float32Type>().value(row);
            let bits = if f == 0.0 {
                0
            } else if f.is_nan() {
                f32::NAN.to_bits()
            } else {
                f.to_bits()
            };
            hash_int(bits, seed)
        }
        DataType::Float64 => {
            let f = array.as_primitive::<Float64Type>().value(row);
            let bits = if f == 0.0 {
                0
            } else if f.is_nan() {
                f64::NAN.to_bits()
            } else {
                f.to_bits()
            };
            hash_long(bits, seed)
        }
        DataType::Decimal128(precision, _) if *precision <= 18 => hash_long(
            array.as_primitive::<Decimal128Type>().value(row) as i64 as u64,
            seed,
        ),
        DataType::Utf8 => hash_bytes(array.as_string::<i32>().value(row).as_bytes(), seed),
        DataType::Binary => hash_bytes(array.as_binary::<i32>().value(row), seed),
        DataType::List(_) => fold(&array.as_list::<i32>().value(row), seed)?,
        DataType::LargeList(_) => fold(&array.as_list::<i64>().value(row), seed)?,
        DataType::Struct(_) => {
            let mut h = seed;
            for c in array.as_struct().columns() {
                h = value(c, row, h)?;
            }
            h
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let mut h = seed;
            for i in 0..entries.len() {
                h = value(entries.column(0), i, h)?;
                h = value(entries.column(1), i, h)?;
            }
            h
        }
        other => return exec_err!("hash of a {other} is not supported"),
    })
}

fn fold(values: &ArrayRef, seed: u32) -> Result<u32> {
    let mut h = seed;
    for i in 0..values.len() {
        h = value(values, i, h)?;
    }
    Ok(h)
}

fn mix_k1(k1: u32) -> u32 {
    k1.wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593)
}

fn mix_h1(h1: u32, k1: u32) -> u32 {
    (h1 ^ k1)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

fn fmix(mut h1: u32, length: u32) -> u32 {
    h1 ^= length;
    h1 ^= h1 >> 16;
    h1 = h1.wrapping_mul(0x85eb_ca6b);
    h1 ^= h1 >> 13;
    h1 = h1.wrapping_mul(0xc2b2_ae35);
    h1 ^ (h1 >> 16)
}

fn hash_int(input: u32, seed: u32) -> u32 {
    fmix(mix_h1(seed, mix_k1(input)), 4)
}

fn hash_long(input: u64, seed: u32) -> u32 {
    let h1 = mix_h1(seed, mix_k1(input as u32));
    fmix(mix_h1(h1, mix_k1((input >> 32) as u32)), 8)
}

/// Spark's `hashUnsafeBytes`: whole 4-byte words, then each remaining byte (signed) as
/// a word of its own.
fn hash_bytes(bytes: &[u8], seed: u32) -> u32 {
    let aligned = bytes.len() - bytes.len() % 4;
    let mut h1 = seed;
    for word in bytes[..aligned].chunks_exact(4) {
        let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        h1 = mix_h1(h1, mix_k1(word));
    }
    for &b in &bytes[aligned..] {
        h1 = mix_h1(h1, mix_k1(b as i8 as i32 as u32));
    }
    fmix(h1, bytes.len() as u32)
}
