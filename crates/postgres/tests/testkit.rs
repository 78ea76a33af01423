//! The ports' conformance suite (`ironhub_store::testkit`) against a real PostgreSQL, each case
//! on a database of its own (see `tests/common`); `twins_c2d.rs` adds races between two nodes.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::test_database;
use ironhub_postgres::PgStore;
use ironhub_store::ManualClock;

/// One test per rate windows case, on two stores over one database (two nodes).
macro_rules! rate_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(options) = test_database("kit").await else {
                    return;
                };
                let a = PgStore::open(&options).await.expect("the test database opens");
                let b = PgStore::open(&options).await.expect("the test database opens");
                ironhub_store::testkit::rates::$case(Arc::new(a), Arc::new(b)).await;
            }
        )*
    };
}

ironhub_store::store_suite!(async_or_skip: |clock: Arc<ManualClock>| async move {
    let options = test_database("kit").await?;
    let store = PgStore::open_with_clock(&options, clock)
        .await
        .expect("the test database opens");
    Some((Arc::new(store), ()))
});

rate_cases!(
    counts_add_up_across_nodes,
    keys_and_windows_are_apart,
    old_windows_are_forgotten,
    concurrent_additions_are_not_lost,
);
