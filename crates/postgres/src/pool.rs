//! The pool of connections every port borrows from.

use std::time::Duration;

use ironhub_store::{Result, StoreError};

use crate::{PgOptions, tls};

pub use deadpool_postgres::Pool;

/// Connections kept open at most, per node.
const MAX_CONNECTIONS: usize = 16;
/// How long a request waits for a connection of the pool, for a new connection to open, and
/// for an idle one to be checked, before it fails as unavailable rather than hang while the
/// database is down or unreachable.
const WAIT: Duration = Duration::from_secs(10);
const CONNECT: Duration = Duration::from_secs(5);

/// A pool of connections to the database of `options`; checks that one connection opens, so
/// a wrong URL or password is told at start.
pub async fn connect(options: &PgOptions) -> Result<Pool> {
    let manager_config = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
    };
    let mut config = options.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT);
    }
    // Without TLS, no connector: rustls refuses to build one for a Unix socket's empty name.
    let manager = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    } else {
        deadpool_postgres::Manager::from_config(config, tls::connector(options)?, manager_config)
    };
    let pool = Pool::builder(manager)
        .max_size(MAX_CONNECTIONS)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(WAIT))
        .create_timeout(Some(CONNECT))
        .recycle_timeout(Some(CONNECT))
        .build()
        .map_err(|e| StoreError::Engine(format!("PostgreSQL pool: {e}")))?;
    let _first = pool.get().await.map_err(|e| {
        StoreError::Engine(format!(
            "cannot connect to PostgreSQL (database {:?}): {e}",
            options.database().unwrap_or_default()
        ))
    })?;
    Ok(pool)
}

/// A connection of the pool; `Unavailable` when none can be had within the bounds above.
pub(crate) async fn client(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| {
        let gone = match &e {
            deadpool_postgres::PoolError::Backend(e) => server_gone(e),
            deadpool_postgres::PoolError::Timeout(_) => true,
            _ => false,
        };
        let message = format!("PostgreSQL connection: {e}");
        if gone {
            StoreError::Unavailable(message)
        } else {
            StoreError::Engine(message)
        }
    })
}

/// Whether `e` says the server is not there now, rather than that a statement failed: the
/// connection closed or could not open (refused, unreachable, timed out), or the server is
/// shutting down or starting (SQLSTATE class 57P: admin_shutdown, crash_shutdown,
/// cannot_connect_now).
pub(crate) fn server_gone(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("57P");
    }
    // No SQLSTATE: the failure is the connection's own (an I/O error, a connect timeout).
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}
