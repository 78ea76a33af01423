//! Cases of the DPS port: settings, case-insensitive ids, atomic batches, listing, and the
//! registration operations.

use std::sync::Arc;

use serde_json::json;

use super::{DpsState, create_device, device, now};
use crate::{
    DeviceWrite, DpsCollection as C, DpsRecord, DpsSettings, DpsWrite, JointConflict, ManualClock,
    WriteConflict,
};

fn record(id: &str, group: Option<&str>) -> DpsRecord {
    DpsRecord {
        id: id.into(),
        group_id: group.map(Into::into),
        etag: String::new(),
        doc: json!({ "registrationId": id, "nested": { "n": [1, 2] } }),
    }
}

async fn create(store: &Arc<dyn DpsState>, c: C, r: DpsRecord) -> DpsRecord {
    store
        .dps_write(c, vec![DpsWrite::Create(r)])
        .await
        .unwrap()
        .unwrap()[0]
        .clone()
        .unwrap()
}

/// The DPS settings are written once and never replaced (the ID scope is immutable).
pub async fn settings_are_created_once(store: Arc<dyn DpsState>, _clock: Arc<ManualClock>) {
    let first = DpsSettings {
        id_scope: "0ne0000ABCD".into(),
        policies: vec![],
        created_time: now(),
    };
    assert!(store.dps_settings().await.unwrap().is_none());
    assert_eq!(
        store.dps_settings_or_init(first.clone()).await.unwrap(),
        first
    );
    let other = DpsSettings {
        id_scope: "0ne11111111".into(),
        ..first.clone()
    };
    assert_eq!(store.dps_settings_or_init(other).await.unwrap(), first);
    assert_eq!(store.dps_settings().await.unwrap(), Some(first));
}

/// Ids are looked up and unique in any case, keep the case they were created with, and each
/// collection is its own namespace; etags are never reused, not even across ports.
pub async fn ids_are_case_insensitive_and_keep_their_case(
    store: Arc<dyn DpsState>,
    _clock: Arc<ManualClock>,
) {
    let a = create(&store, C::Enrollments, record("Dev-A", None)).await;
    assert!(!a.etag.is_empty());
    let got = store
        .dps_get(C::Enrollments, "dev-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, "Dev-A");
    assert_eq!(got.doc, record("Dev-A", None).doc);
    assert!(
        store
            .dps_get(C::EnrollmentGroups, "dev-a")
            .await
            .unwrap()
            .is_none()
    );
    let again = store
        .dps_write(
            C::Enrollments,
            vec![DpsWrite::Create(record("DEV-A", None))],
        )
        .await
        .unwrap();
    assert_eq!(again.unwrap_err(), vec![(0, WriteConflict::AlreadyExists)]);
    let replaced = store
        .dps_write(
            C::Enrollments,
            vec![DpsWrite::Replace {
                record: record("DEV-a", None),
                if_match: Some(a.etag.clone()),
            }],
        )
        .await
        .unwrap()
        .unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(replaced.id, "Dev-A");
    assert_ne!(replaced.etag, a.etag);
    let stale = store
        .dps_write(
            C::Enrollments,
            vec![DpsWrite::Delete {
                id: "dev-a".into(),
                if_match: Some(a.etag.clone()),
            }],
        )
        .await
        .unwrap();
    assert_eq!(stale.unwrap_err(), vec![(0, WriteConflict::EtagMismatch)]);
    store
        .dps_write(
            C::Enrollments,
            vec![DpsWrite::Delete {
                id: "DEV-A".into(),
                if_match: Some("*".into()),
            }],
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .dps_get(C::Enrollments, "Dev-A")
            .await
            .unwrap()
            .is_none()
    );
    let b = create(&store, C::Enrollments, record("Dev-A", None)).await;
    assert_ne!(b.etag, a.etag);
    assert_ne!(b.etag, replaced.etag);
    let device = create_device(&store, "Dev-A").await;
    assert!(![&a.etag, &replaced.etag, &b.etag].contains(&&device.etag));
}

/// Registration records created at the same time under ids differing only in case (two
/// devices registering as `AABB` and `aabb`): exactly one create wins, in one batch or from
/// concurrent callers, and the record keeps the winner's case.
pub async fn concurrent_creates_in_other_cases_make_one_record(
    store: Arc<dyn DpsState>,
    _clock: Arc<ManualClock>,
) {
    let both = store
        .dps_write(
            C::Registrations,
            vec![
                DpsWrite::Create(record("Twin-Case", Some("g"))),
                DpsWrite::Create(record("twin-case", Some("g"))),
            ],
        )
        .await
        .unwrap();
    assert_eq!(both.unwrap_err(), vec![(1, WriteConflict::AlreadyExists)]);
    assert_eq!(store.dps_count(C::Registrations, None).await.unwrap(), 0);

    let ids = ["RACE-ID", "race-id", "Race-Id", "rACE-iD"];
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let store = store.clone();
            let r = record(id, None);
            tokio::spawn(async move {
                store
                    .dps_write(C::Registrations, vec![DpsWrite::Create(r)])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(mut written) => won.push(written.pop().flatten().unwrap().id),
            Err(failed) => assert_eq!(failed, vec![(0, WriteConflict::AlreadyExists)]),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let stored = store
        .dps_get(C::Registrations, "RACE-id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id, won[0]);
    assert_eq!(store.dps_count(C::Registrations, None).await.unwrap(), 1);
}

/// A batch with one failing write writes nothing.
pub async fn a_failed_batch_writes_nothing(store: Arc<dyn DpsState>, _clock: Arc<ManualClock>) {
    let r = store
        .dps_write(
            C::EnrollmentGroups,
            vec![
                DpsWrite::Create(record("g1", None)),
                DpsWrite::Replace {
                    record: record("missing", None),
                    if_match: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.unwrap_err(), vec![(1, WriteConflict::NotFound)]);
    assert_eq!(store.dps_count(C::EnrollmentGroups, None).await.unwrap(), 0);
}

/// Lists are ordered by lower-cased id, page after an id in any case, and filter by group in
/// any case.
pub async fn lists_page_in_id_order_and_filter_by_group(
    store: Arc<dyn DpsState>,
    _clock: Arc<ManualClock>,
) {
    for (id, group) in [
        ("c", Some("G1")),
        ("B", Some("g1")),
        ("a", None),
        ("d", Some("g2")),
    ] {
        create(&store, C::Registrations, record(id, group)).await;
    }
    let ids = |records: Vec<DpsRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let page = store
        .dps_list(C::Registrations, None, 2, None)
        .await
        .unwrap();
    assert_eq!(ids(page), ["a", "B"]);
    let rest = store
        .dps_list(C::Registrations, Some("b"), 10, None)
        .await
        .unwrap();
    assert_eq!(ids(rest), ["c", "d"]);
    let g1 = store
        .dps_list(C::Registrations, None, 10, Some("g1"))
        .await
        .unwrap();
    assert_eq!(ids(g1), ["B", "c"]);
    assert_eq!(
        store.dps_count(C::Registrations, Some("G1")).await.unwrap(),
        2
    );
    assert_eq!(store.dps_count(C::Registrations, None).await.unwrap(), 4);
    assert_eq!(store.dps_count(C::Enrollments, None).await.unwrap(), 0);
}

/// A registration's operation is a record like the others: created, replaced compare-and-swap
/// (the next operation of the same device), read back as written, and deleted.
pub async fn operations_are_records_like_the_others(
    store: Arc<dyn DpsState>,
    _clock: Arc<ManualClock>,
) {
    let op = |status: &str| DpsRecord {
        id: "Reg-1".into(),
        group_id: None,
        etag: String::new(),
        doc: json!({ "operationId": format!("4.{status}"), "status": status }),
    };
    let started = create(&store, C::Operations, op("assigning")).await;
    let done = store
        .dps_write(
            C::Operations,
            vec![DpsWrite::Replace {
                record: op("assigned"),
                if_match: Some(started.etag.clone()),
            }],
        )
        .await
        .unwrap()
        .unwrap()[0]
        .clone()
        .unwrap();
    let read = store
        .dps_get(C::Operations, "reg-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, done);
    assert_eq!(read.doc["status"], "assigned");
    let late = store
        .dps_write(
            C::Operations,
            vec![DpsWrite::Replace {
                record: op("failed"),
                if_match: Some(started.etag),
            }],
        )
        .await
        .unwrap();
    assert_eq!(late.unwrap_err(), vec![(0, WriteConflict::EtagMismatch)]);
    assert!(
        store
            .dps_get(C::Registrations, "reg-1")
            .await
            .unwrap()
            .is_none()
    );
}

/// Starting a registration writes the device's operation (replacing any) and claims its
/// registration record only when it has none in any case, in one transaction: of concurrent
/// registrations whose ids differ only in case, exactly one claims, and every one gets that
/// record back.
pub async fn beginning_a_registration_claims_one_record(
    store: Arc<dyn DpsState>,
    _clock: Arc<ManualClock>,
) {
    let op = |id: &str, n: u32| DpsRecord {
        id: id.into(),
        group_id: None,
        etag: String::new(),
        doc: json!({ "operationId": format!("4.{n}"), "status": "assigning" }),
    };
    let first = store
        .dps_begin_registration(op("Claim-Me", 1), record("Claim-Me", Some("g")))
        .await
        .unwrap();
    assert!(first.claimed);
    assert_eq!(first.registration.id, "Claim-Me");
    assert_eq!(first.registration.group_id.as_deref(), Some("g"));
    assert_ne!(first.operation.etag, first.registration.etag);
    assert_eq!(
        store.dps_get(C::Operations, "claim-me").await.unwrap(),
        Some(first.operation.clone())
    );
    assert_eq!(
        store.dps_get(C::Registrations, "CLAIM-ME").await.unwrap(),
        Some(first.registration.clone())
    );

    let again = store
        .dps_begin_registration(op("claim-me", 2), record("claim-me", None))
        .await
        .unwrap();
    assert!(!again.claimed);
    assert_eq!(again.registration, first.registration);
    assert_eq!(again.operation.id, "Claim-Me");
    assert_eq!(again.operation.doc["operationId"], "4.2");
    assert_ne!(again.operation.etag, first.operation.etag);
    assert_eq!(
        store.dps_get(C::Operations, "CLAIM-me").await.unwrap(),
        Some(again.operation)
    );

    let ids = ["RACE-ID", "race-id", "Race-Id", "rACE-iD"];
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let store = store.clone();
            let (o, r) = (op(id, n as u32), record(id, None));
            tokio::spawn(async move { store.dps_begin_registration(o, r).await.unwrap() })
        })
        .collect();
    let mut begun = Vec::new();
    for task in tasks {
        begun.push(task.await.unwrap());
    }
    let claims: Vec<_> = begun.iter().filter(|b| b.claimed).collect();
    assert_eq!(claims.len(), 1, "{begun:?}");
    for b in &begun {
        assert_eq!(b.registration, claims[0].registration);
    }
    assert_eq!(store.dps_count(C::Registrations, None).await.unwrap(), 2);
    assert_eq!(store.dps_count(C::Operations, None).await.unwrap(), 2);
    let last = store
        .dps_get(C::Operations, "race-ID")
        .await
        .unwrap()
        .unwrap();
    assert!(begun.iter().any(|b| b.operation == last));
}

/// A hub device and a DPS record are written in one transaction: both, or neither when either
/// half conflicts (the second half's failure undoes the first).
pub async fn a_device_and_a_record_are_written_together(
    store: Arc<dyn DpsState>,
    _clock: Arc<ManualClock>,
) {
    let joint = async |d: DeviceWrite, r: DpsWrite| {
        store
            .dps_write_with_device(d, C::Registrations, r)
            .await
            .unwrap()
    };
    let replace_device = |etag: &str| DeviceWrite::Replace {
        record: device("joint-1"),
        if_match: Some(etag.into()),
    };
    let replace_record = |etag: &str| DpsWrite::Replace {
        record: record("joint-1", None),
        if_match: Some(etag.into()),
    };
    let (written, stored) = joint(
        DeviceWrite::Create(device("joint-1")),
        DpsWrite::Create(record("Joint-1", Some("g"))),
    )
    .await
    .unwrap();
    let (written, stored) = (written.unwrap(), stored.unwrap());
    assert_eq!(
        store.get_device("joint-1").await.unwrap(),
        Some(written.clone())
    );
    assert_eq!(
        store.dps_get(C::Registrations, "joint-1").await.unwrap(),
        Some(stored.clone())
    );
    assert_ne!(written.etag, stored.etag);

    // The device's half fails: the record is not written.
    let refused = joint(
        DeviceWrite::Create(device("joint-1")),
        DpsWrite::Create(record("other", None)),
    )
    .await;
    assert_eq!(
        refused,
        Err(JointConflict::Device(WriteConflict::AlreadyExists))
    );
    assert_eq!(
        store.dps_get(C::Registrations, "other").await.unwrap(),
        None
    );

    // The record's half fails: the device is not written either.
    let refused = joint(
        DeviceWrite::Create(device("joint-2")),
        DpsWrite::Create(record("JOINT-1", None)),
    )
    .await;
    assert_eq!(
        refused,
        Err(JointConflict::Dps(WriteConflict::AlreadyExists))
    );
    assert_eq!(store.get_device("joint-2").await.unwrap(), None);
    let refused = joint(replace_device(&written.etag), replace_record("stale")).await;
    assert_eq!(
        refused,
        Err(JointConflict::Dps(WriteConflict::EtagMismatch))
    );
    assert_eq!(
        store.get_device("joint-1").await.unwrap(),
        Some(written.clone())
    );
    assert_eq!(
        store.dps_get(C::Registrations, "joint-1").await.unwrap(),
        Some(stored.clone())
    );

    // Both replaced together, each with a new etag.
    let (device_after, record_after) =
        joint(replace_device(&written.etag), replace_record(&stored.etag))
            .await
            .unwrap();
    let (device_after, record_after) = (device_after.unwrap(), record_after.unwrap());
    assert_ne!(device_after.etag, written.etag);
    assert_eq!(record_after.id, "Joint-1");
    assert_eq!(record_after.group_id, None);
    assert_eq!(
        store.dps_get(C::Registrations, "JOINT-1").await.unwrap(),
        Some(record_after)
    );
}
