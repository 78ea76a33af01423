//! A query the language rejects, with where in the text it went wrong.

/// A query that does not parse or does not make sense (an unknown function, an aggregate
/// where none may be). `line` counts from 1, `column` from 0, as IoT Hub's messages do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl QueryError {
    /// An error at character `offset` of `text`.
    pub(crate) fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let mut line = 1;
        let mut column = 0;
        for c in text.chars().take(offset) {
            if c == '\n' {
                line += 1;
                column = 0;
            } else {
                column += 1;
            }
        }
        QueryError {
            line,
            column,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SQL query parse failed due to following errors: Line {}:{} {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for QueryError {}
