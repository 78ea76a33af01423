//! X.509 checks for CA-based device authentication: reading an uploaded certificate, proof of
//! possession (a certificate signed by the CA's key), and verifying a device's chain to a CA.
//!
//! Parsing and signature checks are `x509-parser` (with ring); chain building, validity and
//! key usage are `rustls-webpki`. Nothing here hand-rolls crypto or path validation.

use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer as _;

use rustls_pki_types::{CertificateDer, UnixTime};

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("the upload contains a private key; upload only the public certificate")]
    PrivateKey,
    #[error("the upload holds no certificate (expected PEM or base64-encoded DER)")]
    Empty,
    #[error("the upload holds {0} certificates; upload exactly one")]
    Several(usize),
    #[error("the certificate cannot be parsed: {0}")]
    Malformed(String),
    #[error("the certificate is not signed by the CA's key: {0}")]
    NotSignedByIssuer(String),
    #[error("the certificate chain does not verify to a trusted CA: {0}")]
    Untrusted(String),
}

/// What ironhub keeps and shows about an X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The subject as text, e.g. `CN=Contoso Root, O=Contoso`.
    pub subject: String,
    /// The first common name of the subject, if any.
    pub common_name: Option<String>,
    /// Validity, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-1 of the DER, upper-case hex (IoT Hub's `thumbprint`).
    pub thumbprint: String,
    /// SHA-256 of the DER, upper-case hex.
    pub sha256_thumbprint: String,
    /// The issuer as text, in the same form as `subject`.
    pub issuer: String,
    /// The serial number, upper-case hex without separators.
    pub serial_number: String,
    /// The X.509 version as people count it (3 for a v3 certificate).
    pub version: u32,
    /// Whether basic constraints mark it as a CA.
    pub is_ca: bool,
}

impl CertificateInfo {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertificateInfo, CertificateError> {
        let cert = parse(der)?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let (sha1, sha256) = crate::thumbprints(der);
        Ok(CertificateInfo {
            der: der.to_vec(),
            subject: cert.subject().to_string(),
            common_name,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            thumbprint: sha1,
            sha256_thumbprint: sha256,
            issuer: cert.issuer().to_string(),
            serial_number: cert
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect(),
            version: cert.version().0 + 1,
            is_ca: cert.is_ca(),
        })
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> String {
        to_pem(&self.der)
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertificateError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CertificateError::Malformed(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(CertificateError::Malformed(e.to_string())),
    }
}

/// PEM of a DER certificate (64-character lines).
pub fn to_pem(der: &[u8]) -> String {
    let b64 = crate::b64::encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Reads exactly one certificate from an upload: PEM, base64 of the DER (as IoT Hub's
/// certificate API accepts), or base64 of the PEM text. An upload with a private key in it is refused, so that a key
/// never lands in the store by mistake.
pub fn read_certificate(upload: &str) -> Result<CertificateInfo, CertificateError> {
    let text = upload.trim();
    if text.is_empty() {
        return Err(CertificateError::Empty);
    }
    if text.contains("PRIVATE KEY-----") {
        return Err(CertificateError::PrivateKey);
    }
    if text.contains("-----BEGIN") {
        let mut certs = Vec::new();
        for block in Pem::iter_from_buffer(text.as_bytes()) {
            let block = block.map_err(|e| CertificateError::Malformed(e.to_string()))?;
            if block.label.contains("PRIVATE KEY") {
                return Err(CertificateError::PrivateKey);
            }
            if block.label == "CERTIFICATE" {
                certs.push(block.contents);
            }
        }
        return match certs.len() {
            0 => Err(CertificateError::Empty),
            1 => CertificateInfo::from_der(&certs[0]),
            n => Err(CertificateError::Several(n)),
        };
    }
    let compact: String = text.split_whitespace().collect();
    let bytes = crate::b64::decode(compact).map_err(|_| {
        CertificateError::Malformed("neither PEM nor base64-encoded DER".to_owned())
    })?;
    // Base64 of the PEM text, as the Node service SDK's samples and `az iot dps
    // certificate create` send it.
    if let Ok(pem) = std::str::from_utf8(&bytes)
        && pem.trim_start().starts_with("-----BEGIN")
    {
        return read_certificate(pem);
    }
    CertificateInfo::from_der(&bytes)
}

/// Proof of possession: `cert` must be signed by the key of `issuer` (both DER).
pub fn verify_signed_by(cert: &[u8], issuer: &[u8]) -> Result<(), CertificateError> {
    let cert = parse(cert)?;
    let issuer = parse(issuer)?;
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|e| CertificateError::NotSignedByIssuer(e.to_string()))
}

/// Verifies a client's chain (leaf first, then any intermediates, as TLS presents it) to one
/// of `anchors` (DER certificates, each trusted as a root), at `now` (Unix seconds), for client
/// authentication. Checks signatures, validity periods, CA constraints along the path and the
/// client-auth extended key usage (when the leaf has one).
pub fn verify_client_chain(
    chain: &[impl AsRef<[u8]>],
    anchors: &[Vec<u8>],
    now: u64,
) -> Result<(), CertificateError> {
    verify_client_chain_via(chain, anchors, now, None)
}

/// [`verify_client_chain`], accepting only a path that goes through `via` (DER): one of the
/// path's intermediates, or its anchor. This is how an X.509 enrollment group on an
/// intermediate or root certificate admits exactly the devices that certificate issued,
/// while the path still has to end at a verified CA (Azure docs, X.509 certificate attestation,
/// 'DPS device chain requirements'; Create an X.509 enrollment group with DPS service SDK,
/// 'Add and verify your root or intermediate CA certificate').
pub fn verify_client_chain_via(
    chain: &[impl AsRef<[u8]>],
    anchors: &[Vec<u8>],
    now: u64,
    via: Option<&[u8]>,
) -> Result<(), CertificateError> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| CertificateError::Untrusted("no client certificate".into()))?;
    if parse(leaf.as_ref())?.version().0 < 2 {
        return verify_pre_v3_leaf(leaf.as_ref(), anchors, now, via);
    }
    let leaf = CertificateDer::from(leaf.as_ref());
    let end_entity =
        EndEntityCert::try_from(&leaf).map_err(|e| CertificateError::Malformed(e.to_string()))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_ref()))
        .collect();
    let anchor_ders: Vec<CertificateDer<'_>> = anchors
        .iter()
        .map(|a| CertificateDer::from(a.as_slice()))
        .collect();
    // A CA that webpki cannot use as an anchor is skipped, not fatal: others may still apply.
    let trust: Vec<_> = anchor_ders
        .iter()
        .filter_map(|a| webpki::anchor_from_trusted_cert(a).ok())
        .collect();
    if trust.is_empty() {
        return Err(CertificateError::Untrusted(
            "no verified CA certificate is registered".into(),
        ));
    }
    let via_der = via.map(CertificateDer::from);
    let via_anchor = via_der
        .as_ref()
        .and_then(|v| webpki::anchor_from_trusted_cert(v).ok());
    let through = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let Some(via) = via else {
            return Ok(());
        };
        let in_path = path
            .intermediate_certificates()
            .any(|c| c.der().as_ref() == via);
        let anchor = path.anchor();
        let is_anchor = via_anchor.as_ref().is_some_and(|v| {
            v.subject.as_ref() == anchor.subject.as_ref()
                && v.subject_public_key_info.as_ref() == anchor.subject_public_key_info.as_ref()
        });
        if in_path || is_anchor {
            Ok(())
        } else {
            Err(webpki::Error::UnknownIssuer)
        }
    };
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trust,
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now)),
            KeyUsage::client_auth(),
            None,
            Some(&through),
        )
        .map(|_| ())
        .map_err(|e| CertificateError::Untrusted(e.to_string()))
}

/// An X.509 v1 (or v2) leaf, which Azure accepts (Node's `pem` package and `openssl x509 -req`
/// without extensions make them) and webpki cannot read (it reads only v3). Such a leaf has
/// no extensions to check, so what remains is checked here with `x509-parser`: it is valid at
/// `now`, and it is signed by the key of one of `anchors` (a verified CA certificate) whose
/// subject is its issuer; `via`, when given, must be that CA. A v1 leaf under an intermediate
/// certificate is not supported: its issuer must itself be a verified CA certificate.
fn verify_pre_v3_leaf(
    leaf: &[u8],
    anchors: &[Vec<u8>],
    now: u64,
    via: Option<&[u8]>,
) -> Result<(), CertificateError> {
    let cert = parse(leaf)?;
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
        return Err(CertificateError::Untrusted(
            "the certificate is not valid at this time".into(),
        ));
    }
    let signed_by = |anchor: &Vec<u8>| {
        parse(anchor).is_ok_and(|ca| {
            ca.subject().as_raw() == cert.issuer().as_raw()
                && cert.verify_signature(Some(ca.public_key())).is_ok()
        })
    };
    let issuer = anchors.iter().find(|a| signed_by(a)).ok_or_else(|| {
        CertificateError::Untrusted(
            "the X.509 v1 certificate is not signed by a verified CA certificate".into(),
        )
    })?;
    match via {
        Some(v) if v != issuer.as_slice() => Err(CertificateError::Untrusted(
            "the certificate was not issued by the required CA certificate".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    struct Ca {
        cert: rcgen::Certificate,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(cn: &str) -> Ca {
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

    fn leaf(cn: &str, ca: &Ca) -> rcgen::Certificate {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.signed_by(&key, &ca.issuer).unwrap()
    }

    #[test]
    fn uploads_are_pem_or_base64_der_without_keys() {
        let root_ca = ca("Root");
        let root = &root_ca.cert;
        let from_pem = read_certificate(&root.pem()).unwrap();
        assert_eq!(from_pem.common_name.as_deref(), Some("Root"));
        assert!(from_pem.is_ca);
        assert_eq!(from_pem.thumbprint.len(), 40);
        assert_eq!(from_pem.sha256_thumbprint.len(), 64);
        assert_eq!(from_pem.issuer, from_pem.subject, "a self-signed root");
        assert_eq!(from_pem.version, 3);
        assert!(!from_pem.serial_number.is_empty());
        let b64 = crate::b64::encode(root.der());
        assert_eq!(read_certificate(&b64).unwrap(), from_pem);
        let b64_pem = crate::b64::encode(root.pem());
        assert_eq!(read_certificate(&b64_pem).unwrap(), from_pem);
        assert_eq!(from_pem.pem(), root.pem().replace("\r\n", "\n"));

        let with_key = format!("{}{}", root.pem(), root_ca.issuer.key().serialize_pem());
        assert_eq!(
            read_certificate(&with_key),
            Err(CertificateError::PrivateKey)
        );
        let two = format!("{}{}", root.pem(), root.pem());
        assert_eq!(read_certificate(&two), Err(CertificateError::Several(2)));
        assert!(matches!(
            read_certificate("bm90IGEgY2VydA=="),
            Err(CertificateError::Malformed(_))
        ));
        assert_eq!(read_certificate("  "), Err(CertificateError::Empty));
    }

    #[test]
    fn proof_of_possession_and_chains() {
        let root_ca = ca("Root");
        let root = &root_ca.cert;
        let other = ca("Other");
        let proof = leaf("CODE", &root_ca);
        verify_signed_by(proof.der(), root.der()).unwrap();
        let forged = leaf("CODE", &other);
        assert!(matches!(
            verify_signed_by(forged.der(), root.der()),
            Err(CertificateError::NotSignedByIssuer(_))
        ));

        let now = crate::unix_now();
        let device = leaf("dev1", &root_ca);
        let anchors = vec![root.der().to_vec()];
        verify_client_chain(&[device.der()], &anchors, now).unwrap();
        assert!(matches!(
            verify_client_chain(&[forged.der()], &anchors, now),
            Err(CertificateError::Untrusted(_))
        ));
        assert!(verify_client_chain(&[device.der()], &[], now).is_err());
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

    #[test]
    fn a_path_can_be_required_to_pass_through_a_certificate() {
        let now = crate::unix_now();
        let root = ca("Root");
        let int_a = intermediate("Intermediate A", &root);
        let int_b = intermediate("Intermediate B", &root);
        let device = leaf("dev1", &int_a);
        let anchors = vec![root.cert.der().to_vec()];
        let chain = [device.der().to_vec(), int_a.cert.der().to_vec()];
        // Through the intermediate that issued it, or through the root anchor.
        verify_client_chain_via(&chain, &anchors, now, Some(int_a.cert.der())).unwrap();
        verify_client_chain_via(&chain, &anchors, now, Some(root.cert.der())).unwrap();
        // Not through a sibling intermediate, even one the device sends along.
        let with_b = [
            device.der().to_vec(),
            int_a.cert.der().to_vec(),
            int_b.cert.der().to_vec(),
        ];
        assert!(matches!(
            verify_client_chain_via(&with_b, &anchors, now, Some(int_b.cert.der())),
            Err(CertificateError::Untrusted(_))
        ));
        // A missing intermediate breaks the path.
        assert!(
            verify_client_chain_via(
                &[device.der().to_vec()],
                &anchors,
                now,
                Some(root.cert.der())
            )
            .is_err()
        );
        // The intermediate as the only anchor (a verified intermediate).
        let int_anchor = vec![int_a.cert.der().to_vec()];
        verify_client_chain_via(
            &[device.der().to_vec()],
            &int_anchor,
            now,
            Some(int_a.cert.der()),
        )
        .unwrap();
    }
}
