//! The ports' conformance suite (`ironhub_store::testkit`) against a real PostgreSQL, each case
//! on a database of its own (see `tests/common`); the twin and queue cases are in `twins_c2d.rs`.

mod common;

use std::sync::Arc;

use common::test_database;
use ironhub_postgres::PgStore;

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

testkit_cases!(
    registry::devices_are_written_compare_and_swap,
    registry::a_failed_batch_writes_nothing_and_etags_are_never_reused,
    registry::devices_list_in_id_order_by_pages,
    registry::runtime_updates_keep_the_etag_and_replaces_keep_runtime_fields,
    registry::connections_belong_to_their_node,
    registry::node_heartbeats_tell_which_nodes_are_gone,
    registry::deleting_a_device_deletes_its_twin_queue_and_sessions,
    registry::settings_are_created_once_and_endpoints_kept,
    registry::persistent_sessions_are_kept_and_discarded,
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
