//! Text and bytes as Spark converts them: `encode(text, charset)` and
//! `decode(bytes, charset)` with Java's charset names (`UTF-8`, `US-ASCII`,
//! `ISO-8859-1`, `UTF-16BE`, `UTF-16LE`, `UTF-16`), and `to_binary(text[, format])`
//! (`hex`, `utf-8`, `base64`); `lpad` and `rpad` of bytes.

use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{ArrayRef, AsArray, BinaryArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::ScalarUDF;

use super::{arg, arg_as, constant_string, Simple};

pub(super) fn all() -> Vec<ScalarUDF> {
    vec![
        Simple::udf("encode", (2, 2), DataType::Binary, encode),
        Simple::udf("decode", (2, 2), DataType::Utf8, decode),
        Simple::udf("to_binary", (1, 2), DataType::Binary, to_binary),
    ]
}

/// Characters not in `charset` are written as `?`, as Java does.
fn encode_text(text: &str, charset: &str) -> Result<Vec<u8>> {
    Ok(match charset.to_ascii_uppercase().replace('_', "-").as_str() {
        "UTF-8" | "UTF8" => text.as_bytes().to_vec(),
        "US-ASCII" | "ASCII" => text.chars().map(|c| if c.is_ascii() { c as u8 } else { b'?' }).collect(),
        "ISO-8859-1" | "LATIN1" => text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect(),
        "UTF-16BE" => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        "UTF-16LE" => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        // Java's UTF-16 writes a byte-order mark, big-endian.
        "UTF-16" => [0xFE, 0xFF].into_iter().chain(text.encode_utf16().flat_map(u16::to_be_bytes)).collect(),
        other => return exec_err!("`{other}` is not a charset quern encodes; use UTF-8, US-ASCII, ISO-8859-1, UTF-16, UTF-16BE or UTF-16LE"),
    })
}

fn decode_bytes(bytes: &[u8], charset: &str) -> Result<String> {
    let utf16 = |be: bool, b: &[u8]| {
        let units: Vec<u16> = b
            .chunks(2)
            .map(|c| match (be, c) {
                (true, [h, l]) => u16::from_be_bytes([*h, *l]),
                (false, [l, h]) => u16::from_le_bytes([*l, *h]),
                _ => 0xFFFD,
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    Ok(match charset.to_ascii_uppercase().replace('_', "-").as_str() {
        "UTF-8" | "UTF8" => String::from_utf8_lossy(bytes).into_owned(),
        "US-ASCII" | "ASCII" => bytes.iter().map(|&b| if b.is_ascii() { b as char } else { '\u{FFFD}' }).collect(),
        "ISO-8859-1" | "LATIN1" => bytes.iter().map(|&b| char::from(b)).collect(),
        "UTF-16BE" => utf16(true, bytes),
        "UTF-16LE" => utf16(false, bytes),
        "UTF-16" => match bytes {
            [0xFF, 0xFE, rest @ ..] => utf16(false, rest),
            [0xFE, 0xFF, rest @ ..] => utf16(true, rest),
            _ => utf16(true, bytes),
        },
        other => return exec_err!("`{other}` is not a charset quern decodes; use UTF-8, US-ASCII, ISO-8859-1, UTF-16, UTF-16BE or UTF-16LE"),
    })
}

fn encode(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let Some(charset) = constant_string(args, 1, "encode")? else {
        return Ok(Arc::new(BinaryArray::new_null(args[0].len())));
    };
    let text = arg(args, 0, &DataType::Utf8)?;
    let out = text
        .as_string::<i32>()
        .iter()
        .map(|t| t.map(|t| encode_text(t, &charset)).transpose())
        .collect::<Result<BinaryArray>>()?;
    Ok(Arc::new(out))
}

fn decode(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let Some(charset) = constant_string(args, 1, "decode")? else {
        return Ok(Arc::new(StringArray::new_null(args[0].len())));
    };
    let bytes = arg(args, 0, &DataType::Binary)?;
    let out = bytes
        .as_binary::<i32>()
        .iter()
        .map(|b| b.map(|b| decode_bytes(b, &charset)).transpose())
        .collect::<Result<StringArray>>()?;
    Ok(Arc::new(out))
}

/// `to_binary(text[, format])`: `hex` (the default), `utf-8` or `base64`; text that is
/// not in the format is NULL.
fn to_binary(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    let format = match args.len() {
        1 => "hex".to_string(),
        _ => constant_string(args, 1, "to_binary")?.unwrap_or_else(|| "hex".into()),
    };
    let text = arg(args, 0, &DataType::Utf8)?;
    let convert = |t: &str| -> Result<Option<Vec<u8>>> {
        Ok(match format.to_ascii_lowercase().as_str() {
            "hex" => {
                let digits: Vec<u8> = t.bytes().collect();
                let hex = |c: u8| (c as char).to_digit(16);
                digits
                    .rchunks(2)
                    .rev()
                    .map(|p| match p {
                        [h, l] => Some((hex(*h)? * 16 + hex(*l)?) as u8),
                        [l] => hex(*l).map(|v| v as u8),
                        _ => None,
                    })
                    .collect()
            }
            "utf-8" | "utf8" => Some(t.as_bytes().to_vec()),
            "base64" => base64::engine::general_purpose::STANDARD.decode(t).ok(),
            other => return exec_err!("to_binary takes 'hex', 'utf-8' or 'base64', not '{other}'"),
        })
    };
    let out = text
        .as_string::<i32>()
        .iter()
        .map(|t| Ok(t.map(convert).transpose()?.flatten()))
        .collect::<Result<BinaryArray>>()?;
    Ok(Arc::new(out))
}

/// `lpad(bytes, length[, pad])` (or `rpad`): `bytes` cut or padded to `length` with
/// `pad` repeated (default a zero byte).
pub(super) fn pad(left: bool) -> ScalarUDF {
    match left {
        true => Simple::udf("lpad", (2, 3), DataType::Binary, pad_left),
        false => Simple::udf("rpad", (2, 3), DataType::Binary, pad_right),
    }
}

fn pad_left(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    pad_with(args, true)
}

fn pad_right(args: &[ArrayRef], _: &ConfigOptions) -> Result<ArrayRef> {
    pad_with(args, false)
}

fn pad_with(args: &[ArrayRef], left: bool) -> Result<ArrayRef> {
    use datafusion::arrow::array::Array;
    let bytes = arg(args, 0, &DataType::Binary)?;
    let lengths = arg(args, 1, &DataType::Int64)?;
    let lengths = lengths.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    let pads = match arg_as(args, 2, &DataType::Binary)? {
        Some(p) => p,
        None => Arc::new(BinaryArray::from_vec(vec![&[0u8][..]; bytes.len()])),
    };
    let (bytes, pads) = (bytes.as_binary::<i32>(), pads.as_binary::<i32>());
    let out: BinaryArray = (0..bytes.len())
        .map(|i| {
            if bytes.is_null(i) || lengths.is_null(i) || pads.is_null(i) {
                return None;
            }
            let (b, n, p) = (
                bytes.value(i),
                lengths.value(i).max(0) as usize,
                pads.value(i),
            );
            if b.len() >= n || p.is_empty() {
                return Some(b[..n.min(b.len())].to_vec());
            }
            let fill: Vec<u8> = p.iter().copied().cycle().take(n - b.len()).collect();
            Some(match left {
                true => [fill.as_slice(), b].concat(),
                false => [b, fill.as_slice()].concat(),
            })
        })
        .collect();
    Ok(Arc::new(out))
}

/// `octet_length(bytes)`: how many bytes.
pub(super) fn byte_length() -> ScalarUDF {
    Simple::udf("octet_length", (1, 1), DataType::Int32, |args, _| {
        let bytes = arg(args, 0, &DataType::Binary)?;
        let out: datafusion::arrow::array::Int32Array = bytes
            .as_binary::<i32>()
            .iter()
            .map(|b| b.map(|b| b.len() as i32))
            .collect();
        Ok(Arc::new(out))
    })
}
