//! `[limits]`: how much memory the broker lets messages take before producers must wait
//! (issue 12 §1), and how many sessions, links and unsettled deliveries one connection may
//! hold (issue 16).

use super::document::{child, Node, Source, Value};
use super::error::ConfigError;

/// The keys of `[limits]`.
pub(super) const LIMITS_KEYS: &[&str] = &[
    "memory_high_watermark",
    "memory_low_watermark",
    "max_incomplete_bytes",
    "max_sessions_per_connection",
    "max_links_per_connection",
    "max_unsettled_per_link",
];

/// A memory bound: a share of the machine's RAM (or of the cgroup limit, when smaller), or a
/// number of bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watermark {
    /// This fraction (0 < f <= 1) of the RAM available to the process.
    Share(f64),
    /// This many bytes.
    Bytes(u64),
}

impl Watermark {
    /// The bound in bytes, given the RAM available to the process.
    pub fn resolve(self, ram: u64) -> u64 {
        match self {
            // Rounding down is right for a bound; RAM fits f64 exactly enough.
            Watermark::Share(f) => (ram as f64 * f) as u64,
            Watermark::Bytes(b) => b,
        }
    }
}

impl std::fmt::Display for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watermark::Share(s) => write!(f, "{}%", s * 100.0),
            Watermark::Bytes(b) => write!(f, "{b} bytes"),
        }
    }
}

/// The broker-wide memory limits (`[limits]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Above this many bytes of queued, unsettled, incomplete and buffered messages producers
    /// get no more link credit.
    pub memory_high_watermark: Watermark,
    /// Producers get credit again once usage falls below this; `None`: 9/10 of the high one.
    pub memory_low_watermark: Option<Watermark>,
    /// Bytes of unfinished multi-frame deliveries one connection may hold, besides the one
    /// large message it may have in progress.
    pub max_incomplete_bytes: u64,
    /// Sessions one connection may have at once (0: only `broker.channel_max` bounds them);
    /// a `begin` past it is answered and ended with `amqp:resource-limit-exceeded`.
    pub max_sessions_per_connection: u32,
    /// Links one connection may have at once, over all its sessions (0: no cap); an attach
    /// past it is refused with `amqp:resource-limit-exceeded`.
    pub max_links_per_connection: u32,
    /// Deliveries the broker sends a consumer link before it must settle some (0: as many as
    /// its credit allows): a prefetch bound the broker keeps whatever credit the peer grants.
    pub max_unsettled_per_link: u32,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            memory_high_watermark: Watermark::Share(0.4),
            memory_low_watermark: None,
            max_incomplete_bytes: 4 * 1024 * 1024,
            max_sessions_per_connection: 0,
            max_links_per_connection: 0,
            max_unsettled_per_link: 0,
        }
    }
}

impl LimitsConfig {
    /// The (high, low) watermarks in bytes for a process with `ram` bytes of RAM. The low one
    /// never exceeds the high one.
    pub fn watermarks(&self, ram: u64) -> (u64, u64) {
        let high = self.memory_high_watermark.resolve(ram);
        let low = match self.memory_low_watermark {
            Some(w) => w.resolve(ram),
            None => high / 10 * 9,
        };
        (high, low.min(high))
    }

    pub(super) fn read(
        &mut self,
        src: &Source,
        table: &[(String, Node)],
    ) -> Result<(), ConfigError> {
        for (key, node) in table {
            let path = &child("limits", key);
            match key.as_str() {
                "memory_high_watermark" => self.memory_high_watermark = watermark(src, node, path)?,
                "memory_low_watermark" => {
                    self.memory_low_watermark = Some(watermark(src, node, path)?)
                }
                "max_incomplete_bytes" => self.max_incomplete_bytes = size(src, node, path)?,
                "max_sessions_per_connection" => {
                    self.max_sessions_per_connection = src.count(node, path)?
                }
                "max_links_per_connection" => {
                    self.max_links_per_connection = src.count(node, path)?
                }
                "max_unsettled_per_link" => self.max_unsettled_per_link = src.count(node, path)?,
                _ => {} // rejected by `Source::table`
            }
        }
        Ok(())
    }
}

const WATERMARK_EXPECTED: &str =
    r#"expected a share of RAM such as "40%" or a size such as "2GiB""#;

fn watermark(src: &Source, node: &Node, path: &str) -> Result<Watermark, ConfigError> {
    let bad = || {
        src.invalid(
            node,
            path,
            format!("{WATERMARK_EXPECTED}, found {}", node.describe()),
        )
    };
    match &node.value {
        Value::Integer(i) if *i > 0 => Ok(Watermark::Bytes(i.unsigned_abs())),
        Value::String(s) => {
            if let Some(number) = s.trim().strip_suffix('%') {
                let share: f64 = number.trim().parse().map_err(|_| bad())?;
                if !(share > 0.0 && share <= 100.0) {
                    let message =
                        format!("a share of RAM must be above 0% and at most 100%, found {s:?}");
                    return Err(src.invalid(node, path, message));
                }
                return Ok(Watermark::Share(share / 100.0));
            }
            match parse_size(s) {
                Some(0) | None => Err(bad()),
                Some(b) => Ok(Watermark::Bytes(b)),
            }
        }
        _ => Err(bad()),
    }
}

fn size(src: &Source, node: &Node, path: &str) -> Result<u64, ConfigError> {
    let expected = r#"expected a number of bytes or a size such as "4MiB""#;
    match &node.value {
        Value::Integer(i) if *i >= 0 => Ok(i.unsigned_abs()),
        Value::String(s) => parse_size(s).ok_or_else(|| {
            src.invalid(node, path, format!("{expected}, found {}", node.describe()))
        }),
        _ => Err(src.invalid(node, path, format!("{expected}, found {}", node.describe()))),
    }
}

/// `"2GiB"`, `"512 MiB"`, `"100kB"`, `"4096"`: binary (KiB, MiB, GiB, TiB) or decimal (kB,
/// MB, GB, TB) units, or plain bytes (`B` or none).
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    number.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::{parse_size, Watermark};
    use crate::config::Config;

    fn error(text: &str) -> String {
        Config::from_toml(text, "broker.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn sizes_read_binary_and_decimal_units() {
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("512 MiB"), Some(512 << 20));
        assert_eq!(parse_size("100kB"), Some(100_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("2 parsecs"), None);
        assert_eq!(parse_size("99999999999TiB"), None);
    }

    #[test]
    fn limits_are_read_and_checked() {
        let c = Config::default();
        assert_eq!(c.limits.memory_high_watermark, Watermark::Share(0.4));
        assert_eq!(c.limits.watermarks(1000), (400, 360));
        let text = "[limits]\nmemory_high_watermark = \"8MiB\"\nmemory_low_watermark = \"4MiB\"\nmax_incomplete_bytes = \"1MiB\"\n";
        let c = Config::from_toml(text, "broker.toml").unwrap();
        assert_eq!(c.limits.watermarks(1 << 40), (8 << 20, 4 << 20));
        assert_eq!(c.limits.max_incomplete_bytes, 1 << 20);
        let c = Config::from_toml("[limits]\nmemory_high_watermark = \"25%\"\n", "b").unwrap();
        assert_eq!(c.limits.watermarks(1 << 30), (1 << 28, (1 << 28) / 10 * 9));
        assert_eq!(
            error("[limits]\nmemory_high_watermark = \"lots\"\n"),
            "broker.toml:2:25: limits.memory_high_watermark: expected a share of RAM such as \"40%\" or a size such as \"2GiB\", found \"lots\""
        );
        assert!(
            error("[limits]\nmemory_high_watermark = \"140%\"\n").contains(
                "limits.memory_high_watermark: a share of RAM must be above 0% and at most 100%"
            )
        );
        assert!(error("[limits]\nmax_incomplete_bytes = -1\n")
            .contains("broker.toml:2:24: limits.max_incomplete_bytes: expected a number of bytes"));
    }
}
