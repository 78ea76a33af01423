//! The ports' conformance suite (`ironhub_store::testkit`) against a real PostgreSQL, each case
//! on a database of its own (see `tests/common`).

mod common;

use std::sync::Arc;

use common::test_database;
use ironhub_postgres::PgStore;
use ironhub_store::ManualClock;

/// One test per store case, on a fresh store reading the time from the case's clock.
macro_rules! store_cases {
    ($($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(options) = test_database("kit").await else {
                    return;
                };
                let clock = Arc::new(ManualClock::default());
                let store = PgStore::open_with_clock(&options, clock.clone())
                    .await
                    .expect("the test database opens");
                let store: Arc<dyn ironhub_store::Store> = Arc::new(store);
                ironhub_store::testkit::$module::$case(store, clock).await;
            }
        )*
    };
}

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

store_cases!(
    modules::modules_are_written_compare_and_swap,
    modules::modules_list_in_id_order_and_go_with_their_device,
    modules::module_twins_are_written_compare_and_swap,
    streams::routing_is_written_compare_and_swap,
    streams::network_rules_are_kept_per_scope,
    endpoints::an_endpoint_lease_has_one_holder,
    endpoints::an_expired_or_released_lease_is_taken_over,
    endpoints::endpoint_health_is_kept_per_endpoint,
);

rate_cases!(
    counts_add_up_across_nodes,
    keys_and_windows_are_apart,
    old_windows_are_forgotten,
    concurrent_additions_are_not_lost,
);
