//! The issuing CA that signs devices' CSRs: the operator's (`--issuing-ca-cert`/`--issuing-ca-key`)
//! or one generated at first start and kept in the data directory (`tls/issuing-ca.pem`,
//! `tls/issuing-ca.key`, ECC P-384), shared by the hub and the DPS.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use ironhub_hub::credentials::Issuer;

use crate::config::ServeConfig;

const CERT_FILE: &str = "issuing-ca.pem";
const KEY_FILE: &str = "issuing-ca.key";

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The issuing CA the server runs with.
pub fn load(config: &ServeConfig, tls_dir: &Path) -> anyhow::Result<Arc<Issuer>> {
    let issuer = match &config.issuing_ca {
        Some((cert, key)) => Issuer::from_pem(&read(cert)?, &read(key)?)
            .with_context(|| format!("{} is not a usable issuing CA", cert.display()))?,
        None => {
            let (cert, key) = (tls_dir.join(CERT_FILE), tls_dir.join(KEY_FILE));
            if cert.exists() && key.exists() {
                Issuer::from_pem(&read(&cert)?, &read(&key)?)
                    .with_context(|| format!("{} is not a usable issuing CA", cert.display()))?
            } else {
                let issuer = Issuer::generate("ironhub issuing CA")?;
                let (cert_pem, key_pem) = issuer.to_pem();
                ironhub_tls::write_private(&key, &key_pem)?;
                std::fs::write(&cert, cert_pem)
                    .with_context(|| format!("cannot write {}", cert.display()))?;
                issuer
            }
        }
    };
    Ok(Arc::new(
        issuer.with_validity_days(config.issued_certificate_days),
    ))
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
        assert_eq!(first.ca_der(), again.ca_der(), "kept across starts");

        let theirs = Issuer::generate("operator CA").unwrap();
        let (cert, key) = theirs.to_pem();
        let (cert_path, key_path) = (dir.path().join("op.pem"), dir.path().join("op.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        config.issuing_ca = Some((cert_path.clone(), key_path));
        assert_eq!(load(&config, dir.path()).unwrap().ca_der(), theirs.ca_der());

        // A key that is not the certificate's is refused at start.
        let other = dir.path().join("other.key");
        std::fs::write(&other, Issuer::generate("x").unwrap().to_pem().1).unwrap();
        config.issuing_ca = Some((cert_path, other));
        assert!(load(&config, dir.path()).is_err());
    }
}
