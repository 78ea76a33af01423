//! Certificates the hub renews (`$iothub/credentials`): with the CA that issued the device's
//! certificate and that CA's validity, refused by a CA that does not renew; every issuing CA
//! is trusted.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::credentials::{IssueCertificateRequest, Issuer};
use ironhub_hub::issuing_cas::IssuingCas;
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{AuthMethod, Backends, Hub};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::json;

async fn hub(cas: IssuingCas) -> (Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir.path()).unwrap()),
        events: Arc::new(SqliteEventLog::open(dir.path(), 4).unwrap()),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec!["myhub.example".into()])
        .await
        .unwrap()
        .with_issuing_cas(Arc::new(cas));
    (hub, dir)
}

fn request(device_id: &str) -> IssueCertificateRequest {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, device_id);
    let csr = B64.encode(params.serialize_request(&key).unwrap().der());
    let body = json!({"id": device_id, "csr": csr}).to_string();
    IssueCertificateRequest::read(device_id, body.as_bytes()).unwrap()
}

async fn ca_device(hub: &Hub, id: &str, ca: Option<&str>) {
    let spec: DeviceSpec = serde_json::from_value(json!({"authentication": {
        "type": "certificateAuthority", "certificateAuthorityName": ca}}))
    .unwrap();
    hub.put_device(id, &spec, None).await.unwrap();
}

/// Seconds from now to the leaf's notAfter.
fn seconds_left(chain: &[String]) -> i64 {
    let leaf = B64.decode(&chain[0]).unwrap();
    let info = ironhub_auth::x509::CertificateInfo::from_der(&leaf).unwrap();
    info.not_after - i64::try_from(ironhub_auth::unix_now()).unwrap()
}

#[tokio::test]
async fn renewal_uses_the_ca_that_issued_the_device() {
    let short = Issuer::generate("short CA").unwrap().with_validity_days(2);
    let short_der = short.ca_der().to_vec();
    let frozen = Issuer::generate("frozen CA").unwrap().with_renewal(false);
    let cas = IssuingCas::new(Issuer::generate("default CA").unwrap())
        .with("short", short)
        .unwrap()
        .with("frozen", frozen)
        .unwrap();
    let default_der = cas.default_ca().ca_der().to_vec();
    let (hub, _dir) = hub(cas).await;

    ca_device(&hub, "dev-short", Some("short")).await;
    let chain = hub
        .issue_certificate("dev-short", &request("dev-short"))
        .await
        .unwrap();
    assert_eq!(B64.decode(&chain[1]).unwrap(), short_der);
    assert!((2 * 86_400 - 120..=2 * 86_400).contains(&seconds_left(&chain)));
    // The hub trusts what any of its CAs issued.
    let leaf = B64.decode(&chain[0]).unwrap();
    let auth = hub
        .authenticate_device_x509("dev-short", &[leaf])
        .await
        .unwrap();
    assert_eq!(auth.method, AuthMethod::CertificateAuthority);

    // An update by a client that knows nothing of the name keeps it.
    let spec: DeviceSpec = serde_json::from_value(json!({"status": "enabled",
        "authentication": {"type": "certificateAuthority"}}))
    .unwrap();
    hub.put_device("dev-short", &spec, Some("*")).await.unwrap();
    let device = hub.get_device("dev-short").await.unwrap();
    assert_eq!(
        device.authentication.certificate_authority_name.as_deref(),
        Some("short")
    );

    // A device no CA issued to is renewed by the default one.
    ca_device(&hub, "dev-plain", None).await;
    let chain = hub
        .issue_certificate("dev-plain", &request("dev-plain"))
        .await
        .unwrap();
    assert_eq!(B64.decode(&chain[1]).unwrap(), default_der);

    // A CA that does not renew, and one no longer configured, refuse with a 400.
    ca_device(&hub, "dev-frozen", Some("frozen")).await;
    ca_device(&hub, "dev-gone", Some("gone")).await;
    for id in ["dev-frozen", "dev-gone"] {
        let e = hub.issue_certificate(id, &request(id)).await.unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
    }

    // A malformed name is refused when the device is written.
    let spec: DeviceSpec = serde_json::from_value(json!({"authentication": {
        "type": "certificateAuthority", "certificateAuthorityName": "no spaces"}}))
    .unwrap();
    let e = hub.put_device("dev-bad", &spec, None).await.unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
}
