//! The conformance suite of the ports: what any engine must do, whatever it is built on.
//! An engine runs it from its own tests, one module per port:
//!
//! ```ignore
//! mod store {
//!     ironhub_store::store_suite!(|clock| (Arc::new(MyStore::new(clock)), ()));
//! }
//! mod event_log {
//!     ironhub_store::event_log_suite!(|partitions| (Arc::new(MyLog::new(partitions)), ()));
//! }
//! mod streams {
//!     ironhub_store::event_streams_suite!(|| (Arc::new(MyStreams::new()), ()));
//! }
//! mod bus {
//!     ironhub_store::bus_suite!(|| {
//!         let a = MyBus::new("a");
//!         let b = a.bridged("b");
//!         (Arc::new(a), Arc::new(b))
//!     });
//! }
//! ```
//!
//! A store factory gets the [`crate::ManualClock`] the store must read the time from, and
//! returns a fresh, empty store with whatever must live as long as it (a temporary
//! directory). Each case is one test, so a failure names the rule it breaks. The calling
//! crate needs `tokio` (with `macros` and `rt`).

pub mod bus;
pub mod c2d;
pub mod certificates;
pub mod configurations;
pub mod dps;
pub mod endpoints;
pub mod event_log;
pub mod file_notifications;
pub mod jobs;
pub mod module_inputs;
pub mod modules;
pub mod rates;
pub mod reader_claims;
pub mod registry;
pub mod streams;
pub mod twin_scan;

use std::sync::Arc;

use chrono::Utc;

use crate::{
    C2dRules, C2dStore, DeviceRecord, DeviceStatus, DeviceWrite, DpsStore, RegistryStore,
    SessionStore, TwinStore,
};

/// The ports of a device's own state, which the [`registry`], [`twin_scan`] and [`c2d`] cases
/// use: an engine runs those cases as soon as it has these, before it has every port of
/// [`crate::Store`] (as each case takes only the ports it uses).
pub trait DeviceState: RegistryStore + TwinStore + C2dStore + SessionStore {}

impl<T: RegistryStore + TwinStore + C2dStore + SessionStore + ?Sized> DeviceState for T {}

/// The ports the [`dps`] cases use: DPS records, and devices to tell their etags apart.
pub trait DpsState: RegistryStore + DpsStore {}

impl<T: RegistryStore + DpsStore + ?Sized> DpsState for T {}

/// The node the cases act as.
pub const NODE: &str = "node-a";
/// Another node sharing the store.
pub const OTHER_NODE: &str = "node-b";

/// A device record with every optional field empty.
pub fn device(id: &str) -> DeviceRecord {
    DeviceRecord {
        device_id: id.into(),
        generation_id: "1".into(),
        etag: String::new(),
        status: DeviceStatus::Enabled,
        status_reason: None,
        status_updated_time: None,
        connection_state: crate::ConnectionState::Disconnected,
        connection_node: None,
        connection_state_updated_time: None,
        last_activity_time: None,
        cloud_to_device_message_count: 0,
        authentication: crate::Authentication::default(),
        iot_edge: false,
        device_scope: None,
        parent_scopes: vec![],
    }
}

/// Creates a device and returns it as stored.
pub async fn create_device<S: RegistryStore + ?Sized>(store: &Arc<S>, id: &str) -> DeviceRecord {
    store
        .write_devices(vec![DeviceWrite::Create(device(id))])
        .await
        .expect("the store works")
        .expect("the device is new")[0]
        .clone()
        .expect("a created device is returned")
}

/// Queue rules small enough to reach every limit.
pub fn rules() -> C2dRules {
    C2dRules {
        max_depth: 3,
        max_delivery_count: 2,
        lock_duration: chrono::TimeDelta::seconds(60),
        feedback_ttl: chrono::TimeDelta::seconds(3600),
        feedback_lock_duration: chrono::TimeDelta::seconds(30),
        feedback_batch: 2,
    }
}

/// The current time, for cases that do not move the clock.
pub fn now() -> chrono::DateTime<Utc> {
    Utc::now()
}

/// Runs every store case against the engine `$make` builds: a closure taking the
/// `Arc<ManualClock>` the store reads the time from and returning
/// `(Arc<dyn Store>-compatible store, guard)`. With `async_or_skip: $make`, the closure
/// returns a future of `Option<(store, guard)>` instead, `None` skipping the case (an engine
/// on a server the machine may lack); those cases run on a multi-threaded runtime.
#[macro_export]
macro_rules! store_suite {
    (async_or_skip: $make:expr) => {
        $crate::store_suite!(@list async_or_skip $make);
    };
    ($make:expr) => {
        $crate::store_suite!(@list sync $make);
    };
    (@list $mode:ident $make:expr) => {
        $crate::store_suite!(@cases $mode $make;
            registry::devices_are_written_compare_and_swap,
            registry::a_failed_batch_writes_nothing_and_etags_are_never_reused,
            registry::devices_list_in_id_order_by_pages,
            registry::runtime_updates_keep_the_etag_and_replaces_keep_runtime_fields,
            registry::connections_belong_to_their_node,
            registry::node_heartbeats_tell_which_nodes_are_gone,
            registry::deleting_a_device_deletes_its_twin_queue_and_sessions,
            registry::settings_are_created_once_and_endpoints_kept,
            registry::twins_are_written_compare_and_swap,
            registry::a_twin_the_engine_refuses_leaves_the_stored_one,
            registry::persistent_sessions_are_kept_and_discarded,
            modules::modules_are_written_compare_and_swap,
            modules::modules_list_in_id_order_and_go_with_their_device,
            modules::module_twins_are_written_compare_and_swap,
            modules::module_twins_scan_in_id_order,
            modules::module_connections_keep_the_etag_and_belong_to_their_node,
            module_inputs::module_input_queues_keep_order_until_removed_or_expired,
            twin_scan::scans_page_devices_in_id_order_with_their_twins,
            twin_scan::conditions_never_lose_a_matching_device,
            twin_scan::groups_keep_types_apart_and_count_every_device,
            twin_scan::first_twins_come_in_the_language_order,
            twin_scan::registry_fields_narrow_exactly,
            c2d::enqueue_needs_the_device_and_room_in_its_queue,
            c2d::messages_are_locked_oldest_first_once_at_a_time,
            c2d::an_expired_lock_redelivers_and_counts_the_delivery,
            c2d::settling_writes_the_feedback_the_ack_asks_for,
            c2d::worn_out_and_expired_messages_are_dead_lettered,
            c2d::purge_empties_the_queue_with_feedback,
            c2d::released_locks_make_messages_visible,
            c2d::feedback_is_received_in_locked_batches,
            c2d::queues_read_back_and_import_as_they_were,
            certificates::certificates_are_written_compare_and_swap,
            certificates::each_scope_has_its_own_names,
            dps::settings_are_created_once,
            dps::ids_are_case_insensitive_and_keep_their_case,
            dps::concurrent_creates_in_other_cases_make_one_record,
            dps::a_failed_batch_writes_nothing,
            dps::lists_page_in_id_order_and_filter_by_group,
            dps::operations_are_records_like_the_others,
            dps::beginning_a_registration_claims_one_record,
            dps::a_device_and_a_record_are_written_together,
            file_notifications::notifications_are_locked_oldest_first_once_at_a_time,
            file_notifications::an_expired_lock_redelivers_and_loses_the_old_token,
            file_notifications::worn_out_and_expired_notifications_are_dropped,
            streams::routing_is_written_compare_and_swap,
            endpoints::an_endpoint_lease_has_one_holder,
            endpoints::an_expired_or_released_lease_is_taken_over,
            endpoints::endpoint_health_is_kept_per_endpoint,
            streams::network_rules_are_kept_per_scope,
            configurations::configurations_are_written_compare_and_swap,
            jobs::jobs_are_written_compare_and_swap,
            jobs::a_job_claims_each_device_once,
            jobs::a_job_device_is_replaced_compare_and_swap,
            reader_claims::concurrent_claims_leave_exactly_one_holder,
            reader_claims::claims_lapse_renew_and_release_by_their_holder,
        );
    };
    (@cases sync $make:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let clock = ::std::sync::Arc::new($crate::ManualClock::default());
                let (store, _keep) = ($make)(clock.clone());
                // Every port, although a case takes only those it uses.
                let _: ::std::sync::Arc<dyn $crate::Store> = store.clone();
                $crate::testkit::$module::$case(store, clock).await;
            }
        )*
    };
    (@cases async_or_skip $make:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let clock = ::std::sync::Arc::new($crate::ManualClock::default());
                let Some((store, _keep)) = ($make)(clock.clone()).await else {
                    return;
                };
                let _: ::std::sync::Arc<dyn $crate::Store> = store.clone();
                $crate::testkit::$module::$case(store, clock).await;
            }
        )*
    };
}

/// Runs every event log case against the logs `$make` builds: a closure taking a partition
/// count and returning `(Arc<dyn EventLog>-compatible log, guard)`, the log new and empty.
/// An engine whose batches are atomic adds `fail_at: $inject`, a closure
/// `Fn(&guard, Option<(partition, sequence)>)` that makes storing that event fail (`None`
/// heals it), for [`event_log::a_batch_failing_partway_appends_nothing`].
#[macro_export]
macro_rules! event_log_suite {
    ($make:expr, fail_at: $inject:expr) => {
        $crate::event_log_suite!($make);
        #[tokio::test]
        async fn a_batch_failing_partway_appends_nothing() {
            let make = $make;
            let make = |partitions: u32| {
                let (log, keep) = make(partitions);
                let log: ::std::sync::Arc<dyn $crate::EventLog> = log;
                (log, keep)
            };
            $crate::testkit::event_log::a_batch_failing_partway_appends_nothing(make, $inject)
                .await;
        }
    };
    ($make:expr) => {
        $crate::event_log_suite!(@cases $make;
            appends_are_numbered_in_order_without_gaps,
            appends_of_many_keep_their_order,
            readers_start_where_they_ask_and_wait_for_events,
            consumer_groups_keep_checkpoints,
            retention_keeps_the_newest_and_numbering_continues,
            imports_keep_enqueued_times,
            batches_append_in_order,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let make = $make;
                let make = |partitions: u32| {
                    let (log, keep) = make(partitions);
                    let log: ::std::sync::Arc<dyn $crate::EventLog> = log;
                    (log, keep)
                };
                $crate::testkit::event_log::$case(make).await;
            }
        )*
    };
}

/// Runs every named event streams case against the engine `$make` builds: a closure
/// returning `(Arc<dyn EventStreams>-compatible streams, guard)`, new and empty.
#[macro_export]
macro_rules! event_streams_suite {
    ($make:expr) => {
        #[tokio::test]
        async fn streams_are_separate_logs_created_once() {
            let (streams, _keep) = ($make)();
            let streams: ::std::sync::Arc<dyn $crate::EventStreams> = streams;
            $crate::testkit::streams::streams_are_separate_logs_created_once(streams).await;
        }
    };
}

/// Runs every rate windows case against the engine `$make` builds: a closure returning two
/// handles on one new, empty store (`(Arc<dyn RateWindows>, Arc<dyn RateWindows>, guard)`-compatible),
/// as two nodes sharing it. With `async_or_skip: $make`, a future of an `Option` of them, as
/// [`store_suite!`] takes it.
#[macro_export]
macro_rules! rate_windows_suite {
    (async_or_skip: $make:expr) => {
        $crate::rate_windows_suite!(@list async_or_skip $make);
    };
    ($make:expr) => {
        $crate::rate_windows_suite!(@list sync $make);
    };
    (@list $mode:ident $make:expr) => {
        $crate::rate_windows_suite!(@cases $mode $make;
            counts_add_up_across_nodes,
            keys_and_windows_are_apart,
            old_windows_are_forgotten,
            concurrent_additions_are_not_lost,
        );
    };
    (@cases sync $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (a, b, _keep) = ($make)();
                let a: ::std::sync::Arc<dyn $crate::RateWindows> = a;
                let b: ::std::sync::Arc<dyn $crate::RateWindows> = b;
                $crate::testkit::rates::$case(a, b).await;
            }
        )*
    };
    (@cases async_or_skip $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((a, b, _keep)) = ($make)().await else {
                    return;
                };
                let a: ::std::sync::Arc<dyn $crate::RateWindows> = a;
                let b: ::std::sync::Arc<dyn $crate::RateWindows> = b;
                $crate::testkit::rates::$case(a, b).await;
            }
        )*
    };
}

/// Runs every device bus case against the buses `$make` builds: a closure returning the buses
/// of two nodes of one new hub, bridged (`(Arc<dyn DeviceBus>, Arc<dyn DeviceBus>)`-compatible).
#[macro_export]
macro_rules! bus_suite {
    ($make:expr) => {
        $crate::bus_suite!(@cases $make;
            a_new_connection_takes_over,
            messages_reach_the_current_connection_only,
            waiting_for_a_device_ends_when_it_connects,
            method_calls_round_trip_and_time_out,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (a, b) = ($make)();
                let a: ::std::sync::Arc<dyn $crate::DeviceBus> = a;
                let b: ::std::sync::Arc<dyn $crate::DeviceBus> = b;
                $crate::testkit::bus::$case(a, b).await;
            }
        )*
    };
}
