//! Why a selector was refused, and where.

/// Why a selector was refused: where (a column, in characters from 1) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct SelectorError {
    /// The column of the offending token.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

impl SelectorError {
    pub(crate) fn at(column: usize, message: String) -> SelectorError {
        SelectorError { column, message }
    }
}
