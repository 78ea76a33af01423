//! CA certificates and X.509 CA device authentication, through the domain API, with
//! certificates generated here by rcgen; certificates the hub renews (`$iothub/credentials`)
//! with the issuing CA that issued the device's.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ironhub_hub::credentials::{IssueCertificateRequest, Issuer as IssuingCa};
use ironhub_hub::issuing_cas::IssuingCas;
use ironhub_hub::model::DeviceSpec;
use ironhub_hub::{AuthMethod, Hub, HubError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};
use serde_json::json;

struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

fn root(cn: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert,
        issuer: Issuer::new(params, key),
    }
}

fn intermediate(cn: &str, parent: &Ca) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.signed_by(&key, &parent.issuer).unwrap();
    Ca {
        cert,
        issuer: Issuer::new(params, key),
    }
}

fn leaf_with(cn: &str, ca: &Ca, edit: impl FnOnce(&mut CertificateParams)) -> rcgen::Certificate {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    edit(&mut params);
    params.signed_by(&key, &ca.issuer).unwrap()
}

fn leaf(cn: &str, ca: &Ca) -> rcgen::Certificate {
    leaf_with(cn, ca, |_| {})
}

async fn ca_device(hub: &Hub, id: &str) {
    let spec: DeviceSpec =
        serde_json::from_value(json!({"authentication": {"type": "certificateAuthority"}}))
            .unwrap();
    hub.put_device(id, &spec, None).await.unwrap();
}

/// Uploads `ca` and proves possession of its key.
async fn upload_verified(hub: &Hub, name: &str, ca: &Ca) {
    let up = hub
        .put_certificate(name, &ca.cert.pem(), false, None)
        .await
        .unwrap();
    let with_code = hub
        .generate_verification_code(name, Some(&up.etag))
        .await
        .unwrap();
    let code = with_code.verification_code.unwrap();
    let proof = leaf(&code, ca);
    let verified = hub
        .verify_certificate(name, &proof.pem(), Some(&format!("\"{}\"", with_code.etag)))
        .await
        .unwrap();
    assert!(verified.is_verified);
}

#[tokio::test]
async fn upload_etags_and_proof_of_possession() {
    let (hub, _dir) = common::temp_hub().await;
    let ca = root("Contoso Root");
    let up = hub
        .put_certificate("contoso", &ca.cert.pem(), false, None)
        .await
        .unwrap();
    assert!(!up.is_verified);
    assert_eq!(up.subject, "CN=Contoso Root");
    assert_eq!(up.thumbprint.len(), 40);
    assert!(up.verification_code.is_none());

    let again = hub
        .put_certificate("contoso", &ca.cert.pem(), false, None)
        .await
        .unwrap_err();
    assert_eq!(again.status(), 409, "{again}");
    let stale = hub
        .put_certificate("contoso", &ca.cert.pem(), false, Some("\"nope\""))
        .await
        .unwrap_err();
    assert_eq!(stale.status(), 412);
    let with_key = format!("{}{}", ca.cert.pem(), ca.issuer.key().serialize_pem());
    let refused = hub
        .put_certificate("other", &with_key, false, None)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 400);
    assert!(refused.to_string().contains("private key"), "{refused}");
    assert!(hub.get_certificate("other").await.is_err());
    let bad_name = hub
        .put_certificate("no/slash", &ca.cert.pem(), false, None)
        .await
        .unwrap_err();
    assert_eq!(bad_name.status(), 400);

    // Verify before a code exists: refused.
    let early = hub
        .verify_certificate("contoso", &leaf("x", &ca).pem(), None)
        .await
        .unwrap_err();
    assert_eq!(early.status(), 400);

    let coded = hub
        .generate_verification_code("contoso", Some(&up.etag))
        .await
        .unwrap();
    assert_ne!(coded.etag, up.etag, "a new code changes the etag");
    let code = coded.verification_code.clone().unwrap();
    assert!(code.len() >= 32);
    assert!(
        hub.generate_verification_code("contoso", Some(&up.etag))
            .await
            .unwrap_err()
            .status()
            == 412
    );

    // The code as CN, but signed by another key: no proof.
    let impostor = root("Impostor");
    let forged = leaf(&code, &impostor);
    let e = hub
        .verify_certificate("contoso", &forged.pem(), None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("not signed"), "{e}");
    // Signed by the CA, but another CN.
    let wrong_cn = leaf("not-the-code", &ca);
    let e = hub
        .verify_certificate("contoso", &wrong_cn.pem(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("verification code"), "{e}");
    assert!(!hub.get_certificate("contoso").await.unwrap().is_verified);

    let proof = leaf(&code, &ca);
    let verified = hub
        .verify_certificate("contoso", &proof.pem(), Some(&coded.etag))
        .await
        .unwrap();
    assert!(verified.is_verified);
    assert!(verified.verification_code.is_none(), "the code is spent");
    let listed = hub.list_certificates().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].is_verified);

    hub.delete_certificate("contoso", Some("\"stale\""))
        .await
        .unwrap_err();
    hub.delete_certificate("contoso", Some(&verified.etag))
        .await
        .unwrap();
    assert!(matches!(
        hub.delete_certificate("contoso", None).await,
        Err(HubError::CertificateNotFound(_))
    ));
}

#[tokio::test]
async fn devices_authenticate_through_a_verified_ca() {
    let (hub, _dir) = common::temp_hub().await;
    ca_device(&hub, "dev1").await;
    let ca = root("Fleet Root");
    let good = leaf("dev1", &ca);

    let before = hub
        .authenticate_device_x509("dev1", &[good.der()])
        .await
        .unwrap_err();
    assert_eq!(before.status(), 401, "no CA registered yet");

    // Uploaded but not verified: not trusted.
    hub.put_certificate("fleet", &ca.cert.pem(), false, None)
        .await
        .unwrap();
    assert!(
        hub.authenticate_device_x509("dev1", &[good.der()])
            .await
            .is_err()
    );
    hub.delete_certificate("fleet", None).await.unwrap();
    upload_verified(&hub, "fleet", &ca).await;

    assert_eq!(
        hub.authenticate_device_x509("dev1", &[good.der()])
            .await
            .unwrap()
            .method,
        AuthMethod::CertificateAuthority
    );

    // The CN must be the device id.
    let other = leaf("dev2", &ca);
    let e = hub
        .authenticate_device_x509("dev1", &[other.der()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CN"), "{e}");

    // A leaf from a CA that was uploaded but never verified.
    let unverified = root("Unverified Root");
    hub.put_certificate("unverified", &unverified.cert.pem(), false, None)
        .await
        .unwrap();
    let stranger = leaf("dev1", &unverified);
    assert_eq!(
        hub.authenticate_device_x509("dev1", &[stranger.der()])
            .await
            .unwrap_err()
            .status(),
        401
    );

    // An expired leaf.
    let expired = leaf_with("dev1", &ca, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let e = hub
        .authenticate_device_x509("dev1", &[expired.der()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Expired"), "{e}");

    // A leaf for server authentication only.
    let server_only = leaf_with("dev1", &ca, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    assert!(
        hub.authenticate_device_x509("dev1", &[server_only.der()])
            .await
            .is_err()
    );

    // Through an intermediate the device presents after its leaf.
    let inter = intermediate("Fleet Issuing", &ca);
    let via = leaf("dev1", &inter);
    assert_eq!(
        hub.authenticate_device_x509("dev1", &[via.der(), inter.cert.der()])
            .await
            .unwrap()
            .method,
        AuthMethod::CertificateAuthority
    );
    assert!(
        hub.authenticate_device_x509("dev1", &[via.der()])
            .await
            .is_err(),
        "without its intermediate the chain is incomplete"
    );

    // A selfSigned device is not admitted by CA.
    let spec: DeviceSpec = serde_json::from_value(json!({"authentication": {"type": "selfSigned",
        "x509Thumbprint": {"primaryThumbprint": "AA".repeat(20)}}}))
    .unwrap();
    hub.put_device("thumb", &spec, None).await.unwrap();
    let thumb = leaf("thumb", &ca);
    assert!(
        hub.authenticate_device_x509("thumb", &[thumb.der()])
            .await
            .is_err()
    );

    // Deleting the CA ends trust in it.
    hub.delete_certificate("fleet", None).await.unwrap();
    assert!(
        hub.authenticate_device_x509("dev1", &[good.der()])
            .await
            .is_err()
    );
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
    ironhub_hub::credentials::read_request(device_id, body.as_bytes()).unwrap()
}

async fn issued_ca_device(hub: &Hub, id: &str, ca: Option<&str>) {
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
    let short = IssuingCa::generate("short CA")
        .unwrap()
        .with_validity_days(2);
    let short_der = short.ca_der().to_vec();
    let frozen = IssuingCa::generate("frozen CA")
        .unwrap()
        .with_renewal(false);
    let cas = IssuingCas::new(IssuingCa::generate("default CA").unwrap())
        .with("short", short)
        .unwrap()
        .with("frozen", frozen)
        .unwrap();
    let default_der = cas.default_ca().ca_der().to_vec();
    let (hub, _dir) = common::temp_hub().await;
    let hub = hub.with_issuing_cas(Arc::new(cas));

    issued_ca_device(&hub, "dev-short", Some("short")).await;
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
    issued_ca_device(&hub, "dev-plain", None).await;
    let chain = hub
        .issue_certificate("dev-plain", &request("dev-plain"))
        .await
        .unwrap();
    assert_eq!(B64.decode(&chain[1]).unwrap(), default_der);

    // A CA that does not renew, and one no longer configured, refuse with a 400.
    issued_ca_device(&hub, "dev-frozen", Some("frozen")).await;
    issued_ca_device(&hub, "dev-gone", Some("gone")).await;
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

/// A module's login (`deviceId/moduleId`) with only a client certificate.
async fn module_login(
    hub: &Hub,
    device_id: &str,
    module_id: &str,
    chain: &[&[u8]],
) -> Result<ironhub_hub::AuthenticatedDevice, HubError> {
    let login = ironhub_hub::DeviceLogin {
        device_id,
        module_id: Some(module_id),
        model_id: None,
        credentials: ironhub_auth::Credentials::new(None, chain),
    };
    hub.authenticate(&login).await
}

async fn put_module(hub: &Hub, device_id: &str, module_id: &str, auth: serde_json::Value) {
    let spec = serde_json::from_value(json!({ "authentication": auth })).unwrap();
    hub.put_module(device_id, module_id, &spec, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn modules_authenticate_by_their_own_certificates() {
    let (hub, _dir) = common::temp_hub().await;
    hub.put_device("dev1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    let ca = root("Fleet Root");
    upload_verified(&hub, "fleet", &ca).await;

    // selfSigned: the thumbprint (SHA-1 or SHA-256) decides, whatever the subject.
    let own = leaf("anything", &root("Module Self"));
    let (sha1, sha256) = ironhub_auth::thumbprints(own.der());
    put_module(
        &hub,
        "dev1",
        "thumb",
        json!({"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": sha1}}),
    )
    .await;
    let device = module_login(&hub, "dev1", "thumb", &[own.der()])
        .await
        .unwrap();
    assert_eq!(device.identity.module_id.as_deref(), Some("thumb"));
    assert_eq!(device.identity.auth, AuthMethod::SelfSigned);
    assert_eq!(device.expires, None);
    put_module(
        &hub,
        "dev1",
        "thumb256",
        json!({"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "AB".repeat(32),
            "secondaryThumbprint": sha256.to_lowercase()}}),
    )
    .await;
    module_login(&hub, "dev1", "thumb256", &[own.der()])
        .await
        .unwrap();
    // Another certificate, or the device's own login with the module's certificate, fails.
    let stranger = leaf("dev1/thumb", &ca);
    let e = module_login(&hub, "dev1", "thumb", &[stranger.der()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("thumbprint"), "{e}");
    assert!(
        hub.authenticate_device_x509("dev1", &[own.der()])
            .await
            .is_err()
    );

    // certificateAuthority: a verified CA's chain, the CN `{deviceId}/{moduleId}`.
    put_module(&hub, "dev1", "ca", json!({"type": "certificateAuthority"})).await;
    let good = leaf("dev1/ca", &ca);
    let device = module_login(&hub, "dev1", "ca", &[good.der()])
        .await
        .unwrap();
    assert_eq!(device.identity.auth, AuthMethod::CertificateAuthority);
    for cn in ["ca", "dev1", "dev1/other"] {
        let wrong = leaf(cn, &ca);
        let e = module_login(&hub, "dev1", "ca", &[wrong.der()])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("CN"), "{cn}: {e}");
    }
    let unverified = leaf("dev1/ca", &root("Unverified Root"));
    assert_eq!(
        module_login(&hub, "dev1", "ca", &[unverified.der()])
            .await
            .unwrap_err()
            .status(),
        401
    );

    // A SAS module has no certificate to match; a missing module or device is refused.
    put_module(&hub, "dev1", "sas", json!({"type": "sas"})).await;
    let e = module_login(&hub, "dev1", "sas", &[good.der()])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not authenticate by certificate"),
        "{e}"
    );
    for (d, m) in [("dev1", "nope"), ("nodev", "ca")] {
        assert_eq!(
            module_login(&hub, d, m, &[good.der()])
                .await
                .unwrap_err()
                .status(),
            401
        );
    }
    // Nothing presented at all.
    assert_eq!(
        module_login(&hub, "dev1", "ca", &[])
            .await
            .unwrap_err()
            .status(),
        401
    );

    // A disabled device's modules are refused too.
    let spec: DeviceSpec = serde_json::from_value(json!({"status": "disabled"})).unwrap();
    hub.put_device("dev1", &spec, Some("*")).await.unwrap();
    let e = module_login(&hub, "dev1", "ca", &[good.der()])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("disabled"), "{e}");
}

#[tokio::test]
async fn module_thumbprints_are_validated_as_devices_are() {
    let (hub, _dir) = common::temp_hub().await;
    hub.put_device("dev1", &DeviceSpec::default(), None)
        .await
        .unwrap();
    for auth in [
        json!({"type": "selfSigned"}),
        json!({"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "not-hex"}}),
        json!({"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "AB".repeat(21)}}),
    ] {
        let spec = serde_json::from_value(json!({ "authentication": auth })).unwrap();
        let e = hub.put_module("dev1", "m", &spec, None).await.unwrap_err();
        assert_eq!(e.status(), 400, "{auth}: {e}");
    }
    assert!(
        hub.get_module("dev1", "m").await.is_err(),
        "nothing written"
    );
}
