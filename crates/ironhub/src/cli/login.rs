//! Logging in: a connection string from `--login` (or `IRONHUB_CONNECTION_STRING`), or, on the
//! server's machine, the owner policy read from the server's data directory.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ironhub_auth::ConnectionString;
use ironhub_client::HubClient;

use super::hub::CommonArgs;
use crate::identity::{Identity, ca_path};

/// The data directory used when neither `--login` nor `--data-dir` is given.
pub const DEFAULT_DATA_DIR: &str = "ironhub-data";

/// The policy a data-directory login uses.
pub const OWNER_POLICY: &str = "iothubowner";

/// A logged-in CLI invocation.
#[derive(Debug)]
pub struct Session {
    /// The service connection string every request is signed with.
    pub login: ConnectionString,
    /// The hub's data directory identity, when logged in from one (it knows every policy).
    pub identity: Option<Identity>,
    /// CA files to trust besides the system roots.
    pub ca_files: Vec<PathBuf>,
}

impl Session {
    /// Resolves the login and trust from the common flags.
    pub async fn open(common: &CommonArgs) -> anyhow::Result<Session> {
        let mut ca_files: Vec<PathBuf> = common.cafile.iter().cloned().collect();
        let (login, identity) = match common.login.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => {
                let login = parse_login(text)?;
                // A data directory given as well still lends its CA (handy on the server's
                // machine with a policy other than the owner's).
                if let Some(dir) = &common.data_dir {
                    let ca = ca_path(dir);
                    if ca.is_file() {
                        ca_files.push(ca);
                    }
                }
                (login, None)
            }
            _ => {
                let dir = common
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
                let identity = load_identity(&dir, common.data_dir.is_none()).await?;
                let login = identity.connection_string(OWNER_POLICY, false)?;
                if identity.ca_certificate.is_file() {
                    ca_files.push(identity.ca_certificate.clone());
                }
                (login, Some(identity))
            }
        };
        if let Some(name) = &common.hub_name {
            check_hub_name(name, &login.host_name)?;
        }
        Ok(Session {
            login,
            identity,
            ca_files,
        })
    }

    /// The hub's `HostName` as the login gives it (may carry `:port`).
    pub fn host(&self) -> &str {
        &self.login.host_name
    }

    /// A REST client for the hub. Logged in from a data directory, it dials the address the
    /// server listens on (the hub's host name need not resolve on the server's machine) and
    /// checks the certificate against the host name.
    pub fn client(&self) -> anyhow::Result<HubClient> {
        let local = self
            .identity
            .as_ref()
            .and_then(|i| i.endpoint.local_https_address());
        Ok(match local {
            Some(address) => HubClient::connecting_to(self.login.clone(), &self.ca_files, address)?,
            None => HubClient::new(self.login.clone(), &self.ca_files)?,
        })
    }
}

fn parse_login(text: &str) -> anyhow::Result<ConnectionString> {
    let cs = ConnectionString::parse(text).context("--login is not a connection string")?;
    if cs.device_id.is_some() {
        bail!(
            "--login is a device connection string; the hub commands need a service connection \
             string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…), e.g. from \
             `ironhub hub connection-string show` on the server's machine"
        );
    }
    if cs
        .shared_access_key_name
        .as_deref()
        .is_none_or(str::is_empty)
    {
        bail!("--login has no SharedAccessKeyName (the shared access policy's name)");
    }
    if cs.shared_access_key.as_deref().is_none_or(str::is_empty) {
        bail!("--login has no SharedAccessKey");
    }
    Ok(cs)
}

async fn load_identity(dir: &Path, defaulted: bool) -> anyhow::Result<Identity> {
    if !dir.exists() {
        if defaulted {
            bail!(
                "no login: pass --login \"<connection string>\" (or set IRONHUB_CONNECTION_STRING), \
                 or --data-dir DIR on the server's machine (./{DEFAULT_DATA_DIR} does not exist)"
            );
        }
        bail!("the data directory {} does not exist", dir.display());
    }
    Identity::load(dir)
        .await
        .with_context(|| format!("cannot log in from the data directory {}", dir.display()))
}

/// `--hub-name` must name the login's hub: its host name (with or without the port) or the
/// host's first label, as az accepts `myhub` for `myhub.azure-devices.net`.
pub fn check_hub_name(name: &str, host: &str) -> anyhow::Result<()> {
    let bare = ironhub_client::host_without_port(host);
    let first_label = bare.split('.').next().unwrap_or(bare);
    let name = name.trim();
    if [host, bare, first_label]
        .iter()
        .any(|candidate| candidate.eq_ignore_ascii_case(name))
    {
        return Ok(());
    }
    bail!(
        "--hub-name '{name}' does not match the hub of the login ({host}); pass '{first_label}' \
         or '{bare}', or leave --hub-name out"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_match_the_host_or_its_first_label() {
        check_hub_name("myhub", "myhub.azure-devices.net").unwrap();
        check_hub_name("MyHub.azure-devices.net", "myhub.azure-devices.net").unwrap();
        check_hub_name("localhost", "localhost:8443").unwrap();
        check_hub_name("localhost:8443", "localhost:8443").unwrap();
        let e = check_hub_name("other", "myhub.azure-devices.net").unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn logins_must_be_service_strings() {
        let ok =
            parse_login("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5").unwrap();
        assert_eq!(ok.host_name, "h");
        let e = parse_login("HostName=h;DeviceId=d;SharedAccessKey=a2V5").unwrap_err();
        assert!(e.to_string().contains("device connection string"), "{e}");
        assert!(parse_login("HostName=h;SharedAccessKey=a2V5").is_err());
        assert!(parse_login("HostName=h;SharedAccessKeyName=p").is_err());
        assert!(parse_login("garbage").is_err());
    }
}
