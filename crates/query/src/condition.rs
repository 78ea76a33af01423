//! A stand-alone condition: one expression and nothing else (a routing query, the `WHERE` of a
//! job).

use serde_json::Value;

use crate::expr::Expr;
use crate::functions::Dialect;
use crate::parser::Parser;
use crate::value::is_true;
use crate::{QueryError, lexer};

/// A stand-alone condition (a routing query, the `WHERE` of a job): an expression and
/// nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition(pub Expr);

impl Condition {
    /// Parses `text` as one expression of `dialect`.
    pub fn parse(text: &str, dialect: Dialect) -> Result<Self, QueryError> {
        let tokens = lexer::tokenize_with(text, dialect == Dialect::Routing)?;
        let mut parser = Parser::new(text, tokens, dialect);
        let expr = parser.expr()?;
        parser.expect_end()?;
        Ok(Condition(expr))
    }

    /// Whether the condition is true of `doc` (undefined and non-boolean answers are not).
    pub fn matches(&self, doc: &Value) -> bool {
        is_true(&self.0.eval(doc))
    }
}
