//! Logging in: a connection string from `--login` (or `IRONHUB_CONNECTION_STRING`, for DPS
//! `IRONHUB_DPS_CONNECTION_STRING`), or, on the server's machine, the owner policy read from
//! the server's data directory (`iothubowner` for the hub, `provisioningserviceowner` for DPS).
//! The login, trust and output flags every `hub`, `device` and `dps` command takes are here
//! too ([`CommonArgs`], [`DpsCommonArgs`]).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use ironhub_auth::ConnectionString;
use ironhub_client::{DpsClient, HubClient};

use crate::cli::output::Format;
use crate::identity::{Identity, ca_path};

/// The data directory used when neither `--login` nor `--data-dir` is given.
pub const DEFAULT_DATA_DIR: &str = "ironhub-data";

/// The policy a data-directory login uses.
pub const OWNER_POLICY: &str = "iothubowner";

/// The DPS policy a data-directory login uses (az's default `--policy-name` too).
pub const DPS_OWNER_POLICY: &str = "provisioningserviceowner";

/// How every `ironhub hub` command finds and trusts its hub.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Hub login and output")]
pub struct CommonArgs {
    /// The hub's name: its host name or the first label of it. Only checked against the login.
    #[arg(long = "hub-name", short = 'n', global = true)]
    pub hub_name: Option<String>,
    /// A service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…).
    #[arg(
        long = "login",
        short = 'l',
        env = "IRONHUB_CONNECTION_STRING",
        hide_env_values = true,
        global = true
    )]
    pub login: Option<String>,
    /// On the server's machine: log in from its data directory [default: ./ironhub-data when
    /// no --login is given].
    #[arg(long = "data-dir", env = "IRONHUB_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// A PEM file of extra CA certificates to trust (an ironhub server's is DATA_DIR/tls/ca.pem).
    /// The system's roots are trusted too; SSL_CERT_FILE, when set, replaces them as in OpenSSL.
    #[arg(long = "cafile", global = true)]
    pub cafile: Option<PathBuf>,
    /// How requests authenticate (az's --auth-type): `key`, with the login's shared access
    /// policy, or `login`, with a bearer token from your identity provider read from
    /// IRONHUB_BEARER_TOKEN (the server needs an OpenID Connect issuer, `[auth.oidc]`).
    #[arg(long = "auth-type", value_enum, default_value_t = AuthType::Key, global = true)]
    pub auth_type: AuthType,
    /// Output format.
    #[arg(long = "output", short = 'o', value_enum, default_value_t = Format::Json, global = true)]
    pub output: Format,
}

/// How every `ironhub dps` command finds and trusts its DPS instance.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "DPS login and output")]
pub struct DpsCommonArgs {
    /// The DPS instance's name or host name. Accepted for az compatibility, not checked: the
    /// login (or, on the server's machine, the data directory) decides which instance answers.
    #[arg(long = "dps-name", short = 'n', global = true)]
    pub dps_name: Option<String>,
    /// The resource group. Accepted for az compatibility and ignored: ironhub has none.
    #[arg(long = "resource-group", short = 'g', global = true)]
    pub resource_group: Option<String>,
    /// A DPS service connection string
    /// (HostName=…;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…).
    #[arg(
        long = "login",
        short = 'l',
        env = "IRONHUB_DPS_CONNECTION_STRING",
        hide_env_values = true,
        global = true
    )]
    pub login: Option<String>,
    /// On the server's machine: log in from its data directory, with the DPS policy
    /// provisioningserviceowner [default: ./ironhub-data when no --login is given].
    #[arg(long = "data-dir", env = "IRONHUB_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// A PEM file of extra CA certificates to trust (an ironhub server's is DATA_DIR/tls/ca.pem).
    /// The system's roots are trusted too; SSL_CERT_FILE, when set, replaces them as in OpenSSL.
    #[arg(long = "cafile", global = true)]
    pub cafile: Option<PathBuf>,
    /// How requests authenticate (az's --auth-type): `key`, with the login's shared access
    /// policy, or `login`, with a bearer token from your identity provider read from
    /// IRONHUB_BEARER_TOKEN (the server needs an OpenID Connect issuer, `[auth.oidc]`).
    #[arg(long = "auth-type", value_enum, default_value_t = AuthType::Key, global = true)]
    pub auth_type: AuthType,
    /// Output format.
    #[arg(long = "output", short = 'o', value_enum, default_value_t = Format::Json, global = true)]
    pub output: Format,
}

/// How a CLI request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthType {
    /// A SAS token made with the login's shared access policy key.
    #[default]
    Key,
    /// A bearer token from the environment ([`BEARER_TOKEN_ENV`]).
    Login,
}

/// Where `--auth-type login` reads its bearer token.
pub const BEARER_TOKEN_ENV: &str = "IRONHUB_BEARER_TOKEN";

/// Which service a session logs in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Hub,
    Dps,
}

impl Service {
    /// How the commands of this service are called, for messages.
    fn commands(self) -> &'static str {
        match self {
            Service::Hub => "hub",
            Service::Dps => "dps",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Service::Hub => "IRONHUB_CONNECTION_STRING",
            Service::Dps => "IRONHUB_DPS_CONNECTION_STRING",
        }
    }
}

/// A logged-in CLI invocation.
#[derive(Debug)]
pub struct Session {
    /// The service connection string every request is signed with.
    pub login: ConnectionString,
    /// The hub's data directory identity, when logged in from one (it knows every policy).
    pub identity: Option<Identity>,
    /// CA files to trust besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// The bearer token requests carry instead of SAS tokens (`--auth-type login`).
    pub bearer: Option<String>,
}

impl Session {
    /// Resolves the hub login and trust from the common flags.
    pub async fn open(common: &CommonArgs) -> anyhow::Result<Session> {
        let session = Session::resolve(
            Service::Hub,
            common.login.as_deref(),
            common.data_dir.as_deref(),
            common.cafile.as_deref(),
            (common.auth_type, common.hub_name.as_deref()),
        )
        .await?;
        if let Some(name) = &common.hub_name {
            check_hub_name(name, &session.login.host_name)?;
        }
        Ok(session)
    }

    /// Resolves the DPS login and trust from the common `dps` flags. `--dps-name` and
    /// `--resource-group` are not checked: the login (or the data directory) decides.
    pub async fn open_dps(common: &DpsCommonArgs) -> anyhow::Result<Session> {
        Session::resolve(
            Service::Dps,
            common.login.as_deref(),
            common.data_dir.as_deref(),
            common.cafile.as_deref(),
            (common.auth_type, common.dps_name.as_deref()),
        )
        .await
    }

    async fn resolve(
        service: Service,
        login: Option<&str>,
        data_dir: Option<&Path>,
        cafile: Option<&Path>,
        (auth_type, name): (AuthType, Option<&str>),
    ) -> anyhow::Result<Session> {
        let mut ca_files: Vec<PathBuf> = cafile.iter().map(|p| p.to_path_buf()).collect();
        let bearer = match auth_type {
            AuthType::Key => None,
            AuthType::Login => Some(bearer_token()?),
        };
        let login = login.map(str::trim).filter(|l| !l.is_empty());
        let named_host = name.filter(|n| n.contains(['.', ':']));
        let (login, identity) = match (login, named_host) {
            // A bearer token needs no key: the host name alone says where to go.
            (None, Some(host)) if bearer.is_some() && data_dir.is_none() => (
                ConnectionString {
                    host_name: host.trim().to_owned(),
                    shared_access_key_name: None,
                    shared_access_key: Some(String::new()),
                    device_id: None,
                    module_id: None,
                    gateway_host_name: None,
                },
                None,
            ),
            (Some(text), _) => {
                let login = parse_login(text, service)?;
                // A data directory given as well still lends its CA (handy on the server's
                // machine with a policy other than the owner's).
                if let Some(dir) = data_dir {
                    let ca = ca_path(dir);
                    if ca.is_file() {
                        ca_files.push(ca);
                    }
                }
                (login, None)
            }
            (None, _) => {
                let dir =
                    data_dir.map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), Path::to_path_buf);
                let identity = load_identity(&dir, data_dir.is_none(), service).await?;
                let login = match service {
                    Service::Hub => identity.connection_string(OWNER_POLICY, false)?,
                    Service::Dps => identity.dps_connection_string(DPS_OWNER_POLICY, false)?,
                };
                if identity.ca_certificate.is_file() {
                    ca_files.push(identity.ca_certificate.clone());
                }
                (login, Some(identity))
            }
        };
        Ok(Session {
            login,
            identity,
            ca_files,
            bearer,
        })
    }

    /// The hub's `HostName` as the login gives it (may carry `:port`).
    pub fn host(&self) -> &str {
        &self.login.host_name
    }

    /// Logged in from a data directory: the address the server listens on (the host name
    /// need not resolve on the server's machine).
    fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.identity
            .as_ref()
            .and_then(|i| i.endpoint.local_https_address())
    }

    /// A REST client for the hub. Logged in from a data directory, it dials the address the
    /// server listens on and checks the certificate against the host name.
    pub fn client(&self) -> anyhow::Result<HubClient> {
        let client = match self.local_address() {
            Some(address) => HubClient::connecting_to(self.login.clone(), &self.ca_files, address)?,
            None => HubClient::new(self.login.clone(), &self.ca_files)?,
        };
        Ok(match &self.bearer {
            Some(token) => client.with_bearer_token(token.clone()),
            None => client,
        })
    }

    /// A REST client for the DPS instance (a session from [`Session::open_dps`]); like
    /// [`Session::client`], from a data directory it dials the server's listen address (one
    /// server serves the hub and the DPS).
    pub fn dps_client(&self) -> anyhow::Result<DpsClient> {
        let client = match self.local_address() {
            Some(address) => DpsClient::connecting_to(self.login.clone(), &self.ca_files, address)?,
            None => DpsClient::new(self.login.clone(), &self.ca_files)?,
        };
        Ok(match &self.bearer {
            Some(token) => client.with_bearer_token(token.clone()),
            None => client,
        })
    }
}

/// The bearer token of `--auth-type login`.
fn bearer_token() -> anyhow::Result<String> {
    let token = std::env::var(BEARER_TOKEN_ENV).unwrap_or_default();
    let token = token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token);
    if token.is_empty() {
        bail!(
            "--auth-type login needs a bearer token from your identity provider in \
             {BEARER_TOKEN_ENV} (for the audience https://iothubs.azure.net, or \
             https://azure-devices-provisioning.net for dps commands)"
        );
    }
    Ok(token.to_owned())
}

fn parse_login(text: &str, service: Service) -> anyhow::Result<ConnectionString> {
    let cs = ConnectionString::parse(text).context("--login is not a connection string")?;
    if cs.device_id.is_some() {
        let example = match service {
            Service::Hub => "HostName=…;SharedAccessKeyName=…;SharedAccessKey=…",
            Service::Dps => {
                "HostName=…;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=…"
            }
        };
        bail!(
            "--login is a device connection string; the {} commands need a service connection \
             string ({example}), e.g. from `ironhub {} connection-string show` on the server's \
             machine",
            service.commands(),
            service.commands()
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

async fn load_identity(dir: &Path, defaulted: bool, service: Service) -> anyhow::Result<Identity> {
    if !dir.exists() {
        if defaulted {
            let what = match service {
                Service::Hub => "connection string",
                Service::Dps => "DPS connection string",
            };
            bail!(
                "no login: pass --login \"<{what}>\" (or set {}), or --data-dir DIR on the \
                 server's machine (./{DEFAULT_DATA_DIR} does not exist)",
                service.env_var()
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
        let ok = parse_login(
            "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5",
            Service::Hub,
        )
        .unwrap();
        assert_eq!(ok.host_name, "h");
        let e =
            parse_login("HostName=h;DeviceId=d;SharedAccessKey=a2V5", Service::Hub).unwrap_err();
        assert!(e.to_string().contains("device connection string"), "{e}");
        let e =
            parse_login("HostName=h;DeviceId=d;SharedAccessKey=a2V5", Service::Dps).unwrap_err();
        assert!(
            e.to_string().contains("ironhub dps connection-string show"),
            "{e}"
        );
        assert!(parse_login("HostName=h;SharedAccessKey=a2V5", Service::Dps).is_err());
        assert!(parse_login("HostName=h;SharedAccessKeyName=p", Service::Hub).is_err());
        assert!(parse_login("garbage", Service::Hub).is_err());
    }
}
