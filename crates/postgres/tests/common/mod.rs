//! What the PostgreSQL tests share: a database of their own.

use std::sync::atomic::{AtomicU32, Ordering};

use ironhub_postgres::{PgOptions, connect};

/// A fresh database of its own for one test, so tests run in parallel; `None` (skip) when no
/// server is configured outside CI.
pub async fn test_database(name: &str) -> Option<PgOptions> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let Ok(url) = std::env::var("IRONHUB_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "IRONHUB_TEST_POSTGRES_URL is not set (scripts/test starts a PostgreSQL and sets it)"
        );
        eprintln!("skipped: IRONHUB_TEST_POSTGRES_URL is not set (scripts/test sets it)");
        return None;
    };
    let admin = PgOptions::parse(&url).unwrap();
    let db = format!(
        "ironhub_{name}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let pool = connect(&admin).await.unwrap();
    let client = pool.get().await.unwrap();
    // One statement each: neither may run inside a transaction block.
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    Some(admin.with_database(&db))
}
