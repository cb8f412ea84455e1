//! The run date and the vars given on the command line: the typed parts of the
//! render context.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{Days, NaiveDate};

use crate::error::{Error, Result};

/// The logical date of a run (`ds`), as in Airflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunDate(NaiveDate);

impl RunDate {
    /// The date `year-month-day`, if it exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(year, month, day).map(RunDate)
    }

    /// The run date of `date`.
    pub(crate) fn from_date(date: NaiveDate) -> Self {
        RunDate(date)
    }

    /// Today in UTC: the default run date.
    pub fn today() -> Self {
        RunDate(chrono::Utc::now().date_naive())
    }

    /// `YYYY-MM-DD`.
    pub fn ds(&self) -> String {
        self.0.format("%Y-%m-%d").to_string()
    }

    /// `YYYYMMDD`.
    pub fn ds_nodash(&self) -> String {
        self.0.format("%Y%m%d").to_string()
    }

    /// The day before, `YYYY-MM-DD`.
    pub fn prev_ds(&self) -> String {
        self.0
            .checked_sub_days(Days::new(1))
            .map_or_else(|| self.ds(), |d| RunDate(d).ds())
    }

    /// The day after, `YYYY-MM-DD`.
    pub fn next_ds(&self) -> String {
        self.0
            .checked_add_days(Days::new(1))
            .map_or_else(|| self.ds(), |d| RunDate(d).ds())
    }

    /// The date.
    pub fn date(&self) -> NaiveDate {
        self.0
    }
}

impl FromStr for RunDate {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let valid_shape = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
        match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            Ok(d) if valid_shape => Ok(RunDate(d)),
            _ => Err(Error::InvalidArgument {
                what: "--ds",
                value: s.to_string(),
                message: "expected a date written YYYY-MM-DD, e.g. 2024-03-01".into(),
            }),
        }
    }
}

impl fmt::Display for RunDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// Values for `var()` given on the command line or by an embedder; they override the
/// environment's `[vars]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vars(BTreeMap<String, toml::Value>);

impl Vars {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<toml::Value>) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }

    /// Parses `name=value` as given to `--var`. The value is read as a TOML value when
    /// it is one (`7`, `true`, `1.5`, `["a", "b"]`), else as a plain string.
    pub fn parse_assignment(&mut self, assignment: &str) -> Result<()> {
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(Error::InvalidArgument {
                what: "--var",
                value: assignment.to_string(),
                message: "expected name=value".into(),
            });
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::InvalidArgument {
                what: "--var",
                value: assignment.to_string(),
                message: "the name before `=` is empty".into(),
            });
        }
        let parsed = toml::from_str::<BTreeMap<String, toml::Value>>(&format!("v = {value}"))
            .ok()
            .and_then(|mut m| m.remove("v"))
            .filter(|v| !matches!(v, toml::Value::Datetime(_)))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        self.0.insert(name.to_string(), parsed);
        Ok(())
    }

    /// The overrides, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &toml::Value)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("2024-03-01", true)]
    #[case("2024-02-30", false)]
    #[case("2024-3-1", false)]
    #[case("yesterday", false)]
    #[case("20240301", false)]
    fn parses_run_dates(#[case] text: &str, #[case] ok: bool) {
        assert_eq!(text.parse::<RunDate>().is_ok(), ok, "{text}");
    }

    #[test]
    fn neighbours_cross_month_and_year_ends() {
        let d: RunDate = "2024-01-01".parse().unwrap();
        assert_eq!(d.prev_ds(), "2023-12-31");
        assert_eq!(d.next_ds(), "2024-01-02");
        assert_eq!(d.ds_nodash(), "20240101");
        let leap: RunDate = "2024-02-28".parse().unwrap();
        assert_eq!(leap.next_ds(), "2024-02-29");
    }

    #[test]
    fn var_assignments_are_typed() {
        let mut v = Vars::new();
        v.parse_assignment("n=7").unwrap();
        v.parse_assignment("country=FR").unwrap();
        v.parse_assignment("quoted=\"a b\"").unwrap();
        v.parse_assignment("list=[\"a\", \"b\"]").unwrap();
        v.parse_assignment("day=2024-01-01").unwrap();
        let m: BTreeMap<&str, &toml::Value> = v.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(m["n"], &toml::Value::Integer(7));
        assert_eq!(m["country"], &toml::Value::String("FR".into()));
        assert_eq!(m["quoted"], &toml::Value::String("a b".into()));
        assert!(m["list"].is_array());
        assert_eq!(m["day"], &toml::Value::String("2024-01-01".into()));
        assert!(v.parse_assignment("novalue").is_err());
    }
}
