//! Individual enrollments and enrollment groups through the DPS domain.
#![allow(clippy::unwrap_used)]

mod common;

use common::setup;
use ironhub_dps::enrollments::Enrollment;
use ironhub_dps::model::{
    AttestationType, BulkMode, EnrollmentGroup, IndividualEnrollment, QuerySpecification,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::json;

fn individual(v: serde_json::Value) -> IndividualEnrollment {
    serde_json::from_value(v).unwrap()
}

fn group(v: serde_json::Value) -> EnrollmentGroup {
    serde_json::from_value(v).unwrap()
}

fn sym(id: &str) -> IndividualEnrollment {
    individual(json!({
        "registrationId": id,
        "attestation": { "type": "symmetricKey", "symmetricKey": {} }
    }))
}

fn cert(cn: &str, ca: bool) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn create_generates_keys_and_a_read_hides_them() {
    let s = setup().await;
    let dps = &s.dps;
    let created = dps
        .create_or_update("Reg-1", sym("reg-1"), None)
        .await
        .unwrap();
    assert_eq!(created.registration_id, "Reg-1", "the URL's id, case kept");
    let keys = created.settings.attestation.symmetric_key.clone().unwrap();
    let primary = keys.primary_key.clone().unwrap();
    assert_eq!(primary.len(), 88, "64 random bytes");
    assert_ne!(keys.primary_key, keys.secondary_key);
    assert!(created.settings.etag.is_some());
    assert!(
        created.settings.is_enabled(),
        "provisioningStatus defaults to enabled"
    );
    let wire = serde_json::to_value(&created).unwrap();
    assert_eq!(wire["provisioningStatus"], "enabled");
    assert!(wire["createdDateTimeUtc"].as_str().unwrap().ends_with('Z'));

    // Ids are case-insensitive; reads carry no keys, the attestation mechanism does.
    let read: IndividualEnrollment = dps.get("REG-1").await.unwrap();
    assert_eq!(read.registration_id, "Reg-1");
    assert_eq!(read.settings.etag, created.settings.etag);
    let wire = serde_json::to_value(&read).unwrap();
    assert_eq!(
        wire["attestation"],
        json!({ "type": "symmetricKey", "symmetricKey": {} })
    );
    let mech = dps
        .attestation_mechanism::<IndividualEnrollment>("reg-1")
        .await
        .unwrap();
    assert_eq!(mech.symmetric_key.unwrap().primary_key.unwrap(), primary);

    assert_eq!(
        dps.get::<IndividualEnrollment>("reg-2")
            .await
            .unwrap_err()
            .code(),
        404_201
    );
    assert_eq!(
        dps.get::<EnrollmentGroup>("reg-1")
            .await
            .unwrap_err()
            .status(),
        404,
        "groups are another namespace"
    );
}

#[tokio::test]
async fn writes_are_compare_and_swap_on_the_etag() {
    let s = setup().await;
    let dps = &s.dps;
    let created = dps.create_or_update("d1", sym("d1"), None).await.unwrap();
    let etag = created.settings.etag.clone().unwrap();

    let again = dps
        .create_or_update("d1", sym("d1"), None)
        .await
        .unwrap_err();
    assert_eq!(
        again.status(),
        409,
        "creating what exists (409, as DPS's troubleshooting page lists it)"
    );
    let stale = dps
        .create_or_update("d1", sym("d1"), Some("\"nope\""))
        .await;
    assert_eq!(stale.unwrap_err().status(), 412);
    let missing = dps.create_or_update("d2", sym("d2"), Some("*")).await;
    assert_eq!(missing.unwrap_err().status(), 404);

    // Quoted, unquoted and `*` all match.
    let quoted = format!("\"{etag}\"");
    let e2 = dps
        .create_or_update("d1", sym("d1"), Some(&quoted))
        .await
        .unwrap();
    let e3 = dps
        .create_or_update("d1", sym("d1"), e2.settings.etag.as_deref())
        .await
        .unwrap();
    let e4 = dps
        .create_or_update("d1", sym("d1"), Some("*"))
        .await
        .unwrap();
    assert_ne!(e3.settings.etag, e4.settings.etag);
    // An update that leaves the keys out keeps them.
    assert_eq!(
        e4.settings.attestation.symmetric_key,
        created.settings.attestation.symmetric_key
    );
    assert_eq!(
        e4.settings.created_date_time_utc,
        created.settings.created_date_time_utc
    );

    // Sending back what a read returned (keys stripped, etag in the body) is an update that
    // keeps the keys (as the Node sample of Azure docs, Create an X.509 enrollment group with
    // DPS service SDK, does).
    let mut read: IndividualEnrollment = dps.get("d1").await.unwrap();
    read.settings.provisioning_status = Some(ironhub_dps::model::ProvisioningStatus::Disabled);
    let updated = dps
        .create_or_update("d1", read.clone(), None)
        .await
        .unwrap();
    assert!(!updated.settings.is_enabled());
    assert_eq!(
        updated.settings.attestation.symmetric_key,
        created.settings.attestation.symmetric_key
    );
    // The same body again is stale now.
    assert_eq!(
        dps.create_or_update("d1", read, None)
            .await
            .unwrap_err()
            .status(),
        412
    );

    let del = dps
        .delete::<IndividualEnrollment>("d1", Some("stale"))
        .await;
    assert_eq!(del.unwrap_err().status(), 412);
    dps.delete::<IndividualEnrollment>("D1", updated.settings.etag.as_deref())
        .await
        .unwrap();
    assert_eq!(
        dps.delete::<IndividualEnrollment>("d1", None)
            .await
            .unwrap_err()
            .status(),
        404
    );
}

#[tokio::test]
async fn ids_keys_hubs_and_policies_are_checked() {
    let s = setup().await;
    let dps = &s.dps;
    let bad = |v: serde_json::Value| individual(v);
    let cases = [
        ("bad id.", sym("bad id."), "id rules"),
        ("d1", sym("other"), "body id differs from the URL"),
        (
            "d1",
            bad(json!({"attestation": {"type": "symmetricKey",
                "symmetricKey": {"primaryKey": "c2hvcnQ="}}})),
            "a key under 16 bytes",
        ),
        (
            "d1",
            bad(json!({"attestation": {"type": "symmetricKey"}, "iotHubs": ["unlinked.example"]})),
            "an unlinked hub",
        ),
        (
            "d1",
            bad(
                json!({"attestation": {"type": "symmetricKey"}, "allocationPolicy": "static",
                "iotHubs": ["hub1.example", "hub2.example"]}),
            ),
            "static with two hubs and no iotHubHostName",
        ),
        (
            "d1",
            bad(json!({"attestation": {"type": "symmetricKey"}, "allocationPolicy": "custom"})),
            "custom without a webhook",
        ),
        (
            "d1",
            bad(json!({"attestation": {"type": "symmetricKey"}, "deviceId": "a b"})),
            "a device id IoT Hub refuses",
        ),
        (
            "d1",
            bad(json!({"attestation": {"type": "none"}})),
            "no attestation",
        ),
    ];
    for (id, body, why) in cases {
        let e = dps.create_or_update(id, body, None).await.unwrap_err();
        assert_eq!(e.status(), 400, "{why}: {e}");
    }
    assert!(
        dps.get::<IndividualEnrollment>("d1").await.is_err(),
        "nothing was written"
    );

    // Hub names are written as they are linked.
    let ok = individual(json!({
        "attestation": {"type": "symmetricKey"},
        "allocationPolicy": "static",
        "iotHubHostName": "HUB2.example",
        "iotHubs": ["hub1.EXAMPLE", "hub1.example"],
        "customAllocationDefinition": null,
        "reprovisionPolicy": {"updateHubAssignment": false, "migrateDeviceData": false},
        "initialTwin": {"tags": {"t": 1}, "properties": {"desired": {"d": 2}}}
    }));
    let e = dps.create_or_update("d1", ok, None).await.unwrap();
    assert_eq!(
        e.settings.iot_hub_host_name.as_deref(),
        Some("hub2.example")
    );
    assert_eq!(
        e.settings.iot_hubs.as_deref(),
        Some(&["hub1.example".to_owned()][..])
    );
    let webhook = individual(json!({
        "attestation": {"type": "symmetricKey"},
        "allocationPolicy": "custom",
        "customAllocationDefinition": {"webhookUrl": "https://fn.example/api/x?code=1", "apiVersion": "2019-03-31"}
    }));
    dps.create_or_update("d2", webhook, None).await.unwrap();
    // The attestation type cannot change on an update.
    let tpm =
        individual(json!({"attestation": {"type": "tpm", "tpm": {"endorsementKey": "AToAAQAL"}}}));
    assert_eq!(
        dps.create_or_update("d2", tpm.clone(), Some("*"))
            .await
            .unwrap_err()
            .status(),
        400
    );
    dps.create_or_update("d3", tpm, None).await.unwrap();
}

#[tokio::test]
async fn x509_enrollments_keep_the_pem_and_show_its_info() {
    let s = setup().await;
    let dps = &s.dps;
    let leaf = cert("my-x509-device", false);
    let body = individual(json!({
        "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": leaf}}}}
    }));
    let created = dps
        .create_or_update("my-x509-device", body, None)
        .await
        .unwrap();
    let slot = created
        .settings
        .attestation
        .x509
        .clone()
        .unwrap()
        .client_certificates
        .unwrap()
        .primary
        .unwrap();
    assert!(
        slot.certificate.is_none(),
        "answers carry info, not the PEM"
    );
    let info = slot.info.unwrap();
    assert_eq!(info.subject_name, "CN=my-x509-device");
    assert_eq!(info.issuer_name, "CN=my-x509-device");
    assert_eq!(info.sha1_thumbprint.len(), 40);
    assert_eq!(info.sha256_thumbprint.len(), 64);
    assert_eq!(info.version, 3);
    assert!(info.not_after_utc > info.not_before_utc);
    let wire = serde_json::to_value(&created).unwrap();
    let info_json = &wire["attestation"]["x509"]["clientCertificates"]["primary"]["info"];
    for field in [
        "subjectName",
        "sha1Thumbprint",
        "sha256Thumbprint",
        "issuerName",
        "notBeforeUtc",
        "notAfterUtc",
        "serialNumber",
        "version",
    ] {
        assert!(!info_json[field].is_null(), "{field}");
    }

    // Sending back what was read (info, no PEM) keeps the certificate.
    let read: IndividualEnrollment = dps.get("my-x509-device").await.unwrap();
    let again = dps
        .create_or_update("my-x509-device", read, None)
        .await
        .unwrap();
    assert_eq!(
        again
            .settings
            .attestation
            .x509
            .unwrap()
            .client_certificates
            .unwrap()
            .primary
            .unwrap()
            .info,
        Some(info)
    );

    // The registration id of an X.509 device is its certificate's CN.
    let other = individual(json!({
        "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": cert("someone-else", false)}}}}
    }));
    assert_eq!(
        dps.create_or_update("dev-x", other, None)
            .await
            .unwrap_err()
            .status(),
        400
    );
    let garbage = individual(json!({
        "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": "not a certificate"}}}}
    }));
    assert_eq!(
        dps.create_or_update("dev-y", garbage, None)
            .await
            .unwrap_err()
            .status(),
        400
    );

    // Groups hold CA (signing) certificates, or references to uploaded CAs.
    let root = cert("Contoso Root", true);
    let g = group(json!({
        "enrollmentGroupId": "contoso",
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": root}}}}
    }));
    let g = dps.create_or_update("contoso", g, None).await.unwrap();
    assert_eq!(g.settings.attestation.kind, AttestationType::X509);
    let not_ca = group(json!({
        "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": cert("leaf", false)}}}}
    }));
    assert_eq!(
        dps.create_or_update("g2", not_ca, None)
            .await
            .unwrap_err()
            .status(),
        400
    );
    let client_in_group = group(json!({
        "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": cert("g3", false)}}}}
    }));
    assert_eq!(
        dps.create_or_update("g3", client_in_group, None)
            .await
            .unwrap_err()
            .status(),
        400
    );
    let refs = group(json!({
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "my-root"}}}
    }));
    dps.create_or_update("g4", refs, None).await.unwrap();
    let tpm_group =
        group(json!({"attestation": {"type": "tpm", "tpm": {"endorsementKey": "AToAAQAL"}}}));
    assert_eq!(
        dps.create_or_update("g5", tpm_group, None)
            .await
            .unwrap_err()
            .status(),
        400
    );
}

#[tokio::test]
async fn queries_page_with_a_continuation_token() {
    let s = setup().await;
    let dps = &s.dps;
    for id in ["e", "b", "D", "a", "c"] {
        dps.create_or_update(id, sym(id), None).await.unwrap();
    }
    let all = QuerySpecification {
        query: "SELECT *".into(),
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = dps
            .query::<IndividualEnrollment>(&all, Some(2), token.as_deref())
            .await
            .unwrap();
        pages += 1;
        for e in &page.items {
            assert_eq!(
                serde_json::to_value(&e.settings.attestation).unwrap()["symmetricKey"],
                json!({}),
                "queries carry no keys"
            );
        }
        seen.extend(page.items.into_iter().map(|e| e.registration_id));
        match page.continuation {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "D", "e"]);
    assert_eq!(pages, 3);
    // DPS does not evaluate the text: a filter, or the Azure CLI's wrapped `SELECT *`, gets
    // every record too.
    for text in [
        "SELECT * FROM enrollments WHERE x = 1",
        "{'additional_properties': {}, 'query': 'SELECT *'}",
    ] {
        let spec = QuerySpecification { query: text.into() };
        let page = dps
            .query::<IndividualEnrollment>(&spec, None, None)
            .await
            .unwrap();
        assert_eq!(page.items.len(), 5, "{text}");
    }
    assert!(
        dps.query::<IndividualEnrollment>(&all, None, Some("garbage!"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn bulk_operations_apply_all_or_nothing() {
    let s = setup().await;
    let dps = &s.dps;
    let r = dps
        .bulk(BulkMode::Create, &[sym("a"), sym("b"), sym("c")])
        .await
        .unwrap();
    assert!(r.is_successful && r.errors.is_empty());

    // One existing item keeps the whole batch from being written.
    let r = dps
        .bulk(BulkMode::Create, &[sym("d"), sym("B")])
        .await
        .unwrap();
    assert!(!r.is_successful);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].registration_id.as_deref(), Some("B"));
    assert_eq!(r.errors[0].error_code / 1000, 409);
    assert!(dps.get::<IndividualEnrollment>("d").await.is_err());

    // update creates or replaces; updateIfMatchETag needs the current etag.
    let r = dps
        .bulk(BulkMode::Update, &[sym("d"), sym("a")])
        .await
        .unwrap();
    assert!(r.is_successful);
    let mut stale = sym("a");
    stale.settings.etag = Some("old".into());
    let r = dps
        .bulk(BulkMode::UpdateIfMatchEtag, &[stale])
        .await
        .unwrap();
    assert_eq!(r.errors[0].error_code / 1000, 412);
    let r = dps
        .bulk(BulkMode::UpdateIfMatchEtag, &[sym("a")])
        .await
        .unwrap();
    assert_eq!(r.errors[0].error_code / 1000, 400, "no etag to match");
    let current: IndividualEnrollment = dps.get("a").await.unwrap();
    let r = dps
        .bulk(BulkMode::UpdateIfMatchEtag, &[current])
        .await
        .unwrap();
    assert!(r.is_successful);

    let r = dps
        .bulk(BulkMode::Delete, &[sym("a"), sym("zz")])
        .await
        .unwrap();
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].registration_id.as_deref(), Some("zz"));
    assert!(
        dps.get::<IndividualEnrollment>("a").await.is_ok(),
        "nothing deleted"
    );
    let r = dps
        .bulk(BulkMode::Delete, &[sym("a"), sym("b")])
        .await
        .unwrap();
    assert!(r.is_successful);
    assert!(dps.get::<IndividualEnrollment>("b").await.is_err());

    let eleven: Vec<_> = (0..11).map(|i| sym(&format!("x{i}"))).collect();
    assert_eq!(
        dps.bulk(BulkMode::Create, &eleven)
            .await
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        dps.bulk(BulkMode::Create, &[sym("q"), sym("Q")])
            .await
            .unwrap_err()
            .status(),
        400
    );
    let empty: [IndividualEnrollment; 0] = [];
    assert!(dps.bulk(BulkMode::Create, &empty).await.is_err());

    // Groups report enrollmentGroupId.
    let g = group(json!({"enrollmentGroupId": "g1", "attestation": {"type": "symmetricKey"}}));
    dps.bulk(BulkMode::Create, std::slice::from_ref(&g))
        .await
        .unwrap();
    let r = dps.bulk(BulkMode::Create, &[g]).await.unwrap();
    let wire = serde_json::to_value(&r).unwrap();
    assert_eq!(wire["errors"][0]["enrollmentGroupId"], "g1");
    assert!(wire["errors"][0].get("registrationId").is_none());
    assert_eq!(<EnrollmentGroup as Enrollment>::KIND, "enrollment group");
}
