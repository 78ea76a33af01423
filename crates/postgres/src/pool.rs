//! The pool of connections every port borrows from.

use ironhub_store::{Result, StoreError};

use crate::{PgOptions, tls};

pub use deadpool_postgres::Pool;

/// Connections kept open at most, per node.
const MAX_CONNECTIONS: usize = 16;

/// A pool of connections to the database of `options`; checks that one connection opens, so
/// a wrong URL or password is told at start.
pub async fn connect(options: &PgOptions) -> Result<Pool> {
    let manager_config = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
    };
    let config = options.config.clone();
    // Without TLS, no connector: rustls refuses to build one for a Unix socket's empty name.
    let manager = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    } else {
        deadpool_postgres::Manager::from_config(config, tls::connector(options)?, manager_config)
    };
    let pool = Pool::builder(manager)
        .max_size(MAX_CONNECTIONS)
        .runtime(deadpool_postgres::Runtime::Tokio1)
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

/// A connection of the pool.
pub(crate) async fn client(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get()
        .await
        .map_err(|e| StoreError::Engine(format!("PostgreSQL connection: {e}")))
}
