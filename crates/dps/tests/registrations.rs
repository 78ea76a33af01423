//! Registration records: written by the registration flow, read, deleted and queried by group.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use common::{KEY, setup};
use ironhub_dps::model::{
    DeviceRegistrationState, IndividualEnrollment, RegistrationStatus, Substatus,
};
use serde_json::json;

fn assigned(id: &str, hub: &str) -> DeviceRegistrationState {
    DeviceRegistrationState {
        registration_id: id.into(),
        created_date_time_utc: Some(Utc::now()),
        assigned_hub: Some(hub.into()),
        device_id: Some(id.into()),
        status: RegistrationStatus::Assigned,
        substatus: Some(Substatus::InitialAssignment),
        error_code: None,
        error_message: None,
        last_updated_date_time_utc: Some(Utc::now()),
        etag: None,
        payload: Some(json!({"hello": "device"})),
        tpm: None,
        issued_certificate_chain: None,
    }
}

#[tokio::test]
async fn records_are_written_read_queried_by_group_and_deleted() {
    let s = setup().await;
    let dps = &s.dps;
    for (id, group) in [
        ("d3", Some("G1")),
        ("D1", Some("g1")),
        ("d2", Some("g2")),
        ("solo", None),
    ] {
        dps.write_registration(assigned(id, "hub1.example"), group, None)
            .await
            .unwrap();
    }
    let got = dps.get_registration("d1").await.unwrap();
    assert_eq!(got.registration_id, "D1");
    assert_eq!(got.status, RegistrationStatus::Assigned);
    let etag = got.etag.clone().unwrap();
    let rec = dps.load_registration("D1").await.unwrap();
    assert_eq!(rec.enrollment_group_id.as_deref(), Some("g1"));

    let page = dps.query_registrations("g1", Some(1), None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].registration_id, "D1");
    let rest = dps
        .query_registrations("G1", Some(1), page.continuation.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.items[0].registration_id, "d3");
    assert!(rest.continuation.is_none());
    assert_eq!(dps.registration_count(Some("g1")).await.unwrap(), 2);
    assert_eq!(dps.registration_count(None).await.unwrap(), 4);

    // Replaced by the flow with compare-and-swap; a second create is a conflict.
    let mut moved = assigned("d1", "hub2.example");
    moved.substatus = Some(Substatus::DeviceDataMigrated);
    let r = dps
        .write_registration(moved.clone(), Some("g1"), Some("old"))
        .await;
    assert_eq!(r.unwrap_err().status(), 412);
    assert_eq!(
        dps.write_registration(moved.clone(), Some("g1"), None)
            .await
            .unwrap_err()
            .status(),
        409
    );
    let m = dps
        .write_registration(moved, Some("g1"), Some(&etag))
        .await
        .unwrap();
    assert_eq!(m.assigned_hub.as_deref(), Some("hub2.example"));
    assert_eq!(
        dps.get_registration("d1").await.unwrap().registration_id,
        "D1"
    );

    // Deleting.
    let r = dps.delete_registration("d1", Some(&etag)).await;
    assert_eq!(r.unwrap_err().status(), 412);
    dps.delete_registration("d1", m.etag.as_deref())
        .await
        .unwrap();
    assert_eq!(
        dps.get_registration("d1").await.unwrap_err().code(),
        404_202
    );
    assert_eq!(
        dps.delete_registration("d1", None)
            .await
            .unwrap_err()
            .status(),
        404
    );
}

#[tokio::test]
async fn an_individual_enrollment_shows_its_registration() {
    let s = setup().await;
    let dps = &s.dps;
    let e: IndividualEnrollment = serde_json::from_value(json!({
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY, "secondaryKey": KEY}}
    }))
    .unwrap();
    dps.create_or_update("solo", e, None).await.unwrap();
    let before: IndividualEnrollment = dps.get("solo").await.unwrap();
    assert!(before.registration_state.is_none());
    dps.write_registration(assigned("solo", "hub1.example"), None, None)
        .await
        .unwrap();
    let after: IndividualEnrollment = dps.get("SOLO").await.unwrap();
    let state = after.registration_state.unwrap();
    assert_eq!(state.assigned_hub.as_deref(), Some("hub1.example"));
    let wire =
        serde_json::to_value(dps.get::<IndividualEnrollment>("solo").await.unwrap()).unwrap();
    assert_eq!(wire["registrationState"]["status"], "assigned");
    assert_eq!(wire["registrationState"]["substatus"], "initialAssignment");
}
