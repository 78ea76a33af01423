//! The issuing CAs that sign devices' CSRs, shared by the hub and the DPS: the default one,
//! the operator's (`--issuing-ca-cert`/`--issuing-ca-key`) or one generated at first start and
//! kept in the data directory (`tls/issuing-ca.pem`, `tls/issuing-ca.key`, ECC P-384), and
//! the named ones of the config file's `[[issuing_cas]]` tables.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use ironhub_hub::credentials::Issuer;
use ironhub_hub::issuing_cas::IssuingCas;

use crate::config::ServeConfig;

pub(crate) const CERT_FILE: &str = "issuing-ca.pem";
pub(crate) const KEY_FILE: &str = "issuing-ca.key";

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The CA in these files (certificate, key).
fn from_files(cert: &Path, key: &Path) -> anyhow::Result<Issuer> {
    Issuer::from_pem(&read(cert)?, &read(key)?)
        .with_context(|| format!("{} is not a usable issuing CA", cert.display()))
}

/// The issuing CAs the server runs with.
pub fn load(config: &ServeConfig, tls_dir: &Path) -> anyhow::Result<Arc<IssuingCas>> {
    let mut cas = IssuingCas::new(
        load_default(config, tls_dir)?
            .with_validity_days(config.issued_certificate_days)
            .with_renewal(config.issued_certificate_renewal),
    );
    for ca in &config.issuing_cas {
        let issuer = from_files(&ca.cert, &ca.key)
            .with_context(|| format!("issuing CA {:?}", ca.name))?
            .with_validity_days(ca.validity_days)
            .with_renewal(ca.renewal);
        cas = cas.with(&ca.name, issuer).map_err(anyhow::Error::msg)?;
    }
    Ok(Arc::new(cas))
}

/// The default issuing CA: the operator's, or the generated one.
fn load_default(config: &ServeConfig, tls_dir: &Path) -> anyhow::Result<Issuer> {
    Ok(match &config.issuing_ca {
        Some((cert, key)) => from_files(cert, key)?,
        None => {
            let (cert, key) = (tls_dir.join(CERT_FILE), tls_dir.join(KEY_FILE));
            if cert.exists() && key.exists() {
                from_files(&cert, &key)?
            } else {
                let issuer = Issuer::generate("ironhub issuing CA")?;
                let (cert_pem, key_pem) = issuer.to_pem();
                ironhub_tls::write_private(&key, &key_pem)?;
                std::fs::write(&cert, cert_pem)
                    .with_context(|| format!("cannot write {}", cert.display()))?;
                issuer
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeArgs;

    #[test]
    fn a_generated_ca_is_kept_and_an_operator_ca_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeArgs::default().resolve().unwrap();
        let first = load(&config, dir.path()).unwrap();
        let again = load(&config, dir.path()).unwrap();
        let der = |cas: &IssuingCas| cas.default_ca().ca_der().to_vec();
        assert_eq!(der(&first), der(&again), "kept across starts");

        let theirs = Issuer::generate("operator CA").unwrap();
        let (cert, key) = theirs.to_pem();
        let (cert_path, key_path) = (dir.path().join("op.pem"), dir.path().join("op.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        config.issuing_ca = Some((cert_path.clone(), key_path));
        assert_eq!(der(&load(&config, dir.path()).unwrap()), theirs.ca_der());

        // More named CAs, each with its validity and renewal.
        let short = Issuer::generate("short CA").unwrap();
        let (short_cert, short_key) = (dir.path().join("s.pem"), dir.path().join("s.key"));
        std::fs::write(&short_cert, short.to_pem().0).unwrap();
        std::fs::write(&short_key, short.to_pem().1).unwrap();
        config.issuing_cas = vec![crate::config::IssuingCaConfig {
            name: "short".into(),
            cert: short_cert.clone(),
            key: short_key,
            validity_days: 2,
            renewal: false,
        }];
        let cas = load(&config, dir.path()).unwrap();
        let (_, ca) = cas.get(Some("short")).unwrap();
        assert_eq!(ca.ca_der(), short.ca_der());
        assert_eq!((ca.validity_days(), ca.renews()), (2, false));
        assert_eq!(cas.anchors().count(), 2);
        config.issuing_cas[0].key = short_cert;
        assert!(
            load(&config, dir.path()).is_err(),
            "a certificate is no key"
        );
        config.issuing_cas.clear();

        // A key that is not the certificate's is refused at start.
        let other = dir.path().join("other.key");
        std::fs::write(&other, Issuer::generate("x").unwrap().to_pem().1).unwrap();
        config.issuing_ca = Some((cert_path, other));
        assert!(load(&config, dir.path()).is_err());
    }
}
