//! The IoT Hub query language, as the Azure page "IoT Hub query language for device and
//! module twins, jobs, and message routing" describes it: a lexer and parser that point at
//! the position of a mistake, expressions with IoT Hub's semantics (undefined is not null,
//! no type coercion: `'0'` is not `0`), and the evaluation of whole queries over JSON
//! documents. Pure: no I/O, no store; the hub feeds it twins.
//!
//! Expressions ([`Expr`], [`Condition`]) stand apart from `SELECT … FROM …` ([`Query`]), so
//! routing conditions reuse them.

mod aggregate;
mod condition;
mod error;
mod expr;
mod functions;
mod hints;
mod lexer;
mod parser;
pub mod routing;
mod run;
mod select;
mod value;

pub use aggregate::{Accumulator, GroupRow, Pushdown, TopPushdown};
pub use condition::Condition;
pub use error::QueryError;
pub use expr::{BinOp, Expr, Segment, lookup};
pub use functions::{Dialect, Func};
pub use hints::{Hint, HintOp};
pub use routing::RoutingQuery;
pub use run::{Collector, ItemType};
pub use select::{Aggregate, Collection, Projection, Query, SelectItem};
pub use value::Val;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
