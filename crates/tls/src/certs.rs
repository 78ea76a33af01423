//! The generated CA and server certificate.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::{TlsError, file_error};

/// The files of a data directory's TLS material.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The server certificate chain (leaf, then CA).
    pub server_chain: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

const CA_NAME: &str = "ironhub local CA";

fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "ironhub");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Every name the server certificate carries: the configured names, `localhost` and
/// `127.0.0.1`, without duplicates, in a stable order.
fn all_names(hostnames: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in hostnames
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1"])
    {
        let n = n.trim().to_ascii_lowercase();
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// Writes a file only its owner may read (a private key), durably.
pub fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| file_error(path, e))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| file_error(path, e))
}

fn write_public(path: &Path, contents: &str) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|e| file_error(path, e))
}

/// Makes sure `dir` holds a CA and a server certificate for `hostnames`: the CA is created
/// once and kept; the server certificate is (re)issued when missing or when the names change.
pub fn ensure_certificates(dir: &Path, hostnames: &[String]) -> Result<CertificateFiles, TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    let files = CertificateFiles {
        ca: dir.join("ca.pem"),
        server_chain: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
    };
    let ca_key_path = dir.join("ca-key.pem");
    let names_path = dir.join("server-names.txt");

    let ca_key = if files.ca.is_file() && ca_key_path.is_file() {
        let pem = std::fs::read_to_string(&ca_key_path).map_err(|e| file_error(&ca_key_path, e))?;
        KeyPair::from_pem(&pem).map_err(|e| file_error(&ca_key_path, e))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        write_public(&files.ca, &cert.pem())?;
        // A new CA invalidates any server certificate signed by an old one.
        let _ = std::fs::remove_file(&names_path);
        tracing::info!(path = %files.ca.display(), "generated a local CA");
        key
    };

    let names = all_names(hostnames);
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&names_path).unwrap_or_default();
    if current == wanted && files.server_chain.is_file() && files.server_key.is_file() {
        return Ok(files);
    }

    let sans = names
        .iter()
        .map(|n| match n.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);

    let server_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let cert = params.signed_by(&server_key, &issuer)?;
    let ca_pem = std::fs::read_to_string(&files.ca).map_err(|e| file_error(&files.ca, e))?;
    write_private(&files.server_key, &server_key.serialize_pem())?;
    write_public(&files.server_chain, &format!("{}{}", cert.pem(), ca_pem))?;
    write_public(&names_path, &wanted)?;
    tracing::info!(names = %names.join(", "), "issued a server certificate");
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_kept_and_server_certificate_follows_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let a = ensure_certificates(&tls, &["myhub.example".into(), "127.0.0.2".into()]).unwrap();
        let ca1 = std::fs::read_to_string(&a.ca).unwrap();
        let server1 = std::fs::read_to_string(&a.server_chain).unwrap();
        crate::server_config(&a.server_chain, &a.server_key, true).unwrap();

        // Same names: nothing changes.
        ensure_certificates(&tls, &["myhub.example".into(), "127.0.0.2".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&a.server_chain).unwrap(), server1);

        // New names: same CA, new server certificate.
        let b = ensure_certificates(&tls, &["other.example".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&b.ca).unwrap(), ca1);
        assert_ne!(std::fs::read_to_string(&b.server_chain).unwrap(), server1);
        assert_eq!(
            std::fs::read_to_string(tls.join("server-names.txt")).unwrap(),
            "other.example\nlocalhost\n127.0.0.1"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(tls.join("ca-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private keys are not readable by others");
        }
    }

    #[test]
    fn names_are_deduplicated() {
        assert_eq!(
            all_names(&["LocalHost".into(), "hub".into()]),
            ["localhost", "hub", "127.0.0.1"]
        );
    }
}
