//! The PostgreSQL engine behind ironhub's store ports (see `DESIGN.md`, "Scale-out"): where
//! several server nodes of one hub keep their shared state. This crate holds the foundation
//! every port implementation builds on: the connection options ([`PgOptions`], a
//! `postgres://` URL with its credentials, `sslmode` and a CA file), a pool of connections
//! over TLS ([`connect`]) and the versioned schema ([`migrate`]), applied once at start under
//! an advisory lock so that nodes starting together never migrate twice; and [`PgStore`],
//! every durable port (`ironhub_store::Store`), the rate windows, and the settings the nodes
//! share beyond the ports.

mod migrations;
mod options;
mod pg_c2d;
mod pg_certificates;
mod pg_configurations;
mod pg_dps;
mod pg_files;
mod pg_jobs;
mod pg_module_inputs;
mod pg_modules;
mod pg_move;
mod pg_network;
mod pg_rates;
mod pg_reader_claims;
mod pg_registry;
mod pg_routing;
mod pg_sessions;
mod pg_shared;
mod pg_twin_aggregate;
mod pg_twin_sql;
mod pg_twin_top;
mod pg_twins;
mod pool;
mod store;
mod tls;

pub use migrations::{MIGRATIONS, applied_versions, migrate, pending};
pub use options::PgOptions;
pub use pool::{Pool, connect};
pub use store::PgStore;
