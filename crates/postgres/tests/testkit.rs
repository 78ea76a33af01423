//! The ports' conformance suite (`ironhub_store::testkit`) against a real PostgreSQL, each case
//! on a database of its own (see `tests/common`); `twins_c2d.rs` adds races between two nodes.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::test_database;
use ironhub_postgres::PgStore;
use ironhub_store::ManualClock;

ironhub_store::store_suite!(async_or_skip: |clock: Arc<ManualClock>| async move {
    let options = test_database("kit").await?;
    let store = PgStore::open_with_clock(&options, clock)
        .await
        .expect("the test database opens");
    Some((Arc::new(store), ()))
});

// Two stores over one database: two nodes.
ironhub_store::rate_windows_suite!(async_or_skip: || async {
    let options = test_database("kit").await?;
    let a = PgStore::open(&options).await.expect("the test database opens");
    let b = PgStore::open(&options).await.expect("the test database opens");
    Some((Arc::new(a), Arc::new(b), ()))
});
