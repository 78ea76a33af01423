//! What an operator watches: the node's counters in Prometheus text under Azure's metric
//! names ([`metrics`]), and diagnostic logs shaped like Azure's resource logs ([`diag`]).
//!
//! The domains count and log through this one facade, so an adapter adds no rule: a counter
//! is a lock-free atomic, a log line costs one flag test while its category is off. The
//! caller's address and listener reach the domain through [`caller`], set once per connection
//! by the accept loop.

pub mod caller;
pub mod diag;
pub mod metrics;
mod rotate;

pub use caller::Caller;
pub use diag::{Category, Level, Record, Resource};
pub use metrics::{Metrics, metrics};
