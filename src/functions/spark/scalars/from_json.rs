//! Spark's `from_json(text, schema[, options])`: JSON text read into the type a Spark
//! DDL schema string names (`'a INT, b DOUBLE'`, `'array<struct<x: string>>'`,
//! `'map<string, int>'`), with arrow-json's reader. The schema must be a literal, as in
//! Spark; text that does not parse, or does not fit the schema, is NULL (Spark's
//! PERMISSIVE mode keeps a row of NULL fields instead). Of the options (a map), the
//! Java patterns `timestampFormat` and `dateFormat` are read, for the schema's
//! top-level timestamp and date fields; the others are not read yet.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::common::{exec_err, plan_datafusion_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

pub(super) fn udf() -> ScalarUDF {
    ScalarUDF::from(FromJson {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FromJson {
    signature: Signature,
}

impl ScalarUDFImpl for FromJson {
    fn name(&self) -> &str {
        "from_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        plan_err!("from_json's type comes from its schema argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if !(2..=3).contains(&args.arg_fields.len()) {
            return plan_err!("from_json takes the JSON text, a schema and optionally options");
        }
        let schema = match args.scalar_arguments.get(1).copied().flatten() {
            Some(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
            ) => s,
            _ => {
                return plan_err!(
                    "from_json's schema must be a string literal, such as 'a INT, b STRING'"
                )
            }
        };
        Ok(Arc::new(Field::new(
            self.name(),
            parse_schema(schema)?,
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = datafusion::arrow::compute::cast(&texts, &DataType::Utf8)?;
        let target = args.return_field.data_type().clone();
        let formats = formats(&args)?;
        let out = match (&target, &formats) {
            (DataType::Struct(fields), (Some(_), _) | (_, Some(_))) => read_with_formats(
                texts.as_string::<i32>(),
                fields,
                &formats,
                &args.config_options,
            )?,
            _ => read(texts.as_string::<i32>(), &target)?,
        };
        super::columnar(out, scalar)
    }
}

/// The `timestampFormat` and `dateFormat` options, when the call gives them.
fn formats(args: &ScalarFunctionArgs) -> Result<(Option<String>, Option<String>)> {
    let Some(ColumnarValue::Scalar(ScalarValue::Map(map))) = args.args.get(2) else {
        return Ok((None, None));
    };
    if map.is_empty() || map.is_null(0) {
        return Ok((None, None));
    }
    let entries = map.value(0);
    let keys = datafusion::arrow::compute::cast(entries.column(0), &DataType::Utf8)?;
    let values = datafusion::arrow::compute::cast(entries.column(1), &DataType::Utf8)?;
    let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
    let find = |name: &str| {
        (0..keys.len())
            .find(|&i| keys.value(i) == name && !values.is_null(i))
            .map(|i| values.value(i).to_string())
    };
    Ok((find("timestampFormat"), find("dateFormat")))
}

/// [`read`] into a struct whose timestamp and date fields are read as text, then parsed
/// with the options' patterns.
fn read_with_formats(
    texts: &datafusion::arrow::array::StringArray,
    fields: &Fields,
    (timestamps, dates): &(Option<String>, Option<String>),
    config: &datafusion::config::ConfigOptions,
) -> Result<ArrayRef> {
    let pattern = |t: &DataType| match t {
        DataType::Timestamp(_, _) => timestamps.as_deref(),
        DataType::Date32 => dates.as_deref(),
        _ => None,
    };
    let as_text: Fields = fields
        .iter()
        .map(|f| match pattern(f.data_type()) {
            Some(_) => Arc::new(Field::new(f.name(), DataType::Utf8, true)),
            None => f.clone(),
        })
        .collect();
    let raw = read(texts, &DataType::Struct(as_text))?;
    let raw = raw.as_struct();
    let zone = super::datetime::session_zone(config)?;
    let mut columns = Vec::with_capacity(fields.len());
    for (f, column) in fields.iter().zip(raw.columns()) {
        let Some(p) = pattern(f.data_type()) else {
            columns.push(column.clone());
            continue;
        };
        let items = super::datetime::java_pattern(p)?;
        let times: Vec<Option<i64>> = column
            .as_string::<i32>()
            .iter()
            .map(|t| {
                let t = super::datetime::parse_with(t?, &items, &zone)?;
                Some(t.and_utc().timestamp_micros())
            })
            .collect();
        let micros: ArrayRef = Arc::new(datafusion::arrow::array::TimestampMicrosecondArray::from(
            times,
        ));
        columns.push(datafusion::arrow::compute::cast(&micros, f.data_type())?);
    }
    Ok(Arc::new(datafusion::arrow::array::StructArray::try_new(
        fields.clone(),
        columns,
        raw.nulls().cloned(),
    )?))
}

/// Each text read as a `target` (NULL when it does not parse or fit).
fn read(texts: &datafusion::arrow::array::StringArray, target: &DataType) -> Result<ArrayRef> {
    // Each text is read as the value of a one-field object, so that arrays and maps
    // read as structs do.
    let schema = Arc::new(Schema::new(vec![Field::new("v", target.clone(), true)]));
    let mut values: Vec<ArrayRef> = Vec::with_capacity(texts.len());
    for text in texts.iter() {
        let value = text.and_then(|t| {
            let mut decoder = ReaderBuilder::new(schema.clone()).build_decoder().ok()?;
            let wrapped = format!("{{\"v\":{t}}}");
            let read = decoder.decode(wrapped.as_bytes()).ok()?;
            (read == wrapped.len()).then_some(())?;
            let batch = decoder.flush().ok()??;
            (batch.num_rows() == 1).then(|| batch.column(0).clone())
        });
        values.push(value.unwrap_or_else(|| new_null_array(target, 1)));
    }
    if values.is_empty() {
        return Ok(new_null_array(target, 0));
    }
    let refs: Vec<&dyn Array> = values.iter().map(|a| a.as_ref()).collect();
    Ok(datafusion::arrow::compute::concat(&refs)?)
}

/// A Spark DDL schema: a list of fields (`a INT, b DOUBLE`) is a struct of them;
/// otherwise one type (`array<int>`).
pub(super) fn parse_schema(text: &str) -> Result<DataType> {
    let tokens = tokenize(text)?;
    let mut p = Tokens { tokens, at: 0 };
    let list = p.fields_or_type()?;
    if p.at != p.tokens.len() {
        return exec_err!("schema `{text}`: unexpected `{}`", p.tokens[p.at]);
    }
    Ok(list)
}

fn tokenize(text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if "<>(),:".contains(c) {
            out.push(c.to_string());
            chars.next();
        } else if c == '`' {
            chars.next();
            let name: String = chars.by_ref().take_while(|&c| c != '`').collect();
            out.push(format!("`{name}"));
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_') {
                word.push(c);
                chars.next();
            }
            out.push(word);
        } else {
            return exec_err!("schema `{text}`: unexpected `{c}`");
        }
    }
    Ok(out)
}

struct Tokens {
    tokens: Vec<String>,
    at: usize,
}

impl Tokens {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Result<String> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t.ok_or_else(|| plan_datafusion_err!("the schema ends too early"))
    }

    fn expect(&mut self, token: &str) -> Result<()> {
        match self.next()? {
            t if t == token => Ok(()),
            t => plan_err!("schema: expected `{token}`, found `{t}`"),
        }
    }

    /// `name type, …` (a struct), or one type.
    fn fields_or_type(&mut self) -> Result<DataType> {
        let second = self.tokens.get(self.at + 1).map(String::as_str);
        let is_type = matches!(second, None | Some("<" | "("));
        if is_type {
            return self.data_type();
        }
        Ok(DataType::Struct(self.fields(None)?))
    }

    /// Fields until `end` (or the end of the schema).
    fn fields(&mut self, end: Option<&str>) -> Result<Fields> {
        let mut fields = Vec::new();
        loop {
            let name = self.next()?;
            let name = name.strip_prefix('`').unwrap_or(&name).to_string();
            if self.peek() == Some(":") {
                self.at += 1;
            }
            let t = self.data_type()?;
            // `NOT NULL` and `COMMENT '…'` are not kept.
            if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("not")) {
                self.at += 2;
            }
            fields.push(Field::new(name, t, true));
            match self.peek() {
                Some(",") => self.at += 1,
                p if p == end => break,
                Some(other) => return plan_err!("schema: expected `,`, found `{other}`"),
                None => return plan_err!("schema: `{}` is not closed", end.unwrap_or("")),
            }
        }
        Ok(Fields::from(fields))
    }

    fn data_type(&mut self) -> Result<DataType> {
        let name = self.next()?.to_ascii_lowercase();
        Ok(match name.as_str() {
            "boolean" | "bool" => DataType::Boolean,
            "tinyint" | "byte" => DataType::Int8,
            "smallint" | "short" => DataType::Int16,
            "int" | "integer" => DataType::Int32,
            "bigint" | "long" => DataType::Int64,
            "float" | "real" => DataType::Float32,
            "double" => DataType::Float64,
            "string" | "varchar" | "char" => {
                if self.peek() == Some("(") {
                    self.at += 3;
                }
                DataType::Utf8
            }
            "binary" => DataType::Binary,
            "date" => DataType::Date32,
            "timestamp" | "timestamp_ntz" | "timestamp_ltz" => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            "decimal" | "dec" | "numeric" => {
                let (mut precision, mut scale) = (10u8, 0i8);
                if self.peek() == Some("(") {
                    self.at += 1;
                    precision = self.next()?.parse().map_err(|_| {
                        plan_datafusion_err!("schema: a decimal's precision is a number")
                    })?;
                    if self.peek() == Some(",") {
                        self.at += 1;
                        scale = self.next()?.parse().map_err(|_| {
                            plan_datafusion_err!("schema: a decimal's scale is a number")
                        })?;
                    }
                    self.expect(")")?;
                }
                DataType::Decimal128(precision, scale)
            }
            "array" => {
                self.expect("<")?;
                let item = self.data_type()?;
                self.expect(">")?;
                DataType::List(Arc::new(Field::new("item", item, true)))
            }
            "map" => {
                self.expect("<")?;
                let key = self.data_type()?;
                self.expect(",")?;
                let value = self.data_type()?;
                self.expect(">")?;
                let entries = Fields::from(vec![
                    Field::new("key", key, false),
                    Field::new("value", value, true),
                ]);
                DataType::Map(
                    Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                    false,
                )
            }
            "struct" => {
                self.expect("<")?;
                let fields = self.fields(Some(">"))?;
                self.expect(">")?;
                DataType::Struct(fields)
            }
            other => return plan_err!("schema: `{other}` is not a type quern reads from JSON"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_schema;
    use datafusion::arrow::datatypes::DataType;

    #[test]
    fn spark_ddl_schemas() {
        let t = parse_schema("a INT, b DOUBLE").unwrap();
        assert_eq!(
            t.to_string(),
            DataType::Struct(
                vec![
                    datafusion::arrow::datatypes::Field::new("a", DataType::Int32, true),
                    datafusion::arrow::datatypes::Field::new("b", DataType::Float64, true),
                ]
                .into()
            )
            .to_string()
        );
        assert!(matches!(
            parse_schema("array<struct<x: string, `y z` map<string, bigint>>>").unwrap(),
            DataType::List(_)
        ));
        assert!(parse_schema("a INT,").is_err());
        assert!(parse_schema("a NOPE").is_err());
    }
}
