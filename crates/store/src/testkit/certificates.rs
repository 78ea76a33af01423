//! Cases of the certificate port.

use std::sync::Arc;

use super::now;
use crate::{CertificateRecord, CertificateScope, CertificateStore, ManualClock, WriteConflict};

/// A CA certificate record named `name` (its contents are placeholders; the store checks none).
pub fn record(name: &str) -> CertificateRecord {
    let now = now();
    CertificateRecord {
        name: name.into(),
        etag: String::new(),
        certificate: "PEM".into(),
        subject: "CN=Root".into(),
        thumbprint: "AB".into(),
        expiry: now,
        is_verified: false,
        verification_code: None,
        created: now,
        updated: now,
    }
}

/// Without `if_match` a write only creates; with it, it only replaces a certificate whose
/// etag is that one (or `*`); deletes likewise; every write gets a new etag.
pub async fn certificates_are_written_compare_and_swap(
    store: Arc<dyn CertificateStore>,
    _clock: Arc<ManualClock>,
) {
    let hub = CertificateScope::Hub;
    let created = store
        .put_certificate(hub, record("root"), None)
        .await
        .unwrap()
        .unwrap();
    assert!(!created.etag.is_empty());
    let again = store
        .put_certificate(hub, record("root"), None)
        .await
        .unwrap();
    assert_eq!(again, Err(WriteConflict::AlreadyExists));
    let stale = store
        .put_certificate(hub, record("root"), Some("old".into()))
        .await
        .unwrap();
    assert_eq!(stale, Err(WriteConflict::EtagMismatch));
    let missing = store
        .put_certificate(hub, record("other"), Some("*".into()))
        .await
        .unwrap();
    assert_eq!(missing, Err(WriteConflict::NotFound));
    let verified = CertificateRecord {
        is_verified: true,
        ..created.clone()
    };
    let updated = store
        .put_certificate(hub, verified, Some(created.etag.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(updated.etag, created.etag);
    assert_eq!(
        store.get_certificate(hub, "root").await.unwrap(),
        Some(updated.clone())
    );
    store
        .put_certificate(hub, record("a-first"), None)
        .await
        .unwrap()
        .unwrap();
    let names: Vec<_> = store
        .list_certificates(hub)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a-first", "root"]);
    assert_eq!(
        store
            .delete_certificate(hub, "root", Some("nope".into()))
            .await
            .unwrap(),
        Err(WriteConflict::EtagMismatch)
    );
    store
        .delete_certificate(hub, "root", Some(updated.etag))
        .await
        .unwrap()
        .unwrap();
    assert!(store.get_certificate(hub, "root").await.unwrap().is_none());
    assert_eq!(
        store.delete_certificate(hub, "root", None).await.unwrap(),
        Err(WriteConflict::NotFound)
    );
    let back = store
        .put_certificate(hub, record("root"), None)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(back.etag, created.etag, "an etag is never reused");
}

/// The hub's and the DPS instance's certificates are separate namespaces.
pub async fn each_scope_has_its_own_names(
    store: Arc<dyn CertificateStore>,
    _clock: Arc<ManualClock>,
) {
    let hub = store
        .put_certificate(CertificateScope::Hub, record("ca"), None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .get_certificate(CertificateScope::Dps, "ca")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .list_certificates(CertificateScope::Dps)
            .await
            .unwrap()
            .is_empty()
    );
    let dps = store
        .put_certificate(CertificateScope::Dps, record("ca"), None)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(hub.etag, dps.etag);
    store
        .delete_certificate(CertificateScope::Dps, "ca", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .get_certificate(CertificateScope::Hub, "ca")
            .await
            .unwrap(),
        Some(hub)
    );
}
