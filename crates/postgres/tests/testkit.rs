//! The ports' conformance cases (`ironhub_store::testkit`) on a real PostgreSQL (see
//! `tests/common`), for every port this engine implements; each case on a database of its own.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::test_database;
use ironhub_postgres::PgStore;
use ironhub_store::ManualClock;
use ironhub_store::testkit;

macro_rules! testkit_cases {
    ($($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(options) = test_database(stringify!($module)).await else {
                    return;
                };
                let clock = Arc::new(ManualClock::default());
                let store = PgStore::open_with_clock(&options, clock.clone()).await.unwrap();
                testkit::$module::$case(Arc::new(store), clock).await;
            }
        )*
    };
}

// Not yet: the ports PostgreSQL does not implement (modules, routing, network rules, rate
// windows).
ironhub_store::port_cases!(device_state, [testkit_cases]);
ironhub_store::port_cases!(dps, [testkit_cases]);
ironhub_store::port_cases!(certificates, [testkit_cases]);
ironhub_store::port_cases!(file_notifications, [testkit_cases]);
