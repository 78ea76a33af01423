//! The schema migrations against a real PostgreSQL (`IRONHUB_TEST_POSTGRES_URL`, which
//! `scripts/test` sets; without it these tests skip, or fail when `CI` is set).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use ironhub_postgres::{MIGRATIONS, PgOptions, applied_versions, connect, migrate};

/// A fresh database of its own for one test, so tests run in parallel; `None` (skip) when no
/// server is configured outside CI.
async fn test_database(name: &str) -> Option<PgOptions> {
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

#[tokio::test]
async fn migrating_twice_applies_each_version_once() {
    let Some(options) = test_database("twice").await else {
        return;
    };
    let pool = connect(&options).await.unwrap();
    assert_eq!(applied_versions(&pool).await.unwrap(), Vec::<i32>::new());
    assert_eq!(migrate(&pool).await.unwrap(), MIGRATIONS.len());
    assert_eq!(migrate(&pool).await.unwrap(), 0);
    let all: Vec<i32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
    assert_eq!(applied_versions(&pool).await.unwrap(), all);
    // The schema is there.
    let client = pool.get().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM devices", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let Some(options) = test_database("together").await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let options = options.clone();
        nodes.push(tokio::spawn(async move {
            let pool = connect(&options).await.unwrap();
            migrate(&pool).await.unwrap()
        }));
    }
    let mut total = 0;
    for node in nodes {
        total += node.await.unwrap();
    }
    assert_eq!(
        total,
        MIGRATIONS.len(),
        "exactly one node applied the schema"
    );
    let pool = connect(&options).await.unwrap();
    assert_eq!(
        applied_versions(&pool).await.unwrap().len(),
        MIGRATIONS.len()
    );
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused() {
    let Some(options) = test_database("newer").await else {
        return;
    };
    let pool = connect(&options).await.unwrap();
    migrate(&pool).await.unwrap();
    let client = pool.get().await.unwrap();
    client
        .execute("INSERT INTO schema_migrations (version) VALUES (9999)", &[])
        .await
        .unwrap();
    let e = migrate(&pool).await.unwrap_err().to_string();
    assert!(e.contains("9999"), "{e}");
}

#[tokio::test]
async fn a_wrong_database_is_told_at_connect() {
    let Some(options) = test_database("wrong").await else {
        return;
    };
    let e = connect(&options.with_database("no_such_database_here"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot connect to PostgreSQL"), "{e}");
}
