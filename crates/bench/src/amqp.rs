//! `ironhub-bench amqp`: telemetry ingest over AMQP beside the same load over MQTT, and the
//! built-in endpoint read back as an Event Hubs client reads it, on one ironhub in one run,
//! several rounds (the `compare` mode's structure).
//!
//! Every round starts ironhub afresh on a new data directory, then, in an order that rotates
//! each round:
//! - MQTT: `compare`'s QoS 1 fan-in (every device connected with its SAS token, then each
//!   sends its messages with a window of unacknowledged ones; PUBACK once durable);
//! - AMQP: the same devices, messages and window over AMQP over TLS, each device on its own
//!   connection as the Node device SDK connects (SASL ANONYMOUS, CBS `put-token`, a sender
//!   link on `/devices/{id}/messages/events`), `inflight` transfers unsettled at most, each
//!   settled by the hub's `accepted` (sent once durable).
//!
//! Then every event of both (2 × devices × messages) is read back from the start, a reader a
//! partition, over AMQP (`{entity}/ConsumerGroups/$Default/Partitions/{p}`, link credit
//! `credit`) and through the REST NDJSON stream, in an order that rotates too. The clocks of
//! the ingests start once every device is connected; those of the reads once every reader is
//! connected and authenticated. A read that finds fewer events than were acknowledged fails
//! its round.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::sync::Semaphore;

use crate::compare::{FanIn, Setup, Target, fan_in};
use crate::events_read::{Endpoint, read_amqp, read_rest};
use crate::net::{HOST, client_config};
use crate::report::{Results, ratio_cell, rounds_cell};
use crate::server::{PARTITIONS, Ports, Server, certificates, prepare_ironhub};

/// `ironhub-bench amqp`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ironhub binary.
    #[arg(long, default_value = "target/release/ironhub")]
    ironhub: PathBuf,
    /// Rounds; each starts ironhub afresh.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[command(flatten)]
    load: FanIn,
    /// Link credit of each partition receiver (`azure-eventhub`'s default prefetch).
    #[arg(long, default_value_t = 300)]
    credit: u32,
    /// Leave out the read through the REST NDJSON stream.
    #[arg(long)]
    no_rest: bool,
    /// Loopback port base: ironhub's MQTT, HTTPS and AMQP are base to base+2.
    #[arg(long, default_value_t = 28883)]
    port_base: u16,
    /// The loopback address ironhub listens on and the devices connect to.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
}

const MQTT: &str = "MQTT QoS 1 ingest, messages/s";
const AMQP: &str = "AMQP ingest, messages/s";
const READ_AMQP: &str = "Event Hubs read over AMQP, events/s";
const READ_REST: &str = "REST NDJSON stream read, events/s";
/// The one column: every figure is ironhub's.
const IRONHUB: &str = "ironhub";

#[allow(clippy::print_stdout)]
pub async fn main(args: Args) -> anyhow::Result<()> {
    crate::net::set_address(args.address);
    let mut results = Results::start();
    let work = tempfile::tempdir()?;
    let ca = certificates(work.path())?;
    for round in 0..args.rounds {
        results.round = round;
        println!("round {} of {}", round + 1, args.rounds);
        // A failed round is reported and the others still run.
        if let Err(e) = measure(&args, round, work.path(), &ca, &mut results)
            .await
            .with_context(|| format!("round {}", round + 1))
        {
            results.failed(&e);
        }
    }
    report(&args, &results);
    results.finish("rounds")
}

/// One round: a fresh ironhub, both ingests, both reads.
async fn measure(
    args: &Args,
    round: usize,
    work: &Path,
    ca: &Path,
    results: &mut Results,
) -> anyhow::Result<()> {
    let dir = work.join(format!("ironhub-{round}"));
    let ports = Ports {
        mqtt: args.port_base,
        https: args.port_base + 1,
        amqp: Some(args.port_base + 2),
    };
    let (device_key, service_token) = prepare_ironhub(
        &dir,
        &work.join("tls"),
        args.load.devices,
        0,
        0,
        args.load.payload,
    )
    .await?;
    let server = Server::ironhub(&args.ironhub, &dir, work, ports).await?;
    let load = async {
        let config = client_config(ca, false)?;
        let mut ingests = [MQTT, AMQP];
        ingests.rotate_left(round % 2);
        for measure in ingests {
            let rate = if measure == MQTT {
                let setup = Setup {
                    target: Target::Ironhub,
                    mqtt_port: ports.mqtt,
                    https_port: ports.https,
                    device_key: device_key.clone(),
                    service_token: service_token.clone(),
                };
                fan_in(args.load, &setup, &config).await?
            } else {
                amqp_fan_in(args, &config, ports.amqp.unwrap_or_default(), &device_key).await?
            };
            results.add(measure, IRONHUB, rate);
        }
        let expected = 2 * args.load.devices * args.load.messages;
        let endpoint = |port| Endpoint {
            config: config.clone(),
            port,
            entity: ironhub_hub::events::event_hub_name(HOST).to_owned(),
            partitions: PARTITIONS,
            token: service_token.clone(),
        };
        let mut reads = vec![READ_AMQP];
        if !args.no_rest {
            reads.push(READ_REST);
            reads.rotate_left(round % 2);
        }
        for measure in reads {
            let rate = if measure == READ_AMQP {
                read_amqp(
                    &endpoint(ports.amqp.unwrap_or_default()),
                    expected,
                    args.credit,
                )
                .await
            } else {
                read_rest(&endpoint(ports.https), expected).await
            };
            results.add(measure, IRONHUB, rate.context(measure)?);
        }
        anyhow::Ok(())
    }
    .await;
    server.stop();
    load
}

/// The fan-in over AMQP: every device connected (64 at once) before the clock starts, then
/// all sending at once; the connections are closed after it stops. Returns messages per
/// second.
async fn amqp_fan_in(
    args: &Args,
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    key: &str,
) -> anyhow::Result<f64> {
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(args.load.devices);
    for i in 0..args.load.devices {
        let (config, gate, key) = (config.clone(), gate.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            crate::amqp_device::connect(config, port, i, &key).await
        }));
    }
    let mut devices = Vec::with_capacity(args.load.devices);
    for t in tasks {
        devices.push(t.await??);
    }
    let payload: Arc<[u8]> = vec![b'x'; args.load.payload].into();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(devices.len());
    for mut device in devices {
        let (payload, messages, inflight) =
            (payload.clone(), args.load.messages, args.load.inflight);
        tasks.push(tokio::spawn(async move {
            device.send_all(messages, inflight, &payload).await?;
            anyhow::Ok(device)
        }));
    }
    let mut devices = Vec::with_capacity(tasks.len());
    for t in tasks {
        devices.push(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    let closing: Vec<_> = devices
        .into_iter()
        .map(|d| tokio::spawn(d.close()))
        .collect();
    for c in closing {
        let _ = c.await;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok((args.load.devices * args.load.messages) as f64 / secs)
}

#[allow(clippy::print_stdout)]
fn report(args: &Args, results: &Results) {
    println!(
        "rounds={} ingest={} devices x {} messages over each transport (inflight {}, {} B) \
         read={} partitions from the start (AMQP link credit {})",
        args.rounds,
        args.load.devices,
        args.load.messages,
        args.load.inflight,
        args.load.payload,
        PARTITIONS,
        args.credit
    );
    println!(
        "| measure | ironhub: rounds (median) | / MQTT ingest: median (rounds) | \
         / AMQP ingest: median (rounds) |"
    );
    println!("|---|---|---|---|");
    let rows = [MQTT, AMQP, READ_AMQP, READ_REST];
    for (i, measure) in rows.into_iter().enumerate() {
        let values = results.values(measure, IRONHUB);
        if values.is_empty() {
            continue;
        }
        let mut row = format!("| {measure} | {} |", rounds_cell(&values));
        // Each row beside the ingests above it.
        for (j, base) in [MQTT, AMQP].into_iter().enumerate() {
            let cell = if j < i {
                ratio_cell(&values, &results.values(base, IRONHUB))
            } else {
                "–".into()
            };
            row.push_str(&format!(" {cell} |"));
        }
        println!("{row}");
    }
}
