//! `ironhub-bench compare`: the same MQTT load against ironhub, Eclipse Mosquitto and rumqttd
//! in one run, several rounds with the servers' order rotated, each figure printed per round
//! with its median and the ratios of ironhub's median to the peers'.
//!
//! Every round starts each server afresh (ironhub on a new data directory) and measures, on
//! one instance: a TLS connect storm (full handshakes, CONNECT and CONNACK), QoS 1 fan-in
//! (every device sends its messages with a window of unacknowledged ones), C2D delivery
//! (QoS 1 to subscribed devices, each acknowledged), and, for ironhub alone, a direct method's
//! round trip and a desired patch's way to the device; then, on a new instance, the memory a
//! held idle connection costs (resident memory before and after opening them all, divided by
//! their number), and for ironhub the same over MQTT over WebSocket on its HTTPS port.
//!
//! ironhub authenticates every CONNECT with a SAS token against its registry and acknowledges a
//! QoS 1 message once it is fsync'd; the peers take anonymous clients and acknowledge from
//! memory. C2D differs in where messages come from: the peers get them from publishing
//! clients (four connections, QoS 1) once every device has subscribed; ironhub's are queued in
//! its store before it starts (a service sends them over AMQP, which this load generator does
//! not speak) and flow as the devices subscribe. Both clocks run from the devices' subscriptions
//! to the last message's arrival.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish, Subscribe};
use tokio::sync::{Barrier, Semaphore};

use crate::device::{Login, connect, connect_packet, device_id, send_all};
use crate::net::{Tls, client_config, read, write};
use crate::peers;
use crate::report::{Results, ratio_cell, rounds_cell};
use crate::server::{Ports, Server, certificates, prepare_ironhub};
use crate::stats::{percentile_ms, rss_kib};

/// `ironhub-bench compare`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ironhub binary.
    #[arg(long, default_value = "target/release/ironhub")]
    ironhub: PathBuf,
    /// Mosquitto's binary; `none` leaves it out.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: String,
    /// rumqttd's binary; `none` leaves it out.
    #[arg(long, default_value = "rumqttd")]
    rumqttd: String,
    /// Rounds; each round runs every server once, in a rotated order.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Devices in the connect storm.
    #[arg(long, default_value_t = 2000)]
    storm_devices: usize,
    /// Connections the storm opens at once.
    #[arg(long, default_value_t = 64)]
    storm_concurrency: usize,
    #[command(flatten)]
    load: FanIn,
    /// C2D messages each device receives (IoT Hub queues 50 at most for a device).
    #[arg(long, default_value_t = 10)]
    c2d_messages: usize,
    /// Idle connections held for the memory figure; 0 skips it.
    #[arg(long, default_value_t = 15_000)]
    idle: usize,
    /// Direct method calls and desired patches measured (after 100 unmeasured).
    #[arg(long, default_value_t = 2000)]
    latency_samples: usize,
    /// Loopback port base: ironhub's MQTT and HTTPS, Mosquitto's and rumqttd's are base to
    /// base+3.
    #[arg(long, default_value_t = 28883)]
    port_base: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Ironhub,
    Mosquitto,
    Rumqttd,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Ironhub => "ironhub",
            Target::Mosquitto => "mosquitto",
            Target::Rumqttd => "rumqttd",
        }
    }
}

const CONNECTS: &str = "TLS connect storm, connects/s";
const FAN_IN: &str = "QoS 1 fan-in, messages/s";
const C2D: &str = "C2D delivered, messages/s";
const IDLE: &str = "idle TLS connection, KiB each";
const IDLE_WS: &str = "idle WebSocket connection (443), KiB each";
const METHOD_P50: &str = "direct method round trip p50, ms";
const METHOD_P99: &str = "direct method round trip p99, ms";
const DESIRED_P50: &str = "desired patch to device p50, ms";
const DESIRED_P99: &str = "desired patch to device p99, ms";

/// What a server needs to be measured: where it listens and how devices log in.
pub(crate) struct Setup {
    pub target: Target,
    pub mqtt_port: u16,
    pub https_port: u16,
    /// ironhub's device key (every device has it) and service token.
    pub device_key: String,
    pub service_token: String,
}

/// The telemetry fan-in: `devices` devices each send `messages` messages of `payload` bytes
/// with at most `inflight` unacknowledged (`compare`'s C2D goes to the same devices, with
/// payloads of the same size).
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct FanIn {
    /// Devices sending telemetry, each on its own connection (in `compare`, also receiving
    /// C2D).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Messages each device sends (over each transport, in `amqp`).
    #[arg(long, default_value_t = 100)]
    pub messages: usize,
    /// Messages a device may have unacknowledged (paho's default is 20); over AMQP, transfers
    /// not yet settled.
    #[arg(long, default_value_t = 20)]
    pub inflight: usize,
    /// Payload bytes of a telemetry or C2D message.
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
}

impl Setup {
    fn login(&self) -> Login {
        match self.target {
            Target::Ironhub => Login::Sas(self.device_key.clone()),
            _ => Login::Anonymous,
        }
    }
}

#[allow(clippy::print_stdout)]
pub async fn main(args: Args) -> anyhow::Result<()> {
    let mut targets = vec![Target::Ironhub];
    if args.mosquitto != "none" {
        targets.push(Target::Mosquitto);
    }
    if args.rumqttd != "none" {
        targets.push(Target::Rumqttd);
    }
    let mut results = Results::start();
    let work = tempfile::tempdir()?;
    let ca = certificates(work.path())?;
    for round in 0..args.rounds {
        targets.rotate_left(usize::from(round > 0));
        results.round = round;
        for &target in &targets {
            println!("round {} of {}: {}", round + 1, args.rounds, target.name());
            // A server that fails its round is reported and the run goes on.
            if let Err(e) = measure(&args, round, target, work.path(), &ca, &mut results)
                .await
                .with_context(|| format!("round {}, {}", round + 1, target.name()))
            {
                results.failed(&e);
            }
        }
    }
    report(&args, &targets, &results);
    results.finish("servers' rounds")
}

/// One round of one target: the load on a first instance, idle connections on a second.
async fn measure(
    args: &Args,
    round: usize,
    target: Target,
    work: &Path,
    ca: &Path,
    results: &mut Results,
) -> anyhow::Result<()> {
    let dir = work.join(format!("ironhub-{round}"));
    let tls = work.join("tls");
    let ports = Ports {
        mqtt: args.port_base,
        https: args.port_base + 1,
        amqp: None,
    };
    let mut setup = Setup {
        target,
        mqtt_port: match target {
            Target::Ironhub => args.port_base,
            Target::Mosquitto => args.port_base + 2,
            Target::Rumqttd => args.port_base + 3,
        },
        https_port: args.port_base + 1,
        device_key: String::new(),
        service_token: String::new(),
    };
    if target == Target::Ironhub {
        let devices = args.storm_devices.max(args.load.devices).max(args.idle);
        (setup.device_key, setup.service_token) = prepare_ironhub(
            &dir,
            &tls,
            devices,
            args.load.devices,
            args.c2d_messages,
            args.load.payload,
        )
        .await?;
    }
    let server = start(args, &setup, work, &dir, &tls, ports).await?;
    let load = async {
        let config = client_config(ca, false)?;
        results.add(
            CONNECTS,
            target.name(),
            storm(&setup, &config, args.storm_devices, args.storm_concurrency).await?,
        );
        results.add(
            FAN_IN,
            target.name(),
            fan_in(args.load, &setup, &config).await?,
        );
        results.add(C2D, target.name(), c2d(args, &setup, &config).await?);
        if target == Target::Ironhub {
            let id = device_id(0);
            let tls = connect(config.clone(), setup.mqtt_port, &id, setup.login(), 60).await?;
            let l = crate::latency::measure(
                config.clone(),
                setup.https_port,
                &setup.service_token,
                &id,
                tls,
                args.latency_samples,
                100,
            )
            .await?;
            results.add(METHOD_P50, target.name(), percentile_ms(&l.methods, 0.5));
            results.add(METHOD_P99, target.name(), percentile_ms(&l.methods, 0.99));
            results.add(DESIRED_P50, target.name(), percentile_ms(&l.desired, 0.5));
            results.add(DESIRED_P99, target.name(), percentile_ms(&l.desired, 0.99));
        }
        anyhow::Ok(())
    }
    .await;
    server.stop();
    load?;
    if args.idle == 0 {
        return Ok(());
    }
    let mut transports = vec![(IDLE, false)];
    if target == Target::Ironhub {
        transports.push((IDLE_WS, true));
    }
    for (measure, websocket) in transports {
        let server = start(args, &setup, work, &dir, &tls, ports).await?;
        let held = idle(args, &setup, ca, server.pid, websocket).await;
        server.stop();
        results.add(measure, target.name(), held?);
    }
    Ok(())
}

/// Starts `setup`'s server: ironhub on `dir` and `ports`, or a peer with the certificate of
/// `tls` on its own MQTT port.
async fn start(
    args: &Args,
    setup: &Setup,
    work: &Path,
    dir: &Path,
    tls: &Path,
    ports: Ports,
) -> anyhow::Result<Server> {
    let port = setup.mqtt_port;
    let (child, bin) = match setup.target {
        Target::Ironhub => return Server::ironhub(&args.ironhub, dir, work, ports).await,
        Target::Mosquitto => (
            peers::start_mosquitto(&args.mosquitto, work, tls, port)?,
            &args.mosquitto,
        ),
        Target::Rumqttd => (
            peers::start_rumqttd(&args.rumqttd, work, tls, port)?,
            &args.rumqttd,
        ),
    };
    Server::ready(child, setup.target.name(), bin, work, &[port]).await
}

/// Connects `devices` devices, `concurrency` at once, each a full TLS handshake; returns
/// connects per second. The connections are closed after the clock stops.
async fn storm(
    setup: &Setup,
    config: &Arc<rustls::ClientConfig>,
    devices: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let conns = connect_all(setup, config, 0..devices, concurrency).await?;
    let secs = started.elapsed().as_secs_f64();
    close_all(conns).await;
    #[allow(clippy::cast_precision_loss)]
    Ok(devices as f64 / secs)
}

/// Connects the devices of `range` (`concurrency` at once, keep-alive 5 minutes).
async fn connect_all(
    setup: &Setup,
    config: &Arc<rustls::ClientConfig>,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> anyhow::Result<Vec<Tls>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(range.len());
    for i in range {
        let (config, gate, login) = (config.clone(), gate.clone(), setup.login());
        let port = setup.mqtt_port;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            connect(config, port, &device_id(i), login, 300).await
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    for t in tasks {
        conns.push(t.await??);
    }
    Ok(conns)
}

/// Sends DISCONNECT on every connection and drops it.
async fn close_all(conns: Vec<Tls>) {
    let mut tasks = Vec::with_capacity(conns.len());
    for mut tls in conns {
        tasks.push(tokio::spawn(async move {
            let _ = write(&mut tls, Packet::Disconnect).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// QoS 1 telemetry from `load.devices` devices at once (connected, 64 at a time, before the
/// clock starts); returns messages per second.
pub(crate) async fn fan_in(
    load: FanIn,
    setup: &Setup,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<f64> {
    let conns = connect_all(setup, config, 0..load.devices, 64).await?;
    let payload = vec![b'x'; load.payload];
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(conns.len());
    for (i, tls) in conns.into_iter().enumerate() {
        let (payload, messages, inflight) = (payload.clone(), load.messages, load.inflight);
        tasks.push(tokio::spawn(async move {
            send_all(tls, i, messages, inflight, payload).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok((load.devices * load.messages) as f64 / started.elapsed().as_secs_f64())
}

/// The C2D topic a device subscribes to and the peers' publishers publish to.
fn c2d_topic(i: usize) -> String {
    format!("devices/{}/messages/devicebound/", device_id(i))
}

/// C2D to `args.load.devices` subscribed devices, `args.c2d_messages` each, every one acknowledged
/// by its device; returns messages delivered per second.
async fn c2d(
    args: &Args,
    setup: &Setup,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<f64> {
    let conns = connect_all(setup, config, 0..args.load.devices, 64).await?;
    let expected = args.c2d_messages;
    // Every device and the clock's start wait for all subscriptions to be sent.
    let barrier = Arc::new(Barrier::new(conns.len() + 1));
    let mut devices = Vec::with_capacity(conns.len());
    for (i, mut tls) in conns.into_iter().enumerate() {
        let barrier = barrier.clone();
        devices.push(tokio::spawn(async move {
            let mut s = Subscribe::new(format!("{}#", c2d_topic(i)), QoS::AtLeastOnce);
            s.pkid = 1;
            barrier.wait().await;
            write(&mut tls, Packet::Subscribe(s)).await?;
            let (mut buf, mut received) = (BytesMut::new(), 0);
            while received < expected {
                match read(&mut tls, &mut buf).await? {
                    Packet::Publish(p) => {
                        received += 1;
                        if p.qos == QoS::AtLeastOnce {
                            write(&mut tls, Packet::PubAck(PubAck::new(p.pkid))).await?;
                        }
                    }
                    Packet::SubAck(_) | Packet::PingResp => {}
                    other => bail!("unexpected packet: {other:?}"),
                }
            }
            write(&mut tls, Packet::Disconnect).await?;
            anyhow::Ok(())
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let publishers = if setup.target == Target::Ironhub {
        Vec::new()
    } else {
        // Publish once the subscriptions are surely in: the subscriptions were sent, and
        // a broker handles a connection's packets in order, so a SUBSCRIBE sent on each
        // device's connection is in before a later round trip on a new connection ends.
        publish_c2d(args, setup, config).await?
    };
    for d in devices {
        tokio::time::timeout(Duration::from_secs(120), d)
            .await
            .context("C2D delivery took over 2 minutes")???;
    }
    let secs = started.elapsed().as_secs_f64();
    for p in publishers {
        p.await??;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok((args.load.devices * expected) as f64 / secs)
}

/// The peers' C2D senders: four connections, each publishing QoS 1 to a quarter of the
/// devices with up to 100 messages unacknowledged.
async fn publish_c2d(
    args: &Args,
    setup: &Setup,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    const SENDERS: usize = 4;
    let mut senders = Vec::with_capacity(SENDERS);
    for s in 0..SENDERS {
        let mut tls = connect(
            config.clone(),
            setup.mqtt_port,
            &format!("c2d-sender-{s}"),
            Login::Anonymous,
            300,
        )
        .await?;
        // A round trip on this connection after the subscriptions were written.
        let mut p = Subscribe::new("bench/ready", QoS::AtMostOnce);
        p.pkid = 1;
        write(&mut tls, Packet::Subscribe(p)).await?;
        let mut buf = BytesMut::new();
        while !matches!(read(&mut tls, &mut buf).await?, Packet::SubAck(_)) {}
        senders.push(tls);
    }
    let mut tasks = Vec::with_capacity(SENDERS);
    for (s, mut tls) in senders.into_iter().enumerate() {
        let topics: Vec<String> = (s..args.load.devices)
            .step_by(SENDERS)
            .map(c2d_topic)
            .collect();
        let (messages, payload) = (args.c2d_messages, vec![b'c'; args.load.payload]);
        tasks.push(tokio::spawn(async move {
            let total = topics.len() * messages;
            let (mut sent, mut acked, mut buf) = (0usize, 0usize, BytesMut::new());
            while acked < total {
                while sent < total && sent - acked < 100 {
                    let topic = &topics[sent % topics.len()];
                    let mut p = Publish::new(topic.as_str(), QoS::AtLeastOnce, payload.clone());
                    p.pkid = u16::try_from(sent % 65_535 + 1).unwrap_or(1);
                    write(&mut tls, Packet::Publish(p)).await?;
                    sent += 1;
                }
                if let Packet::PubAck(_) = read(&mut tls, &mut buf).await? {
                    acked += 1;
                }
            }
            write(&mut tls, Packet::Disconnect).await
        }));
    }
    Ok(tasks)
}

/// Opens `args.idle` connections (CONNECT accepted on each) and holds them; returns the
/// server's resident memory grown per connection, in KiB.
async fn idle(
    args: &Args,
    setup: &Setup,
    ca: &Path,
    pid: u32,
    websocket: bool,
) -> anyhow::Result<f64> {
    let config = client_config(ca, false)?;
    let before = rss_kib(pid)?;
    let conns = if websocket {
        let gate = Arc::new(Semaphore::new(64));
        let mut tasks = Vec::with_capacity(args.idle);
        for i in 0..args.idle {
            let (config, gate, key) = (config.clone(), gate.clone(), setup.device_key.clone());
            let port = setup.https_port;
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await?;
                let id = device_id(i);
                crate::ws::connect(config, port, connect_packet(&id, Login::Sas(key), 300)?).await
            }));
        }
        let mut conns = Vec::with_capacity(args.idle);
        for t in tasks {
            conns.push(t.await??);
        }
        conns
    } else {
        connect_all(setup, &config, 0..args.idle, 64).await?
    };
    // What the server does after its CONNACK (presence, connection state) settles.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    drop(conns);
    #[allow(clippy::cast_precision_loss)]
    Ok(after.saturating_sub(before) as f64 / args.idle as f64)
}

#[allow(clippy::print_stdout)]
fn report(args: &Args, targets: &[Target], results: &Results) {
    println!(
        "rounds={} storm={}x{} fan-in={} devices x {} messages (inflight {}, {} B) \
         c2d={} x {} idle={}",
        args.rounds,
        args.storm_devices,
        args.storm_concurrency,
        args.load.devices,
        args.load.messages,
        args.load.inflight,
        args.load.payload,
        args.load.devices,
        args.c2d_messages,
        args.idle
    );
    let peers: Vec<Target> = targets
        .iter()
        .copied()
        .filter(|t| *t != Target::Ironhub)
        .collect();
    let mut head = String::from("| measure | ironhub: rounds (median) |");
    for p in &peers {
        head.push_str(&format!(" {}: rounds (median) |", p.name()));
    }
    for p in &peers {
        head.push_str(&format!(" ironhub / {}: median (rounds) |", p.name()));
    }
    println!("{head}");
    println!("|---|---|{}", "---|".repeat(peers.len() * 2));
    for measure in [
        CONNECTS,
        FAN_IN,
        C2D,
        IDLE,
        IDLE_WS,
        METHOD_P50,
        METHOD_P99,
        DESIRED_P50,
        DESIRED_P99,
    ] {
        let ours = results.values(measure, Target::Ironhub.name());
        if ours.is_empty() {
            continue;
        }
        let theirs: Vec<Vec<(usize, f64)>> = peers
            .iter()
            .map(|p| results.values(measure, p.name()))
            .collect();
        let mut row = format!("| {measure} | {} |", rounds_cell(&ours));
        for v in &theirs {
            row.push_str(&format!(" {} |", rounds_cell(v)));
        }
        for v in &theirs {
            row.push_str(&format!(" {} |", ratio_cell(&ours, v)));
        }
        println!("{row}");
    }
}
