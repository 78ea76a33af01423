//! X.509 v1 device certificates under a verified CA (the fixtures were made with `openssl
//! x509 -req -CA`, which writes no extensions and so a v1 certificate; `root-ca.pem` and
//! `other-root-ca.pem` have the same subject and different keys; `v1-root-ca.pem` is itself a
//! v1 certificate, made with `openssl x509 -req -signkey`, and signed `v1-under-v1.pem` (no
//! extensions) and `v3-under-v1.pem` (client-auth extensions)).
#![allow(clippy::unwrap_used)]

use ironhub_auth::x509::{read_certificate, verify_client_chain, verify_client_chain_via};

fn der(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    read_certificate(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .der
}

#[test]
fn a_v1_device_certificate_verifies_to_the_ca_that_signed_it() {
    let leaf = der("v1-device.pem");
    assert_eq!(
        read_certificate(&ironhub_auth::x509::to_pem(&leaf))
            .unwrap()
            .version,
        1
    );
    let root = der("root-ca.pem");
    let other = der("other-root-ca.pem");
    let now = ironhub_auth::unix_now();

    verify_client_chain(&[&leaf], std::slice::from_ref(&root), now).unwrap();
    verify_client_chain(&[&leaf], &[other.clone(), root.clone()], now).unwrap();
    verify_client_chain_via(&[&leaf], &[other.clone(), root.clone()], now, Some(&root)).unwrap();

    // Same issuer name, another key: refused.
    assert!(verify_client_chain(&[&leaf], std::slice::from_ref(&other), now).is_err());
    // Not through the required CA.
    assert!(
        verify_client_chain_via(&[&leaf], &[root.clone(), other.clone()], now, Some(&other))
            .is_err()
    );
    // No verified CA at all, or outside the validity period (the fixture is valid 100 years).
    assert!(verify_client_chain(&[&leaf], &[], now).is_err());
    assert!(
        verify_client_chain(
            &[&leaf],
            std::slice::from_ref(&root),
            now + 200 * 365 * 86_400
        )
        .is_err()
    );
    assert!(verify_client_chain(&[&leaf], &[root], 0).is_err());
}

#[test]
fn a_v1_root_ca_anchors_v1_and_v3_device_certificates() {
    // What Node's `pem` package makes for `createCertificate({selfSigned: true})`: a v1 root.
    let root = der("v1-root-ca.pem");
    assert_eq!(
        read_certificate(&ironhub_auth::x509::to_pem(&root))
            .unwrap()
            .version,
        1
    );
    let now = ironhub_auth::unix_now();
    verify_client_chain(&[der("v1-under-v1.pem")], std::slice::from_ref(&root), now).unwrap();
    verify_client_chain(&[der("v3-under-v1.pem")], std::slice::from_ref(&root), now).unwrap();
    assert!(verify_client_chain(&[der("v1-under-v1.pem")], &[der("root-ca.pem")], now).is_err());
}
