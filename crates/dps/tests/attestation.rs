//! Symmetric key attestation of devices, with the vectors of `docs/protocol/sas-tokens.md`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{KEY, SCOPE, SE, setup};
use ironhub_auth::sas::generate;
use ironhub_dps::attestation::AttestedEnrollment;
use ironhub_dps::model::{EnrollmentGroup, IndividualEnrollment, ProvisioningStatus};
use serde_json::json;

const PYDEV_DPS: &str = "SharedAccessSignature sr=0ne00000000%2Fregistrations%2Freg-1&sig=cd7Oa3BD3NWIUy5JTYGpvyzv7rlEkOe%2FYx7m1PtNXEY%3D&se=1795310676";
const NODE_DPS: &str = "SharedAccessSignature sr=0ne00000000/registrations/reg-1&sig=76TJU8jg9IqJRg7u2mI20dkbJHcUkxhidB%2F9apOy6vA%3D&skn=registration&se=1795310676";
const OTHER_KEY: &str = "b3RoZXJrZXlvdGhlcmtleW90aGVya2V5b3RoZXJrZXk=";
/// `KEY` derived for `reg-1` (docs/protocol/sas-tokens.md, "Group key derivation").
const DERIVED_REG1: &str = "jmudKBSTQYBDw1ICt74S0TULyiEC9IC8TsUmQ4X6ZRw=";

fn individual(id: &str, primary: &str, secondary: &str) -> IndividualEnrollment {
    serde_json::from_value(json!({
        "registrationId": id,
        "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary}}
    }))
    .unwrap()
}

fn group(id: &str, primary: &str, secondary: &str) -> EnrollmentGroup {
    serde_json::from_value(json!({
        "enrollmentGroupId": id,
        "attestation": {"type": "symmetricKey",
            "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary}}
    }))
    .unwrap()
}

fn token(registration_id: &str, key: &str) -> String {
    generate(
        &format!("{SCOPE}/registrations/{registration_id}"),
        key,
        SE,
        Some("registration"),
    )
    .unwrap()
}

#[tokio::test]
async fn individual_enrollments_accept_every_client_vector_and_either_key() {
    let s = setup().await;
    let dps = &s.dps;
    dps.create_or_update("reg-1", individual("reg-1", KEY, OTHER_KEY), None)
        .await
        .unwrap();
    for vector in [PYDEV_DPS, NODE_DPS] {
        let a = dps
            .attest_symmetric_key_at(SCOPE, "reg-1", vector, SE - 1)
            .await
            .unwrap();
        assert!(matches!(a.enrollment, AttestedEnrollment::Individual(_)));
        assert_eq!(
            a.credential.keys().unwrap(),
            &[KEY.to_owned(), OTHER_KEY.to_owned()]
        );
        assert_eq!(a.device_id(), "reg-1");
        assert_eq!(a.expires, Some(SE));
        assert!(!format!("{a:?}").contains(KEY), "Debug hides keys");
    }
    // Signed with the secondary key; the scope in any case.
    let secondary = token("reg-1", OTHER_KEY);
    dps.attest_symmetric_key_at("0NE00000000", "reg-1", &secondary, SE - 1)
        .await
        .unwrap();

    let refusals = [
        (
            dps.attest_symmetric_key_at(SCOPE, "reg-1", PYDEV_DPS, SE)
                .await,
            401,
            "expired",
        ),
        (
            dps.attest_symmetric_key_at(SCOPE, "reg-1", &token("reg-1", DERIVED_REG1), SE - 1)
                .await,
            401,
            "wrong key",
        ),
        (
            dps.attest_symmetric_key_at(SCOPE, "reg-2", PYDEV_DPS, SE - 1)
                .await,
            401,
            "a token for another registration",
        ),
        (
            dps.attest_symmetric_key_at("0ne11111111", "reg-1", PYDEV_DPS, SE - 1)
                .await,
            404,
            "an unknown ID scope",
        ),
        (
            dps.attest_symmetric_key_at(SCOPE, "reg-1", "garbage", SE - 1)
                .await,
            401,
            "not a token",
        ),
        (
            dps.attest_symmetric_key_at(SCOPE, "bad id.", PYDEV_DPS, SE - 1)
                .await,
            400,
            "bad id",
        ),
    ];
    for (r, status, why) in refusals {
        assert_eq!(r.unwrap_err().status(), status, "{why}");
    }
}

#[tokio::test]
async fn registration_ids_are_case_insensitive_for_lookup() {
    let s = setup().await;
    let dps = &s.dps;
    let mut e = individual("Reg-1", KEY, OTHER_KEY);
    e.device_id = Some("the-device".into());
    dps.create_or_update("Reg-1", e, None).await.unwrap();
    let a = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", NODE_DPS, SE - 1)
        .await
        .unwrap();
    assert_eq!(a.registration_id, "reg-1", "as the device sent it");
    assert_eq!(a.device_id(), "the-device");
}

#[tokio::test]
async fn groups_accept_derived_keys_and_refuse_the_raw_group_key() {
    let s = setup().await;
    let dps = &s.dps;
    dps.create_or_update("g-other", group("g-other", OTHER_KEY, OTHER_KEY), None)
        .await
        .unwrap();
    dps.create_or_update("g-main", group("g-main", KEY, OTHER_KEY), None)
        .await
        .unwrap();
    let derived = token("reg-1", DERIVED_REG1);
    let a = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", &derived, SE - 1)
        .await
        .unwrap();
    let AttestedEnrollment::Group(g) = &a.enrollment else {
        panic!("a group device");
    };
    assert_eq!(g.enrollment_group_id, "g-main");
    assert_eq!(a.enrollment.group_id(), Some("g-main"));
    assert_eq!(
        a.credential.keys().unwrap()[0],
        DERIVED_REG1,
        "the hub device gets the derived key"
    );
    assert_eq!(
        a.device_id(),
        "reg-1",
        "group devices are named by registration id"
    );

    // The PYDEV vector is signed with KEY itself: the raw group key is refused (Azure docs,
    // Symmetric key attestation, 'Group Enrollments').
    let raw = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", PYDEV_DPS, SE - 1)
        .await;
    assert_eq!(raw.unwrap_err().code(), 401_002);

    // A key derived from the group's secondary key works too.
    let from_secondary = ironhub_auth::derive_device_key(OTHER_KEY, "reg-9").unwrap();
    let a = dps
        .attest_symmetric_key_at(SCOPE, "reg-9", &token("reg-9", &from_secondary), SE - 1)
        .await
        .unwrap();
    assert!(a.enrollment.group_id().is_some());

    // Derivation is over the id as sent: Tasmota's upper-case MAC.
    let mac_key = ironhub_auth::derive_device_key(KEY, "AABBCCDDEEFF").unwrap();
    let a = dps
        .attest_symmetric_key_at(
            SCOPE,
            "AABBCCDDEEFF",
            &token("AABBCCDDEEFF", &mac_key),
            SE - 1,
        )
        .await
        .unwrap();
    assert_eq!(a.credential.keys().unwrap()[0], mac_key);
    let lower = ironhub_auth::derive_device_key(KEY, "aabbccddeeff").unwrap();
    let r = dps
        .attest_symmetric_key_at(
            SCOPE,
            "AABBCCDDEEFF",
            &token("AABBCCDDEEFF", &lower),
            SE - 1,
        )
        .await;
    assert!(
        r.is_err(),
        "a key derived over another spelling is another key"
    );
}

#[tokio::test]
async fn the_individual_enrollment_decides_and_disabled_entries_refuse() {
    let s = setup().await;
    let dps = &s.dps;
    dps.create_or_update("g", group("g", KEY, KEY), None)
        .await
        .unwrap();
    // An individual enrollment with other keys shadows the group (Azure docs, X.509
    // certificate attestation, 'DPS order of operations with certificates').
    dps.create_or_update("reg-1", individual("reg-1", OTHER_KEY, OTHER_KEY), None)
        .await
        .unwrap();
    let derived = token("reg-1", DERIVED_REG1);
    let r = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", &derived, SE - 1)
        .await;
    assert_eq!(r.unwrap_err().status(), 401);

    // A disabled individual enrollment matches a correctly signed device, and decides: the
    // device is refused (its registration ends `disabled`) ...
    let mut e = individual("reg-1", DERIVED_REG1, OTHER_KEY);
    e.settings.provisioning_status = Some(ProvisioningStatus::Disabled);
    dps.create_or_update("reg-1", e, Some("*")).await.unwrap();
    let a = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", &derived, SE - 1)
        .await
        .unwrap();
    assert!(matches!(a.enrollment, AttestedEnrollment::Individual(_)));
    assert!(!a.is_enabled());
    // ... but a wrong signature is still just unauthorized (nothing learnt about the entry).
    let r = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", &token("reg-1", KEY), SE - 1)
        .await;
    assert!(matches!(r, Err(ironhub_dps::DpsError::Unauthorized(_))));

    // A disabled group decides for its devices too.
    dps.delete::<IndividualEnrollment>("reg-1", None)
        .await
        .unwrap();
    let mut g = group("g", KEY, KEY);
    g.settings.provisioning_status = Some(ProvisioningStatus::Disabled);
    dps.create_or_update("g", g, Some("*")).await.unwrap();
    let a = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", &derived, SE - 1)
        .await
        .unwrap();
    assert!(matches!(a.enrollment, AttestedEnrollment::Group(_)));
    assert!(!a.is_enabled());
    // No enrollment at all.
    dps.delete::<EnrollmentGroup>("g", None).await.unwrap();
    let r = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", &derived, SE - 1)
        .await;
    assert_eq!(r.unwrap_err().status(), 401);
}

#[tokio::test]
async fn x509_and_tpm_enrollments_do_not_attest_by_key() {
    let s = setup().await;
    let dps = &s.dps;
    let tpm: IndividualEnrollment = serde_json::from_value(json!({
        "attestation": {"type": "tpm", "tpm": {"endorsementKey": KEY}}
    }))
    .unwrap();
    dps.create_or_update("reg-1", tpm, None).await.unwrap();
    let r = dps
        .attest_symmetric_key_at(SCOPE, "reg-1", PYDEV_DPS, SE - 1)
        .await;
    assert_eq!(r.unwrap_err().status(), 401);
}
