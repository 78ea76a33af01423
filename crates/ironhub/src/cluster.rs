//! Scale-out wiring (`serve --store postgres://…`): the store the server runs on, embedded in
//! the data directory or PostgreSQL shared by the nodes of one hub, and, on PostgreSQL, the
//! hub's TLS identity (the CA that signs the server certificates and the default issuing CA)
//! shared through the store, so that every node presents a certificate the same CA signed and
//! issues device certificates from the same CA. The policies, keys and DPS ID scope are
//! records of the store already (created once by whichever node starts first).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use ironhub_embedded::SqliteStore;
use ironhub_postgres::PgStore;
use ironhub_store::{Endpoint, RateWindows, Store};
use serde::{Deserialize, Serialize};

use crate::config::ServeConfig;

/// The store a server runs on, as its ports.
pub(crate) struct Backing {
    /// Every durable port.
    pub store: Arc<dyn Store>,
    /// Where throttling counts.
    pub windows: Arc<dyn RateWindows>,
    /// The shared database, when the server is a node of a cluster.
    pub shared: Option<PgStore>,
}

/// Opens the store of `config`: PostgreSQL with `--store`, else the data directory's.
pub(crate) async fn open(config: &ServeConfig) -> anyhow::Result<Backing> {
    let Some(options) = &config.store else {
        let sqlite = Arc::new(SqliteStore::open(&config.data_dir)?);
        return Ok(Backing {
            store: sqlite.clone(),
            windows: sqlite,
            shared: None,
        });
    };
    anyhow::ensure!(
        config.nats.is_some(),
        "--store postgres://… shares the hub's state between nodes, but without --nats its \
         event log and device bus would stay inside this process, where other nodes never see \
         them: give --nats too (see the README, \"Several nodes\")"
    );
    anyhow::ensure!(
        config.node_id != ironhub_store::LOCAL_NODE,
        "--store postgres://… makes this server one node of several: give each node its own \
         --node-id (a node's restart releases what its id holds)"
    );
    let pg = PgStore::open(options)
        .await
        .context("cannot open the --store database")?;
    tracing::info!(database = ?options.database(), "store on PostgreSQL");
    Ok(Backing {
        store: Arc::new(pg.clone()),
        windows: Arc::new(pg.clone()),
        shared: Some(pg),
    })
}

/// Warns when this node's endpoint names the hub differently from the stored one. The
/// endpoint is the hub's, not a node's: the host names and ports devices, services and DPS
/// use (a load balancer's, in front of every node), so every node should be given the same
/// `--hostname`s and ports. Each node stores its own at start (the last one started wins,
/// so a rolling restart with a new name takes effect); only `https_listen`, where the CLI on
/// that node's machine dials, is the node's own and is then the last one's.
pub(crate) async fn check_endpoint(store: &dyn Store, own: &Endpoint) -> anyhow::Result<()> {
    if let Some(stored) = store.endpoint().await?
        && !same_hub(&stored, own)
    {
        tracing::warn!(
                stored = ?(&stored.host_names, stored.https_port, stored.mqtt_port, stored.amqp_port),
                this_node = ?(&own.host_names, own.https_port, own.mqtt_port, own.amqp_port),
                "this node names the hub or its ports differently from the node that started \
                 before it; give every node the same --hostname and ports (the load \
                 balancer's): this node's replace them"
        );
    }
    Ok(())
}

/// Whether two endpoints name the hub alike (names and ports; not where each node listens).
fn same_hub(a: &Endpoint, b: &Endpoint) -> bool {
    (&a.host_names, a.https_port, a.mqtt_port, a.amqp_port)
        == (&b.host_names, b.https_port, b.mqtt_port, b.amqp_port)
}

/// The CA and the default issuing CA as PEM, as the store shares them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SharedTls {
    ca_cert: String,
    ca_key: String,
    /// Absent when the node that stored them ran with an operator's issuing CA
    /// (`--issuing-ca-cert`): every node is then given that CA's files.
    issuing_ca: Option<(String, String)>,
}

/// The setting the TLS identity is shared under.
const SHARED_TLS: &str = "tls";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
/// Written by `ironhub_tls::ensure_certificates`: removing it reissues the server certificate.
const SERVER_NAMES: &str = "server-names.txt";

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

impl SharedTls {
    /// The identity in `tls_dir`; the issuing CA with `issuing` (no operator's CA).
    fn read(tls_dir: &Path, issuing: bool) -> anyhow::Result<Self> {
        let issuing_ca = if issuing {
            Some((
                read(&tls_dir.join(crate::issuer::CERT_FILE))?,
                read(&tls_dir.join(crate::issuer::KEY_FILE))?,
            ))
        } else {
            None
        };
        Ok(Self {
            ca_cert: read(&tls_dir.join(CA_CERT))?,
            ca_key: read(&tls_dir.join(CA_KEY))?,
            issuing_ca,
        })
    }

    /// Writes the identity into `tls_dir`, replacing the node's own; the server certificate is
    /// reissued by the CA written.
    fn write(&self, tls_dir: &Path) -> anyhow::Result<()> {
        let public = |name: &str, pem: &str| {
            let path = tls_dir.join(name);
            std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))
        };
        ironhub_tls::write_private(&tls_dir.join(CA_KEY), &self.ca_key)?;
        public(CA_CERT, &self.ca_cert)?;
        if let Some((cert, key)) = &self.issuing_ca {
            ironhub_tls::write_private(&tls_dir.join(crate::issuer::KEY_FILE), key)?;
            public(crate::issuer::CERT_FILE, cert)?;
        }
        match std::fs::remove_file(tls_dir.join(SERVER_NAMES)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("cannot replace the server certificate")
            }
            _ => Ok(()),
        }
    }
}

/// Makes the node's TLS identity in `tls_dir` the cluster's: the first node to start stores
/// its own (generated or kept from before), the others replace theirs with it. Call before
/// the certificates and issuing CAs are loaded.
pub(crate) async fn share_tls_identity(
    pg: &PgStore,
    config: &ServeConfig,
    tls_dir: &Path,
    cert_names: &[String],
) -> anyhow::Result<()> {
    // This node's own, generated when it has none: its candidate.
    ironhub_tls::ensure_certificates(tls_dir, cert_names)?;
    crate::issuer::load(config, tls_dir)?;
    let own = SharedTls::read(tls_dir, config.issuing_ca.is_none())?;
    let shared = pg.shared_setting_or_init(SHARED_TLS, own.clone()).await?;
    if shared != own {
        shared.write(tls_dir)?;
        tracing::info!("took the cluster's CA and issuing CA from the store");
    }
    Ok(())
}

/// Makes the TLS identity in a moved hub's `tls_dir` (its CA, and its issuing CA when it has
/// one) the cluster's, so that devices keep trusting the server and their issued
/// certificates: `ironhub migrate --from` calls it before any node starts. Returns whether
/// there was one to store; fails when the store holds another one already.
pub(crate) async fn import_tls_identity(pg: &PgStore, tls_dir: &Path) -> anyhow::Result<bool> {
    if !tls_dir.join(CA_CERT).is_file() {
        return Ok(false);
    }
    let issuing = tls_dir.join(crate::issuer::CERT_FILE).is_file();
    let own = SharedTls::read(tls_dir, issuing)?;
    let shared = pg.shared_setting_or_init(SHARED_TLS, own.clone()).await?;
    anyhow::ensure!(
        shared == own,
        "the target database holds another hub's CA already"
    );
    Ok(true)
}

/// The cluster's CA certificate (PEM), if a node stored it.
pub(crate) async fn shared_ca_certificate(pg: &PgStore) -> anyhow::Result<Option<String>> {
    Ok(pg
        .shared_setting::<SharedTls>(SHARED_TLS)
        .await?
        .map(|tls| tls.ca_cert))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(names: &[&str], listen: &str) -> Endpoint {
        Endpoint {
            host_name: names[0].to_owned(),
            host_names: names.iter().map(|n| (*n).to_owned()).collect(),
            https_port: 443,
            mqtt_port: 8883,
            amqp_port: Some(5671),
            https_listen: Some(listen.parse().unwrap_or_else(|_| unreachable!())),
            tls_certificate: None,
        }
    }

    #[test]
    fn nodes_behind_one_name_are_one_hub_wherever_each_listens() {
        let a = endpoint(&["hub.example"], "10.0.0.1:443");
        assert!(same_hub(&a, &endpoint(&["hub.example"], "10.0.0.2:443")));
        assert!(!same_hub(
            &a,
            &endpoint(&["node-2.example"], "10.0.0.2:443")
        ));
        let mut other_port = endpoint(&["hub.example"], "10.0.0.2:443");
        other_port.mqtt_port = 18883;
        assert!(!same_hub(&a, &other_port));
    }
}
