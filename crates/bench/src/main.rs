//! `ironhub-bench`: measures MQTT connects per second and QoS 1 telemetry throughput from many
//! devices, against `ironhub serve` and, in the same run, against a peer broker (Eclipse
//! Mosquitto) given the same TLS certificate, so that results are ratios on the same machine.
//! `ironhub-bench provision` measures DPS provisioning instead (see `provision.rs`), and
//! `ironhub-bench query` twin queries over a generated fleet (see `query.rs`), and
//! `ironhub-bench amqp` AMQP telemetry and Event Hubs reads beside MQTT (see `amqp.rs`).
//!
//! Each target runs as its own process on loopback; the load comes from this process.
//! ironhub acknowledges a QoS 1 message only once it is durable (fsync'd); Mosquitto
//! acknowledges from memory. The ratio shows that cost; it is the honest comparison a user of
//! either makes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use tokio::sync::Semaphore;

mod amqp;
mod amqp_device;
mod compare;
mod device;
mod events_read;
mod latency;
mod net;
mod peers;
mod provision;
mod query;
mod report;
mod server;
mod stats;
mod ws;

use device::{Login, connect, device_id, send_all};
use net::{HOST, client_config, wait_port};

#[derive(Debug, Parser)]
#[command(
    about = "MQTT connects and QoS 1 telemetry (or, with `provision`, DPS provisioning): \
             ironhub side by side with a peer",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Mode>,
    #[command(flatten)]
    telemetry: Args,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// DPS provisioning throughput (TLS connect + register + polls until assigned, many
    /// devices at once) over HTTPS and MQTT, beside Azure/iot-identity-service's
    /// mock-iot-server over HTTPS.
    Provision(provision::Args),
    /// The same MQTT load against ironhub, Mosquitto and rumqttd in one run, several rounds:
    /// TLS connect storm, QoS 1 fan-in, C2D delivery, idle connections' memory; and
    /// ironhub's direct-method and desired-patch latencies.
    Compare(compare::Args),
    /// Twin queries over a generated fleet (a million devices by default): selective
    /// queries, aggregates and a full scan, with the peak memory.
    Query(query::Args),
    /// Telemetry ingest over AMQP beside the same load over MQTT, then every event read back
    /// from the built-in endpoint by Event Hubs partition receivers (and the REST stream), on
    /// one ironhub, several rounds.
    Amqp(amqp::Args),
}

/// The telemetry mode (no subcommand).
#[derive(Debug, clap::Args)]
struct Args {
    /// The ironhub binary to measure.
    #[arg(long, default_value = "target/release/ironhub")]
    ironhub: PathBuf,
    /// The peer broker binary; `none` measures ironhub alone.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: String,
    /// Devices, each with its own connection.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// QoS 1 messages each device sends.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Messages a device may have unacknowledged (paho's default is 20).
    #[arg(long, default_value_t = 20)]
    inflight: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Connections opened at once during the connect phase.
    #[arg(long, default_value_t = 50)]
    connect_concurrency: usize,
    /// Loopback port base (ironhub uses base and base+1, the peer base+2).
    #[arg(long, default_value_t = 28883)]
    port_base: u16,
    /// Also measure ironhub with its event log and device bus on the NATS JetStream server
    /// at this URL (`serve --nats`), after the embedded run, with the same devices.
    #[arg(long)]
    nats: Option<String>,
    /// The loopback address ironhub (and the peer) listen on and the devices connect to.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    /// Every connect makes a full TLS handshake (no session resumption), as the connect
    /// storm of `compare` does.
    #[arg(long)]
    no_resume: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    connects_per_sec: f64,
    messages_per_sec: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Mode::Provision(args)) => provision::main(args).await,
        Some(Mode::Query(args)) => query::main(args).await,
        Some(Mode::Compare(args)) => compare::main(args).await,
        Some(Mode::Amqp(args)) => amqp::main(args).await,
        None => telemetry(cli.telemetry).await,
    }
}

async fn telemetry(args: Args) -> anyhow::Result<()> {
    net::set_address(args.address);
    let work = tempfile::tempdir()?;
    let dir = work.path().join("ironhub");
    let keys = prepare_ironhub(&dir, args.devices).await?;
    // Generated by ironhub and used by both targets.
    ironhub_tls::ensure_certificates(
        &dir.join("tls"),
        &[HOST.to_owned(), args.address.to_string()],
    )?;
    let ca = dir.join("tls/ca.pem");

    let ironhub = measure_ironhub(&args, &dir, &ca, &keys, None).await?;
    let on_nats = match &args.nats {
        Some(url) => Some(measure_ironhub(&args, &dir, &ca, &keys, Some(url)).await?),
        None => None,
    };
    let peer = if args.mosquitto == "none" {
        None
    } else {
        let port = args.port_base + 2;
        let mut broker =
            peers::start_mosquitto(&args.mosquitto, work.path(), &dir.join("tls"), port)?;
        let figures = match wait_port(port).await {
            Ok(()) => run(&args, port, &ca, |_| Login::Anonymous).await,
            Err(e) => Err(e),
        };
        let _ = broker.kill();
        let _ = broker.wait();
        Some(figures?)
    };
    report(&args, ironhub, peer);
    if let Some(on_nats) = on_nats {
        report_nats(ironhub, on_nats);
    }
    Ok(())
}

/// The embedded and the NATS run side by side.
#[allow(clippy::print_stdout)]
fn report_nats(ironhub: Figures, on_nats: Figures) {
    println!("| measure | ironhub embedded | ironhub --nats | --nats / embedded |");
    println!("|---|---|---|---|");
    for (name, a, b) in [
        (
            "connects/s (TLS + CONNECT)",
            ironhub.connects_per_sec,
            on_nats.connects_per_sec,
        ),
        (
            "QoS 1 messages/s",
            ironhub.messages_per_sec,
            on_nats.messages_per_sec,
        ),
    ] {
        println!("| {name} | {a:.0} | {b:.0} | {:.2} |", b / a);
    }
}

/// Starts `ironhub serve` on the prepared data directory (with `--nats url` when given),
/// measures it and stops it.
async fn measure_ironhub(
    args: &Args,
    dir: &Path,
    ca: &Path,
    keys: &[String],
    nats: Option<&str>,
) -> anyhow::Result<Figures> {
    let mqtt_port = args.port_base;
    let address = args.address;
    let mut command = Command::new(&args.ironhub);
    command
        .args(["serve", "--hostname", HOST, "--hostname"])
        .arg(address.to_string())
        .arg("--data-dir")
        .arg(dir)
        .arg("--https-listen")
        .arg(format!("{address}:{}", args.port_base + 1))
        .arg("--mqtt-listen")
        .arg(format!("{address}:{mqtt_port}"))
        .arg("--amqp-listen")
        .arg(format!("{address}:0"));
    if let Some(url) = nats {
        command.args(["--nats", url]);
    }
    let mut server = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", args.ironhub.display()))?;
    wait_port(mqtt_port).await?;
    let figures = run(args, mqtt_port, ca, |i| Login::Sas(keys[i].clone())).await;
    let _ = server.kill();
    let _ = server.wait();
    figures
}

/// Creates the hub and its devices in `dir` before the server starts; returns device keys.
async fn prepare_ironhub(dir: &Path, devices: usize) -> anyhow::Result<Vec<String>> {
    let backends = Backends {
        store: Arc::new(SqliteStore::open(dir)?),
        events: Arc::new(SqliteEventLog::open(dir, 4)?),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec![HOST.into()]).await?;
    let mut keys = Vec::with_capacity(devices);
    for i in 0..devices {
        let spec = serde_json::from_value(serde_json::json!({}))?;
        let d = hub.put_device(&device_id(i), &spec, None).await?;
        keys.push(
            d.authentication
                .symmetric_key
                .primary_key
                .unwrap_or_default(),
        );
    }
    Ok(keys)
}

/// Connect phase, then telemetry phase, against the broker on `port`.
async fn run(
    args: &Args,
    port: u16,
    ca: &Path,
    login: impl Fn(usize) -> Login,
) -> anyhow::Result<Figures> {
    let config = client_config(ca, !args.no_resume)?;

    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.devices);
    for i in 0..args.devices {
        let (config, gate, login) = (config.clone(), gate.clone(), login(i));
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            connect(config, port, &device_id(i), login, 60).await
        }));
    }
    let mut conns = Vec::with_capacity(args.devices);
    for t in tasks {
        conns.push(t.await??);
    }
    let connect_secs = started.elapsed().as_secs_f64();

    let payload = vec![b'x'; args.payload];
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.devices);
    for (i, tls) in conns.into_iter().enumerate() {
        let (payload, messages, inflight) = (payload.clone(), args.messages, args.inflight);
        tasks.push(tokio::spawn(async move {
            send_all(tls, i, messages, inflight, payload).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    Ok(Figures {
        connects_per_sec: args.devices as f64 / connect_secs,
        messages_per_sec: (args.devices * args.messages) as f64 / send_secs,
    })
}

#[allow(clippy::print_stdout)]
fn report(args: &Args, ironhub: Figures, peer: Option<Figures>) {
    println!(
        "devices={} messages/device={} inflight={} payload={}B",
        args.devices, args.messages, args.inflight, args.payload
    );
    println!("| measure | ironhub | mosquitto | ironhub / mosquitto |");
    println!("|---|---|---|---|");
    let row = |name: &str, a: f64, b: Option<f64>| match b {
        Some(b) => println!("| {name} | {a:.0} | {b:.0} | {:.2} |", a / b),
        None => println!("| {name} | {a:.0} | – | – |"),
    };
    row(
        "connects/s (TLS + CONNECT)",
        ironhub.connects_per_sec,
        peer.map(|p| p.connects_per_sec),
    );
    row(
        "QoS 1 messages/s",
        ironhub.messages_per_sec,
        peer.map(|p| p.messages_per_sec),
    );
}
