//! The store ports' testkit cases for the event log and the device bus, against a real
//! nats-server.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use ironhub_nats::{Names, NatsBus, NatsEventLog};
use ironhub_store::testkit::{bus, event_log};
use ironhub_store::{DeviceBus, EventLog, Retention};

/// A factory of new, empty logs on `server` (the testkit's cases take a plain function).
fn logs(server: &common::Server) -> impl Fn(u32) -> (Arc<dyn EventLog>, ()) + use<> {
    let url = server.url();
    move |partitions| {
        let url = url.clone();
        let log = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let client = ironhub_nats::connect(&ironhub_nats::NatsOptions {
                    url,
                    ..Default::default()
                })
                .await
                .unwrap();
                let names = Names::new(&common::unique("hub"));
                NatsEventLog::open(client, &names, "$events", partitions, Retention::default())
                    .await
                    .unwrap()
            })
        });
        (Arc::new(log) as Arc<dyn EventLog>, ())
    }
}

macro_rules! log_cases {
    ($($case:ident),* $(,)?) => {
        mod event_log_cases {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(server) = common::server() else { return };
                    event_log::$case(logs(&server)).await;
                }
            )*
        }
    };
}

log_cases!(
    appends_are_numbered_in_order_without_gaps,
    readers_start_where_they_ask_and_wait_for_events,
    consumer_groups_keep_checkpoints,
    retention_keeps_the_newest_and_numbering_continues,
    imports_keep_enqueued_times,
    batches_append_in_order,
);

/// The buses of two nodes of one hub on `server`.
async fn two_nodes(server: &common::Server) -> (Arc<dyn DeviceBus>, Arc<dyn DeviceBus>) {
    let names = Names::new(&common::unique("hub"));
    let a = NatsBus::start(server.client().await, &names, "a")
        .await
        .unwrap();
    let b = NatsBus::start(server.client().await, &names, "b")
        .await
        .unwrap();
    (Arc::new(a), Arc::new(b))
}

macro_rules! bus_cases {
    ($($case:ident),* $(,)?) => {
        mod bus_cases {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(server) = common::server() else { return };
                    let (a, b) = two_nodes(&server).await;
                    bus::$case(a, b).await;
                }
            )*
        }
    };
}

bus_cases!(
    a_new_connection_takes_over,
    messages_reach_the_current_connection_only,
    waiting_for_a_device_ends_when_it_connects,
    method_calls_round_trip_and_time_out,
);

/// The named-streams case: custom streams are logs of their own beside the built-in one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_separate_logs_created_once() {
    let Some(server) = common::server() else {
        return;
    };
    let names = Names::new(&common::unique("hub"));
    let streams =
        ironhub_nats::NatsEventStreams::new(server.client().await, &names, Retention::default());
    ironhub_store::testkit::streams::streams_are_separate_logs_created_once(Arc::new(streams))
        .await;
}
