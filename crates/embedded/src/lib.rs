//! The embedded engine behind the ports of `ironhub-store`: [`SqliteStore`] (one SQLite file
//! for the registry, modules, twins, queues, file upload notifications, certificates and DPS records),
//! [`SqliteEventLog`] (its own SQLite file for telemetry), [`SqliteEventStreams`] (named
//! streams beside it, one such file each) and [`LocalBus`] (one node's
//! connections, in memory). It passes the ports' testkit (`cargo test -p ironhub-embedded`).

mod bus;
mod error;
mod readers;
mod rows;
mod runtime_batch;
mod sqlite;
mod sqlite_aggregate;
mod sqlite_c2d;
mod sqlite_configurations;
mod sqlite_dps;
mod sqlite_eventlog;
mod sqlite_files;
mod sqlite_jobs;
mod sqlite_module_inputs;
mod sqlite_module_runtime;
mod sqlite_modules;
mod sqlite_move;
mod sqlite_order;
mod sqlite_query;
mod sqlite_rates;
mod sqlite_reader_claims;
mod sqlite_routing;
mod sqlite_typed;
mod streams;

pub use bus::LocalBus;
pub use sqlite::SqliteStore;
pub use sqlite_eventlog::SqliteEventLog;
pub use streams::SqliteEventStreams;
