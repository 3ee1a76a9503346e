//! Why a configuration could not be loaded, and where in which file: the error every reader
//! of `broker.toml` returns.

use std::path::PathBuf;

/// Where in which file a problem was found; lines and columns count from 1,
/// columns in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name given to [`Config::from_toml`](super::Config::from_toml) or the path given to [`Config::load`](super::Config::load).
    pub origin: String,
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// Why a configuration could not be loaded. The `Display` text is meant for the
/// operator as is: it names the file, the position, the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {}", .path.display(), io_reason(.error))]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The underlying failure.
        error: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{at}: invalid TOML: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's description.
        message: String,
    },
    /// A key that sluice does not know, usually a typo.
    #[error("{at}: unknown key `{key}` in {table}; expected one of {}", .expected.join(", "))]
    UnknownKey {
        /// Where the key is.
        at: Location,
        /// The key as written.
        key: String,
        /// The table it was found in, e.g. `[broker]`.
        table: String,
        /// The keys that table accepts.
        expected: Vec<&'static str>,
    },
    /// A known key with an unacceptable value.
    #[error("{at}: {key}: {message}")]
    Invalid {
        /// Where the value is.
        at: Location,
        /// Full key path, e.g. `queues."orders.#".max_message_size`.
        key: String,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// `io::Error` without the "(os error N)" suffix, which only adds noise for operators.
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}
