//! `ironhub hub certificate …` and `ironhub dps certificate …`: CA certificates for X.509 CA
//! device authentication, with proof of possession, as `az iot hub certificate …` and
//! `az iot dps certificate …` (ARM-shaped answers).
//!
//! As in az, `--name/-n` names the certificate here; the hub is named with `--hub-name` only,
//! the DPS instance with `--dps-name` only. The commands are the same for both services: they
//! are generic over that name flag (`S`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::{ArgAction, Args, Subcommand};
use serde_json::Value;

use ironhub_client::Certificates;

/// `ironhub hub certificate <command>` (`S` = [`HubNameArg`]) and `ironhub dps certificate
/// <command>` (`S` = `DpsNameArg`).
#[derive(Debug, Subcommand)]
pub enum CertificateCommand<S: Args = HubNameArg> {
    /// Upload a CA certificate (unverified unless --verified).
    Create(CreateArgs<S>),
    /// Replace a CA certificate.
    Update(UpdateArgs<S>),
    /// List the CA certificates.
    List(S),
    /// Get a CA certificate.
    Show(NameArgs<S>),
    /// Delete a CA certificate.
    Delete(EtagArgs<S>),
    /// Generate a verification code: the CN of the certificate `verify` takes.
    #[command(name = "generate-verification-code")]
    GenerateVerificationCode(EtagArgs<S>),
    /// Prove possession of the CA's key with a certificate it signed whose CN is the
    /// verification code.
    Verify(VerifyArgs<S>),
}

/// The hub's name, which az takes only as `--hub-name` for certificates.
#[derive(Debug, Clone, Args)]
pub struct HubNameArg {
    /// The hub's name: its host name or the first label of it. Only checked against the login.
    #[arg(long = "hub-name", id = "hub_name", value_name = "HUB_NAME")]
    pub hub_name: Option<String>,
}

/// `--name` (az also spells it `--certificate-name`)
#[derive(Debug, Clone, Args)]
pub struct NameArgs<S: Args> {
    /// The certificate's name.
    #[arg(long = "name", short = 'n', visible_alias = "certificate-name")]
    pub name: String,
    #[command(flatten)]
    pub service: S,
}

/// `--name` and `--etag`
#[derive(Debug, Clone, Args)]
pub struct EtagArgs<S: Args> {
    #[command(flatten)]
    pub name: NameArgs<S>,
    /// The etag the certificate must still have [default: any].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `certificate create`
#[derive(Debug, Clone, Args)]
pub struct CreateArgs<S: Args> {
    #[command(flatten)]
    pub name: NameArgs<S>,
    /// The certificate file: PEM, or DER (.cer).
    #[arg(long = "path", short = 'p')]
    pub path: PathBuf,
    /// Upload it as verified, without proof of possession (`--verified` alone means true).
    #[arg(
        long = "verified",
        short = 'v',
        num_args = 0..=1,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub verified: Option<bool>,
}

/// `certificate update`
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs<S: Args> {
    #[command(flatten)]
    pub create: CreateArgs<S>,
    /// The etag the certificate must still have [default: any].
    #[arg(long = "etag", short = 'e')]
    pub etag: Option<String>,
}

/// `certificate verify`
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs<S: Args> {
    #[command(flatten)]
    pub name: EtagArgs<S>,
    /// The verification certificate (PEM or DER): CN = the verification code, signed by the CA.
    #[arg(long = "path", short = 'p')]
    pub path: PathBuf,
}

/// A certificate file as az sends it: its text when it is text (PEM), else base64 of its bytes
/// (DER), trailing whitespace removed.
pub fn read_certificate(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the certificate file {}", path.display()))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
    };
    let text = text.trim_end().to_owned();
    if text.is_empty() {
        bail!("the certificate file {} is empty", path.display());
    }
    Ok(text)
}

/// Runs a `certificate` command against a service's certificates (the hub's or the DPS
/// instance's); `None` when it prints nothing (delete).
pub async fn run<S: Args>(
    certificates: Certificates<'_>,
    command: &CertificateCommand<S>,
) -> anyhow::Result<Option<Value>> {
    Ok(match command {
        CertificateCommand::Create(a) => {
            let pem = read_certificate(&a.path)?;
            Some(serde_json::to_value(
                certificates
                    .put(&a.name.name, &pem, a.verified.unwrap_or(false), None)
                    .await?,
            )?)
        }
        CertificateCommand::Update(a) => {
            let pem = read_certificate(&a.create.path)?;
            let etag = a.etag.as_deref().unwrap_or("*");
            let verified = a.create.verified.unwrap_or(false);
            Some(serde_json::to_value(
                certificates
                    .put(&a.create.name.name, &pem, verified, Some(etag))
                    .await?,
            )?)
        }
        CertificateCommand::List(_) => Some(serde_json::to_value(certificates.list().await?)?),
        CertificateCommand::Show(a) => {
            Some(serde_json::to_value(certificates.get(&a.name).await?)?)
        }
        CertificateCommand::Delete(a) => {
            certificates.delete(&a.name.name, a.etag.as_deref()).await?;
            None
        }
        CertificateCommand::GenerateVerificationCode(a) => Some(serde_json::to_value(
            certificates
                .generate_verification_code(&a.name.name, a.etag.as_deref())
                .await?,
        )?),
        CertificateCommand::Verify(a) => {
            let pem = read_certificate(&a.path)?;
            Some(serde_json::to_value(
                certificates
                    .verify(&a.name.name.name, &pem, a.name.etag.as_deref())
                    .await?,
            )?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_are_sent_as_text_and_der_files_as_base64() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\n",
        )
        .unwrap();
        assert_eq!(
            read_certificate(&pem).unwrap(),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
        );
        let der = dir.path().join("ca.cer");
        std::fs::write(&der, [0x30, 0x82, 0xff, 0x00]).unwrap();
        assert_eq!(read_certificate(&der).unwrap(), "MIL/AA==");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read_certificate(&empty).is_err());
        assert!(read_certificate(&dir.path().join("missing.pem")).is_err());
    }
}
