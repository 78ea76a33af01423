//! The schema migrations against a real PostgreSQL (`IRONHUB_TEST_POSTGRES_URL`, which
//! `scripts/test` sets; without it these tests skip, or fail when `CI` is set).

#![allow(clippy::unwrap_used)]

mod common;

use common::test_database;
use ironhub_postgres::{MIGRATIONS, applied_versions, connect, migrate, pending};

#[tokio::test]
async fn migrating_twice_applies_each_version_once() {
    let Some(options) = test_database("twice").await else {
        return;
    };
    let pool = connect(&options).await.unwrap();
    assert_eq!(applied_versions(&pool).await.unwrap(), Vec::<i32>::new());
    let all: Vec<i32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
    assert_eq!(pending(&[]).unwrap(), all);
    assert_eq!(migrate(&pool).await.unwrap(), all);
    assert_eq!(migrate(&pool).await.unwrap(), Vec::<i32>::new());
    assert_eq!(applied_versions(&pool).await.unwrap(), all);
    assert_eq!(pending(&all).unwrap(), Vec::<i32>::new());
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
            migrate(&pool).await.unwrap().len()
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
    let applied = applied_versions(&pool).await.unwrap();
    assert!(pending(&applied).unwrap_err().to_string().contains("9999"));
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
