//! Who may call the service APIs (`[auth]` in the config file, `--oidc-*` and
//! `--disable-local-auth`): bearer tokens of an OpenID Connect issuer, with roles from a claim
//! or an assignment table, and whether shared access policies still count (IoT Hub's and
//! DPS's `disableLocalAuth`). Device APIs keep their own credentials either way.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ironhub_auth::access::ServiceAccess;
use ironhub_auth::oidc::{self, KeySource, Oidc, OidcSettings};
use ironhub_client::WebClient;
use serde::Deserialize;

/// The flags and environment variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Accept `Authorization: Bearer <JWT>` on the service APIs from this OpenID Connect
    /// issuer (its `iss`; keys from `{issuer}/.well-known/openid-configuration`). `http://`
    /// only for a loopback issuer.
    #[arg(long, env = "IRONHUB_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The audience hub tokens must name [default: https://iothubs.azure.net].
    #[arg(long, env = "IRONHUB_OIDC_HUB_AUDIENCE")]
    pub oidc_hub_audience: Option<String>,
    /// The audience DPS tokens must name [default: https://azure-devices-provisioning.net].
    #[arg(long, env = "IRONHUB_OIDC_DPS_AUDIENCE")]
    pub oidc_dps_audience: Option<String>,
    /// Refuse shared access policies on the service APIs of the hub and DPS
    /// (`disableLocalAuth`) [default: false].
    #[arg(long, env = "IRONHUB_DISABLE_LOCAL_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub disable_local_auth: Option<bool>,
}

/// The config file's `[auth]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub disable_local_auth: Option<bool>,
    pub oidc: Option<OidcFile>,
}

/// The config file's `[auth.oidc]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    pub issuer: Option<String>,
    pub hub_audience: Option<String>,
    pub dps_audience: Option<String>,
    pub clock_skew_seconds: Option<u64>,
    pub role_claim: Option<String>,
    pub fetch_timeout_seconds: Option<u64>,
    /// Principal (`oid`, `sub` or group id) to role names.
    #[serde(default)]
    pub role_assignments: HashMap<String, Vec<String>>,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub local_auth: bool,
    pub oidc: Option<OidcConfig>,
}

/// A configured issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuer: String,
    pub hub_audience: String,
    pub dps_audience: String,
    pub clock_skew: Duration,
    pub role_claim: String,
    pub fetch_timeout: Duration,
    pub assignments: Vec<oidc::RoleAssignment>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            local_auth: true,
            oidc: None,
        }
    }
}

impl AuthArgs {
    /// Flags and environment over the file's `[auth]` table.
    pub fn resolve(self, file: AuthFile) -> anyhow::Result<AuthSettings> {
        let local_auth = !self
            .disable_local_auth
            .or(file.disable_local_auth)
            .unwrap_or(false);
        let table = file.oidc.unwrap_or_default();
        let Some(issuer) = self.oidc_issuer.or(table.issuer) else {
            anyhow::ensure!(
                local_auth,
                "disable_local_auth needs an OpenID Connect issuer (--oidc-issuer or \
                 [auth.oidc] issuer), or no service could be called"
            );
            anyhow::ensure!(
                table.role_assignments.is_empty(),
                "[auth.oidc] role_assignments needs an issuer"
            );
            return Ok(AuthSettings {
                local_auth,
                oidc: None,
            });
        };
        check_url("the OpenID Connect issuer", &issuer)?;
        for (principal, roles) in &table.role_assignments {
            for role in roles {
                anyhow::ensure!(
                    ironhub_auth::roles::is_role(role),
                    "[auth.oidc] role_assignments: '{principal}' is given '{role}', which is \
                     not a role; use one of: {}",
                    ironhub_auth::roles::role_names()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let fetch_timeout = table.fetch_timeout_seconds.unwrap_or(5);
        anyhow::ensure!(
            (1..=60).contains(&fetch_timeout),
            "[auth.oidc] fetch_timeout_seconds must be between 1 and 60"
        );
        Ok(AuthSettings {
            local_auth,
            oidc: Some(OidcConfig {
                issuer,
                hub_audience: self
                    .oidc_hub_audience
                    .or(table.hub_audience)
                    .unwrap_or_else(|| oidc::IOT_HUB_AUDIENCE.to_owned()),
                dps_audience: self
                    .oidc_dps_audience
                    .or(table.dps_audience)
                    .unwrap_or_else(|| oidc::DPS_AUDIENCE.to_owned()),
                clock_skew: Duration::from_secs(table.clock_skew_seconds.unwrap_or(300).min(3600)),
                role_claim: table.role_claim.unwrap_or_else(|| "roles".to_owned()),
                fetch_timeout: Duration::from_secs(fetch_timeout),
                assignments: oidc::assignments(&table.role_assignments),
            }),
        })
    }
}

/// An `https://` URL, or an `http://` one whose host is a loopback address or `localhost`.
fn check_url(what: &str, url: &str) -> anyhow::Result<()> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        anyhow::bail!("{what} '{url}' is not an http(s) URL");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    anyhow::ensure!(
        loopback,
        "{what} '{url}' must use https:// (http:// is allowed for a loopback address only)"
    );
    Ok(())
}

/// How the hub and DPS accept service callers under `settings` (the issuer's keys fetched
/// with a client trusting the system roots and `trust`).
pub fn service_access(
    settings: &AuthSettings,
    trust: &[PathBuf],
) -> anyhow::Result<(ServiceAccess, ServiceAccess)> {
    let mut hub = ServiceAccess::local(oidc::IOT_HUB_AUDIENCE);
    let mut dps = ServiceAccess::local(oidc::DPS_AUDIENCE);
    hub.local_auth = settings.local_auth;
    dps.local_auth = settings.local_auth;
    if let Some(config) = &settings.oidc {
        let source = DiscoveredKeys {
            client: WebClient::new(trust)?,
            issuer: config.issuer.clone(),
            timeout: config.fetch_timeout,
        };
        let verifier = Arc::new(Oidc::new(
            OidcSettings {
                issuer: config.issuer.clone(),
                leeway_seconds: config.clock_skew.as_secs(),
                role_claim: config.role_claim.clone(),
                assignments: config.assignments.clone(),
            },
            Arc::new(source),
        ));
        hub.oidc = Some(verifier.clone());
        hub.audience = config.hub_audience.clone();
        dps.oidc = Some(verifier);
        dps.audience = config.dps_audience.clone();
    }
    Ok((hub, dps))
}

/// The issuer's JWKS, found through its discovery document; each call bounded by `timeout`.
#[derive(Debug)]
struct DiscoveredKeys {
    client: WebClient,
    issuer: String,
    timeout: Duration,
}

impl DiscoveredKeys {
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let answer = self
            .client
            .exchange(
                Method::GET,
                url,
                &[("accept", "application/json")],
                Default::default(),
                self.timeout,
            )
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if answer.status != 200 {
            return Err(format!("{url} answered {}", answer.status));
        }
        Ok(answer.body.to_vec())
    }

    async fn keys(&self) -> Result<Vec<u8>, String> {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let jwks_uri = oidc::jwks_uri(&self.get(&discovery).await?)?;
        check_url("the issuer's jwks_uri", &jwks_uri).map_err(|e| e.to_string())?;
        let keys = self.get(&jwks_uri).await;
        if let Err(e) = &keys {
            tracing::warn!(error = %e, "the OpenID Connect issuer's keys could not be fetched");
        }
        keys
    }
}

impl KeySource for DiscoveredKeys {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + '_>> {
        Box::pin(self.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_issuers_only_on_loopback() {
        assert!(check_url("x", "https://login.example/tenant/v2.0").is_ok());
        assert!(check_url("x", "http://127.0.27.215:8080/t").is_ok());
        assert!(check_url("x", "http://localhost/t").is_ok());
        assert!(check_url("x", "http://[::1]:80/t").is_ok());
        assert!(check_url("x", "http://10.0.0.1/t").is_err());
        assert!(check_url("x", "ftp://127.0.0.1/t").is_err());
    }

    #[test]
    fn resolves_defaults_and_refuses_nonsense() {
        let file: AuthFile = toml::from_str(
            "disable_local_auth = true\n[oidc]\nissuer = \"https://idp.example/\"\n\
             [oidc.role_assignments]\n\"oid-1\" = [\"IoT Hub Data Reader\"]\n",
        )
        .unwrap();
        let settings = AuthArgs::default().resolve(file).unwrap();
        assert!(!settings.local_auth);
        let oidc = settings.oidc.unwrap();
        assert_eq!(oidc.hub_audience, "https://iothubs.azure.net");
        assert_eq!(oidc.dps_audience, "https://azure-devices-provisioning.net");
        assert_eq!(oidc.role_claim, "roles");
        assert_eq!(oidc.assignments.len(), 1);

        let no_issuer = AuthFile {
            disable_local_auth: Some(true),
            oidc: None,
        };
        assert!(AuthArgs::default().resolve(no_issuer).is_err());
        let bad_role: AuthFile = toml::from_str(
            "[oidc]\nissuer = \"https://idp.example/\"\n[oidc.role_assignments]\nx = [\"Owner\"]\n",
        )
        .unwrap();
        assert!(AuthArgs::default().resolve(bad_role).is_err());
        assert_eq!(
            AuthArgs::default().resolve(AuthFile::default()).unwrap(),
            AuthSettings::default()
        );
    }
}
