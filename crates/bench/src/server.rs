//! A measured server's process: ironhub's data directory prepared before it starts (devices,
//! queued C2D messages, the shared TLS certificate), `ironhub serve` on the benchmark's
//! ports, and any server waited for until it listens (or reported with the end of its output
//! when it does not).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use anyhow::Context as _;
use ironhub_auth::{generate_key, sas, unix_now};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::c2d::OutgoingMessage;
use ironhub_hub::{Backends, Hub};
use ironhub_store::{Authentication, SymmetricKey, TwinRecord};
use tokio::sync::Semaphore;

use crate::device::device_id;
use crate::net::{HOST, address, wait_port};
use crate::peers;

/// The event log's partitions in a prepared data directory (ironhub's default).
pub const PARTITIONS: u32 = 4;

/// Where ironhub listens: MQTT, HTTPS and, when given, AMQP (else a port of the system's
/// choosing, unused).
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub mqtt: u16,
    pub https: u16,
    pub amqp: Option<u16>,
}

/// A started server process.
pub struct Server {
    child: Child,
    pub pid: u32,
}

impl Server {
    /// `ironhub serve` (the binary `bin`) on the data directory `dir` and `ports`, with the
    /// connection caps lifted; its output goes to a log in `work`.
    pub async fn ironhub(
        bin: &Path,
        dir: &Path,
        work: &Path,
        ports: Ports,
    ) -> anyhow::Result<Self> {
        let at = |port: u16| format!("{}:{port}", address());
        let name = bin.to_string_lossy().into_owned();
        let child = peers::spawn(
            Command::new(bin)
                .args(["serve", "--hostname", HOST, "--hostname", "127.0.0.1"])
                .arg("--data-dir")
                .arg(dir)
                .arg("--https-listen")
                .arg(at(ports.https))
                .arg("--mqtt-listen")
                .arg(at(ports.mqtt))
                .arg("--amqp-listen")
                .arg(at(ports.amqp.unwrap_or(0)))
                .args(["--max-connections-per-address", "100000"])
                .args(["--max-connections", "100000"]),
            &name,
            work,
        )?;
        let mut wait = vec![ports.mqtt, ports.https];
        wait.extend(ports.amqp);
        Self::ready(child, "ironhub", &name, work, &wait).await
    }

    /// Waits until `child` (`name`, started from `bin` with its output in `work`) listens on
    /// every one of `ports`; if it does not, stops it and says whether it exited and what it
    /// said.
    pub async fn ready(
        child: Child,
        name: &str,
        bin: &str,
        work: &Path,
        ports: &[u16],
    ) -> anyhow::Result<Self> {
        let mut server = Server {
            pid: child.id(),
            child,
        };
        let mut ready = Ok(());
        for &port in ports {
            ready = wait_port(port).await;
            if ready.is_err() {
                break;
            }
        }
        if let Err(e) = ready {
            let exited = server.child.try_wait().ok().flatten();
            let _ = server.child.kill();
            let _ = server.child.wait();
            return Err(e.context(format!(
                "{name} {}; its output ({}):\n{}",
                exited.map_or_else(|| "was running".to_owned(), |s| format!("exited ({s})")),
                peers::log_path(work, bin).display(),
                peers::log_tail(work, bin)
            )));
        }
        Ok(server)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TLS certificate every server of a run is given (ironhub generates it), in
/// `{work}/tls`; returns the path of its CA certificate.
pub fn certificates(work: &Path) -> anyhow::Result<PathBuf> {
    let certs = ironhub_tls::ensure_certificates(
        &work.join("tls"),
        &[HOST.to_owned(), "127.0.0.1".into()],
    )?;
    Ok(certs.ca)
}

/// Creates the hub in `dir` with the certificate of `tls` (the one the peers are given, where
/// ironhub looks for its own), `devices` devices (one key for all; the benchmark's devices
/// need not be told apart by key) and `c2d` messages of `payload` bytes queued for each of the
/// first `c2d_devices`; returns the device key and a service token of `iothubowner`.
pub async fn prepare_ironhub(
    dir: &Path,
    tls: &Path,
    devices: usize,
    c2d_devices: usize,
    c2d: usize,
    payload: usize,
) -> anyhow::Result<(String, String)> {
    std::fs::create_dir_all(dir.join("tls"))?;
    for file in std::fs::read_dir(tls)? {
        let file = file?;
        std::fs::copy(file.path(), dir.join("tls").join(file.file_name()))?;
    }
    let store = Arc::new(SqliteStore::open(dir)?);
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir, PARTITIONS)?),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into(), "127.0.0.1".into()]).await?;
    let key = generate_key(32);
    let authentication = Authentication {
        symmetric_key: SymmetricKey {
            primary_key: Some(key.clone()),
            secondary_key: Some(generate_key(32)),
        },
        ..Authentication::default()
    };
    let mut i = 0;
    while i < devices {
        let end = (i + 10_000).min(devices);
        let fleet = (i..end)
            .map(|n| {
                let device = crate::query::device_record(device_id(n), n, authentication.clone());
                let twin = TwinRecord {
                    device_id: device_id(n),
                    version: 1,
                    ..TwinRecord::default()
                };
                (device, twin)
            })
            .collect();
        store.load_fleet(fleet).await?;
        i = end;
    }
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(c2d_devices * c2d);
    for d in 0..c2d_devices {
        for _ in 0..c2d {
            let (hub, gate) = (hub.clone(), gate.clone());
            let message = OutgoingMessage {
                body: vec![b'c'; payload],
                ..OutgoingMessage::default()
            };
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await?;
                hub.send_c2d(&device_id(d), message).await?;
                anyhow::Ok(())
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    let owner = hub
        .settings()
        .policy("iothubowner")
        .context("the hub has no iothubowner policy")?;
    let token = sas::generate(
        HOST,
        &owner.primary_key,
        unix_now() + 24 * 3600,
        Some(&owner.key_name),
    )?;
    Ok((key, token))
}
