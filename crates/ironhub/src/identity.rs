//! What a data directory says about the hub and DPS instance it holds: host name, ports,
//! policies, the DPS ID scope and the CA.
//! `ironhub info` prints it; the CLI uses it to log in on the server's own machine.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ironhub_auth::{ConnectionString, SharedAccessPolicy};
use ironhub_embedded::SqliteStore;
use ironhub_store::prelude::*;
use ironhub_store::{DpsSettings, Endpoint, HubSettings, StoreError};

/// The hub kept in a data directory.
#[derive(Debug, Clone)]
pub struct Identity {
    pub endpoint: Endpoint,
    pub settings: HubSettings,
    /// The DPS instance's settings (absent if no server of this version started here yet).
    pub dps: Option<DpsSettings>,
    /// `DIR/tls/ca.pem`: the CA that signed the server certificate.
    pub ca_certificate: PathBuf,
}

/// The hub's Event Hubs-compatible built-in endpoint, as `ironhub info` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventHubCompatible {
    pub endpoint: String,
    pub entity_path: String,
    pub connection_string: String,
}

/// A directory that holds no hub: say where to look instead. A server that runs elsewhere
/// keeps its data in its own `--data-dir` (relative to where it was started).
fn no_hub_here(data_dir: &Path) -> anyhow::Error {
    let shown = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    anyhow::anyhow!(
        "{} holds no ironhub data: pass the --data-dir the server runs with (by default \
         ironhub-data in the directory `ironhub serve` was started from); a server started with \
         this --data-dir creates it at its first start",
        shown.display()
    )
}

/// Where the CA certificate of a data directory lives.
pub fn ca_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("ca.pem")
}

impl Identity {
    /// Reads the identity of the hub in `data_dir` (the server may be running).
    pub async fn load(data_dir: &Path) -> anyhow::Result<Identity> {
        let store = SqliteStore::open_existing(data_dir).map_err(|e| match e {
            StoreError::NotInitialised(_) => no_hub_here(data_dir),
            other => other.into(),
        })?;
        let settings = store
            .hub_settings()
            .await?
            .ok_or_else(|| no_hub_here(data_dir))?;
        let endpoint = store
            .endpoint()
            .await?
            .with_context(|| format!("{} holds no endpoint yet", data_dir.display()))?;
        let dps = store.dps_settings().await?;
        let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        Ok(Identity {
            endpoint,
            settings,
            dps,
            ca_certificate: ca_path(&dir),
        })
    }

    /// Reads the identity of a cluster's hub from its shared store: the endpoint of the node
    /// that started last, and the cluster's CA, written to `data_dir/tls/ca.pem` when that
    /// file is absent (so that a path to it can be shown).
    pub async fn load_shared(
        options: &ironhub_postgres::PgOptions,
        data_dir: &Path,
    ) -> anyhow::Result<Identity> {
        let store = ironhub_postgres::PgStore::open(options).await?;
        let none =
            || anyhow::anyhow!("the --store database holds no hub: start a node on it first");
        let settings = store.hub_settings().await?.ok_or_else(none)?;
        let endpoint = store.endpoint().await?.ok_or_else(none)?;
        let dps = store.dps_settings().await?;
        let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        let ca_certificate = ca_path(&dir);
        if !ca_certificate.is_file() {
            let pem = crate::cluster::shared_ca_certificate(&store)
                .await?
                .ok_or_else(none)?;
            if let Some(parent) = ca_certificate.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&ca_certificate, pem)
                .with_context(|| format!("cannot write {}", ca_certificate.display()))?;
        }
        Ok(Identity {
            endpoint,
            settings,
            dps,
            ca_certificate,
        })
    }

    /// The service connection string for a policy (`iothubowner`, …), with its primary or
    /// secondary key.
    pub fn connection_string(
        &self,
        policy: &str,
        secondary: bool,
    ) -> anyhow::Result<ConnectionString> {
        let p = self
            .settings
            .policy(policy)
            .with_context(|| format!("the hub has no shared access policy '{policy}'"))?;
        Ok(self.policy_connection_string(p, secondary))
    }

    /// `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` for a policy of this server.
    fn policy_connection_string(
        &self,
        p: &SharedAccessPolicy,
        secondary: bool,
    ) -> ConnectionString {
        let key = if secondary {
            &p.secondary_key
        } else {
            &p.primary_key
        };
        ConnectionString {
            host_name: self.endpoint.connection_host(),
            shared_access_key_name: Some(p.key_name.clone()),
            shared_access_key: Some(key.clone()),
            ..ConnectionString::default()
        }
    }

    /// The DPS service connection string for a policy (`provisioningserviceowner`, …). The
    /// DPS answers on the hub's host name and port: one server serves both.
    pub fn dps_connection_string(
        &self,
        policy: &str,
        secondary: bool,
    ) -> anyhow::Result<ConnectionString> {
        let dps = self
            .dps
            .as_ref()
            .context("the data directory holds no DPS instance yet: start `ironhub serve` once")?;
        let p = dps
            .policy(policy)
            .with_context(|| format!("the DPS has no shared access policy '{policy}'"))?;
        Ok(self.policy_connection_string(p, secondary))
    }

    /// The certificate the server presents when it was started with `--tls-cert`: then the
    /// generated `ca.pem` did not sign it, and clients trust the CA that issued it instead.
    pub fn own_certificate(&self) -> Option<&Path> {
        self.endpoint.tls_certificate.as_deref()
    }

    /// `"tls"` of `ironhub info --json`: `caCertificate` is the CA that signed the served
    /// certificate, `null` with `--tls-cert` (whose file is `serverCertificate`).
    fn tls_json(&self) -> serde_json::Value {
        match self.own_certificate() {
            Some(cert) => serde_json::json!({
                "caCertificate": null,
                "serverCertificate": cert,
            }),
            None => serde_json::json!({ "caCertificate": self.ca_certificate }),
        }
    }

    /// The Event Hubs-compatible built-in endpoint (`sb://{host}/`, with the port when AMQP
    /// does not listen on 5671), its entity and a connection string for Event Hubs clients,
    /// signed with the `service` policy; `None` before a server with AMQP started here.
    pub fn event_hub_compatible(&self) -> Option<EventHubCompatible> {
        let port = self.endpoint.amqp_port?;
        let policy = self.settings.policy("service")?;
        let host = &self.endpoint.host_name;
        let endpoint = if port == 5671 {
            format!("sb://{host}/")
        } else {
            format!("sb://{host}:{port}/")
        };
        let entity_path = ironhub_hub::events::event_hub_name(host).to_owned();
        let connection_string = format!(
            "Endpoint={endpoint};SharedAccessKeyName={};SharedAccessKey={};EntityPath={entity_path}",
            policy.key_name, policy.primary_key
        );
        Some(EventHubCompatible {
            endpoint,
            entity_path,
            connection_string,
        })
    }

    /// `ironhub info --json`: the object scripts and tests read.
    pub fn info_json(&self) -> anyhow::Result<serde_json::Value> {
        let dps = match &self.dps {
            Some(d) => serde_json::json!({
                "idScope": d.id_scope,
                "hostName": self.endpoint.host_name,
                "serviceConnectionString":
                    self.dps_connection_string("provisioningserviceowner", false)?.to_string(),
            }),
            None => serde_json::Value::Null,
        };
        Ok(serde_json::json!({
            "hub": {
                "hostName": self.endpoint.host_name,
                "hostNames": self.endpoint.host_names,
                "httpsPort": self.endpoint.https_port,
                "mqttPort": self.endpoint.mqtt_port,
                "connectionString": self.connection_string("iothubowner", false)?.to_string(),
            },
            "dps": dps,
            "eventHubCompatible": self.event_hub_compatible(),
            "tls": self.tls_json(),
        }))
    }
}
