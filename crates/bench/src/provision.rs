//! `ironhub-bench provision`: DPS provisioning throughput. Every device opens a new TLS
//! connection, sends its register request with the SAS token of its key derived from a
//! symmetric-key enrollment group, and polls its operation until it is `assigned`, many
//! devices at once; over HTTPS (the device REST API) and over MQTT (`$dps/registrations/…`).
//!
//! The peer, measured in the same run over HTTPS (it has no MQTT), is Azure/iot-identity-service's
//! `mock-iot-server`, a DPS mock that keeps operations in memory and checks no credential;
//! it is built outside this repository and given with `--peer`. Both are given ironhub's
//! generated server certificate.
//!
//! A real device waits the `Retry-After` (2 s) between polls; the load generator polls every
//! `--poll-ms` instead, so the figures measure the servers and not the devices' patience.
//! ironhub is started with `--dps-polls-per-device 0` so those fast polls are not throttled.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::header;
use hyper_util::rt::TokioIo;
use ironhub_auth::{derive_device_key, generate_key};
use ironhub_dps::Dps;
use ironhub_dps::model::{EnrollmentGroup, LinkedHub};
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use ironhub_simulate::provision::{Poll, register, registration_token};
use ironhub_store::Store;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::net::{HOST, client_config, tls_connect, wait_port};

/// The API version devices name (the SDKs' current one).
const API_VERSION: &str = "2019-03-31";
const GROUP: &str = "bench-group";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The ironhub binary to measure.
    #[arg(long, default_value = "target/release/ironhub")]
    ironhub: PathBuf,
    /// The peer: a `mock-iot-server` binary built from Azure/iot-identity-service
    /// (`identity/mock-iot-server`); `none` measures ironhub alone.
    #[arg(long, default_value = "none")]
    peer: String,
    /// Devices provisioned on each transport, each once.
    #[arg(long, default_value_t = 500)]
    devices: usize,
    /// Devices provisioned, unmeasured, on each server and transport before the measured
    /// phases.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Devices provisioning at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Milliseconds a device waits before each status poll (a real device waits the
    /// Retry-After, 2 s).
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Loopback port base (ironhub uses base and base+1, the peer base+2).
    #[arg(long, default_value_t = 28983)]
    port_base: u16,
    /// The loopback address ironhub (and the peer) listen on and the devices connect to.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Https,
    Mqtt,
}

/// What one phase measured.
#[derive(Debug, Clone)]
struct Phase {
    per_sec: f64,
    /// Every device's time from its TCP connect to its `assigned` answer, sorted.
    latencies: Vec<Duration>,
    /// Status polls a device made, on average.
    polls: f64,
}

impl Phase {
    fn percentile_ms(&self, p: f64) -> f64 {
        crate::stats::percentile_ms(&self.latencies, p)
    }
}

/// A symmetric-key enrollment group of the DPS in `data_dir`: its ID scope and primary key.
struct Enrollment {
    scope: String,
    group_key: String,
}

pub(crate) async fn main(args: Args) -> anyhow::Result<()> {
    crate::net::set_address(args.address);
    #[allow(clippy::print_stdout)]
    {
        println!(
            "load average (1, 5, 15 min) at the start: {}",
            crate::stats::load_average()
        );
    }
    let work = tempfile::tempdir()?;
    let dir = work.path().join("ironhub");
    let (mqtt_port, https_port, peer_port) =
        (args.port_base, args.port_base + 1, args.port_base + 2);
    for port in [mqtt_port, https_port, peer_port] {
        if TcpStream::connect((args.address, port)).await.is_ok() {
            bail!(
                "something already listens on {}:{port}: give another --port-base",
                args.address
            );
        }
    }
    let enrollment = prepare_ironhub(&dir, https_port).await?;
    let certs =
        ironhub_tls::ensure_certificates(&dir.join("tls"), &[HOST.to_owned(), "127.0.0.1".into()])?;
    // No session resumption: a full handshake per device.
    let config = client_config(&certs.ca, false)?;

    // Both run from the start (an idle server costs nothing), so that the two HTTPS phases
    // follow each other and see the same machine.
    let mut servers = vec![
        Command::new(&args.ironhub)
            .args(["serve", "--hostname", HOST, "--hostname", "127.0.0.1"])
            .arg("--data-dir")
            .arg(&dir)
            .arg("--https-listen")
            .arg(format!("{}:{https_port}", args.address))
            .arg("--mqtt-listen")
            .arg(format!("{}:{mqtt_port}", args.address))
            .arg("--amqp-listen")
            .arg(format!("{}:0", args.address))
            .args(["--dps-polls-per-device", "0"])
            .args(["--dps-registrations-per-minute", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", args.ironhub.display()))?,
    ];
    let with_peer = args.peer != "none";
    if with_peer {
        match start_peer(
            &args.peer,
            peer_port,
            &certs.server_chain,
            &certs.server_key,
        ) {
            Ok(child) => servers.push(child),
            Err(e) => {
                stop(servers);
                return Err(e);
            }
        }
    }
    let measured = async {
        wait_port(https_port).await?;
        wait_port(mqtt_port).await?;
        if with_peer {
            wait_port(peer_port).await?;
        }
        let phase = |transport, port, name, devices| {
            run(&args, &config, transport, port, &enrollment, name, devices)
        };
        // Unmeasured: each server's first connections, threads and store pages.
        if args.warmup > 0 {
            phase(Transport::Https, https_port, "warm", args.warmup).await?;
            phase(Transport::Mqtt, mqtt_port, "warm", args.warmup).await?;
            if with_peer {
                phase(Transport::Https, peer_port, "warm", args.warmup).await?;
            }
        }
        let https = phase(Transport::Https, https_port, "bench", args.devices).await?;
        let peer = if with_peer {
            Some(phase(Transport::Https, peer_port, "bench", args.devices).await?)
        } else {
            None
        };
        let mqtt = phase(Transport::Mqtt, mqtt_port, "bench", args.devices).await?;
        anyhow::Ok((https, mqtt, peer))
    }
    .await;
    stop(servers);
    let (https, mqtt, peer) = measured?;
    report(&args, &https, &mqtt, peer.as_ref());
    Ok(())
}

fn stop(servers: Vec<Child>) {
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// Creates the hub, the DPS linked to it (as `serve` does on a first start) and the
/// enrollment group in `dir` before the server starts.
async fn prepare_ironhub(dir: &Path, https_port: u16) -> anyhow::Result<Enrollment> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir)?);
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(dir, 4)?),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into(), "127.0.0.1".into()]).await?;
    let owner = hub
        .settings()
        .policy("iothubowner")
        .context("the hub has no iothubowner policy")?;
    let own = LinkedHub {
        name: HOST.into(),
        connection_string: ironhub_auth::ConnectionString {
            host_name: format!("{HOST}:{https_port}"),
            shared_access_key_name: Some(owner.key_name.clone()),
            shared_access_key: Some(owner.primary_key.clone()),
            ..ironhub_auth::ConnectionString::default()
        }
        .to_string(),
        allocation_weight: None,
        apply_allocation_policy: None,
        location: None,
        etag: None,
    };
    let dps = Dps::open(store, vec![HOST.into(), "127.0.0.1".into()], Some(own)).await?;
    let group_key = generate_key(32);
    let group: EnrollmentGroup = serde_json::from_value(json!({
        "enrollmentGroupId": GROUP,
        "attestation": {"type": "symmetricKey", "symmetricKey": {
            "primaryKey": group_key, "secondaryKey": generate_key(32)}},
    }))?;
    dps.create_or_update(GROUP, group, None).await?;
    Ok(Enrollment {
        scope: dps.id_scope().to_owned(),
        group_key,
    })
}

fn start_peer(bin: &str, port: u16, chain: &Path, key: &Path) -> anyhow::Result<Child> {
    // It logs every request and answer on standard output.
    Command::new(bin)
        .arg("--port")
        .arg(port.to_string())
        .arg("--server-cert-chain")
        .arg(chain)
        .arg("--server-key")
        .arg(key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {bin}"))
}

fn registration_id(phase: &str, transport: Transport, i: usize) -> String {
    match transport {
        Transport::Https => format!("{phase}-https-{i:05}"),
        Transport::Mqtt => format!("{phase}-mqtt-{i:05}"),
    }
}

/// Provisions `devices` devices over `transport`, `concurrency` at once; their registration
/// ids start with `phase`.
#[allow(clippy::too_many_arguments)]
async fn run(
    args: &Args,
    config: &Arc<rustls::ClientConfig>,
    transport: Transport,
    port: u16,
    enrollment: &Enrollment,
    phase: &str,
    devices: usize,
) -> anyhow::Result<Phase> {
    // Keys and tokens are the device's work, done before the clock starts.
    let credentials = (0..devices)
        .map(|i| {
            let id = registration_id(phase, transport, i);
            let key = derive_device_key(&enrollment.group_key, &id)?;
            let token = registration_token(&enrollment.scope, &id, &key)?;
            anyhow::Ok((id, token))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let poll = Duration::from_millis(args.poll_ms);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(devices);
    for (id, token) in credentials {
        let (config, gate, scope) = (config.clone(), gate.clone(), enrollment.scope.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let device = Device {
                scope: &scope,
                id: &id,
                token: &token,
                poll,
            };
            let result = match transport {
                Transport::Https => device.over_https(config, port).await,
                Transport::Mqtt => device.over_mqtt(config, port).await,
            };
            result.with_context(|| format!("{id} over {transport:?}"))
        }));
    }
    let mut latencies = Vec::with_capacity(devices);
    let mut polls = 0u64;
    for t in tasks {
        let (latency, n) = t.await??;
        latencies.push(latency);
        polls += u64::from(n);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    #[allow(clippy::cast_precision_loss)]
    Ok(Phase {
        per_sec: devices as f64 / secs,
        polls: polls as f64 / devices.max(1) as f64,
        latencies,
    })
}

/// One device's provisioning.
struct Device<'a> {
    scope: &'a str,
    id: &'a str,
    token: &'a str,
    poll: Duration,
}

impl Device<'_> {
    /// Over the HTTPS device API, on one keep-alive connection. Returns the time from TCP
    /// connect to `assigned` and the polls it took.
    async fn over_https(
        &self,
        config: Arc<rustls::ClientConfig>,
        port: u16,
    ) -> anyhow::Result<(Duration, u32)> {
        let (scope, id) = (self.scope, self.id);
        let started = Instant::now();
        let tls = tls_connect(config, port).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let conn = tokio::spawn(conn);
        let body = json!({ "registrationId": id }).to_string();
        let (status, answer) = self
            .call(
                &mut send,
                "PUT",
                &format!("/{scope}/registrations/{id}/register?api-version={API_VERSION}"),
                body,
            )
            .await?;
        if status != 202 {
            bail!("register answered {status}: {answer}");
        }
        let operation = answer["operationId"]
            .as_str()
            .context("the register answer has no operationId")?
            .to_owned();
        let mut polls = 0u32;
        loop {
            tokio::time::sleep(self.poll).await;
            polls += 1;
            let (status, answer) = self
                .call(
                    &mut send,
                    "GET",
                    &format!(
                        "/{scope}/registrations/{id}/operations/{operation}?api-version={API_VERSION}"
                    ),
                    String::new(),
                )
                .await?;
            match (status, answer["status"].as_str()) {
                (200, Some("assigned")) => {
                    assigned(&answer)?;
                    break;
                }
                (202, Some("assigning")) => {}
                _ => bail!("a poll answered {status}: {answer}"),
            }
        }
        let elapsed = started.elapsed();
        drop(send);
        let _ = conn.await;
        Ok((elapsed, polls))
    }

    async fn call(
        &self,
        send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        method: &str,
        path: &str,
        body: String,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, self.token);
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json; charset=utf-8");
        }
        let response = send
            .send_request(request.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let answer = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{status}: {}", String::from_utf8_lossy(&bytes)))?
        };
        Ok((status, answer))
    }

    /// Over MQTT: CONNECT, SUBSCRIBE to the answers, the register request, polls
    /// (`ironhub_simulate`'s exchange, as `ironhub simulate` provisions).
    async fn over_mqtt(
        &self,
        config: Arc<rustls::ClientConfig>,
        port: u16,
    ) -> anyhow::Result<(Duration, u32)> {
        let started = Instant::now();
        let mut tls = tls_connect(config, port).await?;
        let registered = register(
            &mut tls,
            self.scope,
            self.id,
            self.token,
            Poll::Every(self.poll),
        )
        .await?;
        Ok((started.elapsed(), registered.polls))
    }
}

/// Checks that an `assigned` answer names the device's hub and device id.
fn assigned(answer: &Value) -> anyhow::Result<()> {
    let state = &answer["registrationState"];
    if state["assignedHub"].as_str().is_none_or(str::is_empty)
        || state["deviceId"].as_str().is_none_or(str::is_empty)
    {
        bail!("an assigned answer without a hub or device id: {answer}");
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn report(args: &Args, https: &Phase, mqtt: &Phase, peer: Option<&Phase>) {
    println!(
        "devices={} concurrency={} poll every {} ms (TLS 1.2, a new connection per device)",
        args.devices, args.concurrency, args.poll_ms
    );
    println!("| measure | ironhub | mock-iot-server | ironhub / mock-iot-server |");
    println!("|---|---|---|---|");
    let row = |name: &str, a: f64, b: Option<f64>, digits: usize| match b {
        Some(b) => println!("| {name} | {a:.digits$} | {b:.digits$} | {:.2} |", a / b),
        None => println!("| {name} | {a:.digits$} | – | – |"),
    };
    row(
        "HTTPS registrations/s (TLS + register + polls until assigned)",
        https.per_sec,
        peer.map(|p| p.per_sec),
        0,
    );
    for p in [0.5, 0.9, 0.99] {
        row(
            &format!("HTTPS latency p{:.0} ms", p * 100.0),
            https.percentile_ms(p),
            peer.map(|x| x.percentile_ms(p)),
            1,
        );
    }
    row(
        "HTTPS polls per device",
        https.polls,
        peer.map(|p| p.polls),
        2,
    );
    row(
        "MQTT registrations/s (TLS + CONNECT + SUBSCRIBE + register + polls)",
        mqtt.per_sec,
        None,
        0,
    );
    for p in [0.5, 0.9, 0.99] {
        row(
            &format!("MQTT latency p{:.0} ms", p * 100.0),
            mqtt.percentile_ms(p),
            None,
            1,
        );
    }
    row("MQTT polls per device", mqtt.polls, None, 2);
    println!(
        "ironhub MQTT / ironhub HTTPS registrations/s: {:.2}",
        mqtt.per_sec / https.per_sec
    );
    println!(
        "load average (1, 5, 15 min) at the end: {}",
        crate::stats::load_average()
    );
}
