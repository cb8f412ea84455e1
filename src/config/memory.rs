//! `[engine] memory_limit`: a size such as `"4GiB"`, `"512MiB"` or `"2g"`, and the
//! default when it is absent.

/// The smallest limit quern accepts: below it a sort's merge headroom alone
/// (DataFusion's `sort_spill_reservation_bytes`, 10 MiB) leaves nothing to work with.
pub(crate) const MIN_MEMORY_LIMIT: u64 = 32 << 20;

/// The share of the machine's memory (or of its cgroup's limit, when lower) that
/// queries get when `memory_limit` is absent.
const DEFAULT_SHARE: f64 = 0.75;

/// `memory_limit`'s value: a size of at least [`MIN_MEMORY_LIMIT`], read from text
/// (`"4GiB"`) or a number of bytes; a bad one is an error at its line of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit(u64);

impl MemoryLimit {
    pub(crate) fn bytes(self) -> u64 {
        self.0
    }

    fn parse(text: &str) -> Result<MemoryLimit, String> {
        let bytes = parse_bytes(text)?;
        if bytes < MIN_MEMORY_LIMIT {
            return Err(format!(
                "`{text}` is below the smallest limit, {}; queries need room for a sort's merge",
                format_bytes(MIN_MEMORY_LIMIT)
            ));
        }
        Ok(MemoryLimit(bytes))
    }
}

impl<'de> serde::Deserialize<'de> for MemoryLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Given {
            Text(String),
            Bytes(u64),
        }
        let text = match Given::deserialize(deserializer)? {
            Given::Text(t) => t,
            Given::Bytes(b) => b.to_string(),
        };
        MemoryLimit::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("key `engine.memory_limit`: {e}")))
    }
}

/// A size in bytes: a number (a fraction allowed) and a unit `B`, `KiB`, `MiB`, `GiB`,
/// `TiB` — or `k`, `m`, `g`, `t` / `KB`, `MB`, `GB`, `TB`, which quern reads as the same
/// powers of 1024, as Spark (`4g`) and DataFusion (`4G`) do. Case does not matter.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a size; write a number and a unit, such as \"4GiB\" or \"512MiB\"")
    })?;
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        other => {
            return Err(format!(
                "`{other}` in `{text}` is not a unit; write B, KiB, MiB, GiB or TiB (\"4GiB\")"
            ))
        }
    };
    let bytes = number * 1024f64.powi(power);
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(bytes as u64)
}

/// `bytes` as a short text with a binary unit (`512 MiB`, `3.5 GiB`).
pub(crate) fn format_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    match value.fract() == 0.0 {
        true => format!("{value} {}", units[unit]),
        false => format!("{value:.1} {}", units[unit]),
    }
}

/// The limit when none is set: [`DEFAULT_SHARE`] of the memory this process may use
/// (the machine's, or its cgroup's when that is lower), at least [`MIN_MEMORY_LIMIT`].
pub(crate) fn default_memory_limit() -> u64 {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()),
    );
    let mut total = system.total_memory();
    if let Some(cgroup) = system.cgroup_limits() {
        if cgroup.total_memory > 0 {
            total = total.min(cgroup.total_memory);
        }
    }
    ((total as f64 * DEFAULT_SHARE) as u64).max(MIN_MEMORY_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5GB"), Ok(3 << 29));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("lots").unwrap_err().contains("is not a size"));
        assert!(parse_bytes("4 parsecs")
            .unwrap_err()
            .contains("is not a unit"));
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn limits_have_a_minimum() {
        assert_eq!(MemoryLimit::parse("64MiB"), Ok(MemoryLimit(64 << 20)));
        assert!(MemoryLimit::parse("1MiB")
            .unwrap_err()
            .contains("below the smallest limit, 32 MiB"));
    }

    #[test]
    fn sizes_print_short() {
        assert_eq!(format_bytes(256 << 20), "256 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes(100), "100 B");
    }

    #[test]
    fn the_default_is_a_share_of_the_machine() {
        let limit = default_memory_limit();
        assert!(limit >= MIN_MEMORY_LIMIT);
    }
}
