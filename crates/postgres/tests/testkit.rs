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

// Every case of the ports this engine implements (`store_suite!` takes an engine that has
// them all); not yet: modules, routing, network rules.
testkit_cases!(
    registry::devices_are_written_compare_and_swap,
    registry::a_failed_batch_writes_nothing_and_etags_are_never_reused,
    registry::devices_list_in_id_order_by_pages,
    registry::runtime_updates_keep_the_etag_and_replaces_keep_runtime_fields,
    registry::connections_belong_to_their_node,
    registry::node_heartbeats_tell_which_nodes_are_gone,
    registry::deleting_a_device_deletes_its_twin_queue_and_sessions,
    registry::settings_are_created_once_and_endpoints_kept,
    registry::twins_are_written_compare_and_swap,
    registry::persistent_sessions_are_kept_and_discarded,
    twin_scan::scans_page_devices_in_id_order_with_their_twins,
    twin_scan::conditions_never_lose_a_matching_device,
    twin_scan::groups_keep_types_apart_and_count_every_device,
    twin_scan::first_twins_come_in_the_language_order,
    c2d::enqueue_needs_the_device_and_room_in_its_queue,
    c2d::messages_are_locked_oldest_first_once_at_a_time,
    c2d::an_expired_lock_redelivers_and_counts_the_delivery,
    c2d::settling_writes_the_feedback_the_ack_asks_for,
    c2d::worn_out_and_expired_messages_are_dead_lettered,
    c2d::purge_empties_the_queue_with_feedback,
    c2d::released_locks_make_messages_visible,
    c2d::feedback_is_received_in_locked_batches,
    certificates::certificates_are_written_compare_and_swap,
    certificates::each_scope_has_its_own_names,
    dps::settings_are_created_once,
    dps::ids_are_case_insensitive_and_keep_their_case,
    dps::concurrent_creates_in_other_cases_make_one_record,
    dps::a_failed_batch_writes_nothing,
    dps::lists_page_in_id_order_and_filter_by_group,
    dps::operations_are_records_like_the_others,
    dps::beginning_a_registration_claims_one_record,
    file_notifications::notifications_are_locked_oldest_first_once_at_a_time,
    file_notifications::an_expired_lock_redelivers_and_loses_the_old_token,
    file_notifications::worn_out_and_expired_notifications_are_dropped,
);
