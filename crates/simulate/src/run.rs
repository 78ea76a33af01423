//! A run from start to report: the registry prepared, devices started at the connect rate,
//! the event stream read back until it holds what was acknowledged, the report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ironhub_auth::generate_key;
use ironhub_client::HubClient;
use ironhub_wire::hub::{AuthenticationSpec, ExportImportDevice, SymmetricKeySpec};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{Config, Fleet, MQTT_PORT};
use crate::device::{Device, Login};
use crate::events;
use crate::net::Dialer;
use crate::phase::Phase;
use crate::progress::{self, Progress};
use crate::stats::{self, Latency, Report, Stats, bump, get};

/// Registry requests made at once while devices are created or read.
const REGISTRY_CONCURRENCY: usize = 16;
/// How long devices stay once they have all stopped sending, at most, while the event stream
/// catches up.
const LEAVE_WAIT: Duration = Duration::from_secs(10);

/// Devices in one bulk registry request (IoT Hub's limit for `POST /devices`).
const BULK_DEVICES: usize = 100;

/// Reads (or, with `create`, first creates) the fleet's devices in the registry and returns
/// their `(id, primary key)` in order. Creation is in bulk requests of [`BULK_DEVICES`] with
/// keys generated here, so a large fleet costs one request per hundred devices; a device that
/// exists already is read, not recreated. At most [`REGISTRY_CONCURRENCY`] requests are in
/// flight (and as many tasks alive), however large the fleet.
pub async fn prepare_devices(
    client: &HubClient,
    config: &Config,
    create: bool,
    stats: &Stats,
) -> anyhow::Result<Vec<(String, String)>> {
    let ids: Vec<String> = (0..config.device_count)
        .map(|i| config.device_id(i))
        .collect();
    let mut keys: Vec<Option<String>> = vec![None; ids.len()];
    if create {
        let mut tasks = JoinSet::new();
        for (chunk, range) in (0..ids.len())
            .step_by(BULK_DEVICES)
            .map(|start| start..(start + BULK_DEVICES).min(ids.len()))
            .enumerate()
        {
            if tasks.len() >= REGISTRY_CONCURRENCY / 4 {
                collect_created(&mut tasks, &mut keys, stats).await?;
            }
            let (client, batch) = (client.clone(), ids[range.clone()].to_vec());
            tasks.spawn(async move {
                let created = create_batch(&client, &batch).await?;
                anyhow::Ok((chunk * BULK_DEVICES, created))
            });
        }
        while !tasks.is_empty() {
            collect_created(&mut tasks, &mut keys, stats).await?;
        }
    }
    let unknown: Vec<usize> = (0..ids.len()).filter(|i| keys[*i].is_none()).collect();
    let mut tasks = JoinSet::new();
    for i in unknown {
        if tasks.len() >= REGISTRY_CONCURRENCY {
            read_one(&mut tasks, &mut keys).await?;
        }
        let (client, id) = (client.clone(), ids[i].clone());
        tasks.spawn(async move {
            let device = client.get_device(&id).await?;
            let key = device
                .authentication
                .symmetric_key
                .primary_key
                .filter(|k| !k.is_empty())
                .with_context(|| {
                    format!("device {id} has no symmetric key (SAS authentication)")
                })?;
            anyhow::Ok((i, key))
        });
    }
    while !tasks.is_empty() {
        read_one(&mut tasks, &mut keys).await?;
    }
    Ok(ids
        .into_iter()
        .zip(keys)
        .map(|(id, key)| (id, key.unwrap_or_default()))
        .collect())
}

/// Creates `ids` in one bulk request with keys generated here: the primary key of each one
/// created, `None` for each that existed already (to be read).
async fn create_batch(client: &HubClient, ids: &[String]) -> anyhow::Result<Vec<Option<String>>> {
    let entries: Vec<ExportImportDevice> = ids
        .iter()
        .map(|id| ExportImportDevice {
            id: Some(id.clone()),
            import_mode: Some("create".into()),
            authentication: Some(AuthenticationSpec {
                kind: Some("sas".into()),
                symmetric_key: Some(SymmetricKeySpec {
                    primary_key: Some(generate_key(32)),
                    secondary_key: Some(generate_key(32)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let result = client.bulk(&entries).await?;
    let mut created: Vec<Option<String>> = entries
        .into_iter()
        .map(|e| e.authentication.and_then(|a| a.symmetric_key?.primary_key))
        .collect();
    for error in &result.errors {
        let Some(i) = ids.iter().position(|id| *id == error.device_id) else {
            anyhow::bail!("the registry reported an error for a device not asked for: {error:?}");
        };
        if error.error_code != "DeviceAlreadyExists" {
            anyhow::bail!("creating device {} failed: {error:?}", error.device_id);
        }
        created[i] = None;
    }
    Ok(created)
}

/// A bulk creation's answer: the index of its first device and each device's key, when created.
type Created = anyhow::Result<(usize, Vec<Option<String>>)>;

/// Waits for one bulk creation and records its keys.
async fn collect_created(
    tasks: &mut JoinSet<Created>,
    keys: &mut [Option<String>],
    stats: &Stats,
) -> anyhow::Result<()> {
    let Some(done) = tasks.join_next().await else {
        return Ok(());
    };
    let (first, created) = done.context("a registry task failed")??;
    for (offset, key) in created.into_iter().enumerate() {
        if key.is_some() {
            bump(&stats.created);
        }
        keys[first + offset] = key;
    }
    Ok(())
}

/// Waits for one device read and records its key.
async fn read_one(
    tasks: &mut JoinSet<anyhow::Result<(usize, String)>>,
    keys: &mut [Option<String>],
) -> anyhow::Result<()> {
    if let Some(done) = tasks.join_next().await {
        let (i, key) = done.context("a registry task failed")??;
        keys[i] = Some(key);
    }
    Ok(())
}

/// Runs the simulation to its end and reports. `events`, when given, reads the run's messages
/// back from the hub's event stream.
pub async fn run(
    mut config: Config,
    fleet: Fleet,
    dialer: Dialer,
    events: Option<HubClient>,
    progress: Progress,
    stats: Arc<Stats>,
) -> anyhow::Result<Report> {
    let phase = Arc::new(Phase::default());
    let (stop_tx, stop) = watch::channel(false);
    let started = Instant::now();
    let show = tokio::spawn(progress::show(
        progress,
        stats.clone(),
        config.device_count,
        started,
        stop.clone(),
    ));
    let reader = events.map(|client| {
        let from = chrono::Utc::now() - chrono::Duration::seconds(1);
        tokio::spawn(events::read(
            client,
            config.run_id.clone(),
            from,
            stats.clone(),
            stop.clone(),
        ))
    });
    config.deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
    let config = Arc::new(config);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let (leave_tx, leave) = watch::channel(false);
    let mut devices = JoinSet::new();
    let t0 = tokio::time::Instant::now();
    // Shared, not cloned a device: the fleet holds every device's key, so a copy for each of
    // N devices grew as N² (620 MiB resident at 2,000 devices instead of 60 MiB; 21 GB at 60,000).
    let fleet = Arc::new(fleet);
    for i in 0..config.device_count {
        let (config, fleet, dialer, stats, phase) = (
            config.clone(),
            fleet.clone(),
            dialer.clone(),
            stats.clone(),
            phase.clone(),
        );
        let (done_tx, leave) = (done_tx.clone(), leave.clone());
        devices.spawn(async move {
            if config.connect_rate > 0.0 {
                tokio::time::sleep_until(
                    t0 + Duration::from_secs_f64(i as f64 / config.connect_rate),
                )
                .await;
            }
            let permit = phase.admit().await;
            let device = match ready(&config, &fleet, &dialer, &stats, i).await {
                Ok(device) => device,
                Err((kind, e)) => {
                    stats.error_because(kind, &e);
                    let _ = done_tx.send(());
                    return;
                }
            };
            drop(permit);
            let dialer = match &device.login {
                Login::Hub { host, .. } => match dialer.for_host(host) {
                    Ok(d) => d,
                    Err(e) => {
                        stats.error_because("connect", &e);
                        let _ = done_tx.send(());
                        return;
                    }
                },
                Login::Anonymous => dialer,
            };
            device
                .run(config, dialer, stats, phase, done_tx, leave)
                .await;
        });
    }
    drop(done_tx);
    // Every device has stopped sending (or failed) once each has said so.
    let mut finished = 0;
    while finished < config.device_count && done.recv().await.is_some() {
        finished += 1;
    }
    let sending_seconds = started.elapsed().as_secs_f64();
    if reader.is_some() {
        // Give the event stream the time to deliver what was acknowledged (or sent, at QoS 0).
        let until = Instant::now() + LEAVE_WAIT;
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            let expected = if config.qos1 {
                get(&stats.acknowledged)
            } else {
                get(&stats.sent)
            };
            if get(&stats.in_stream) >= expected || Instant::now() >= until {
                break;
            }
            poll.tick().await;
        }
    }
    let _ = leave_tx.send(true);
    while devices.join_next().await.is_some() {}
    let _ = stop_tx.send(true);
    if let Some(reader) = reader {
        let _ = reader.await;
    }
    let _ = show.await;
    Ok(report(
        &config,
        &stats,
        &phase,
        sending_seconds,
        events_read(&config, &fleet),
    ))
}

/// Whether the run's messages are read back (only IoT Hub devices' messages carry ids).
fn events_read(config: &Config, fleet: &Fleet) -> bool {
    !config.plain_mqtt && !matches!(fleet, Fleet::Mqtt { .. })
}

/// Provisions device `i` when it must, and says where it connects.
async fn ready(
    config: &Config,
    fleet: &Fleet,
    dialer: &Dialer,
    stats: &Stats,
    i: usize,
) -> Result<Device, (&'static str, anyhow::Error)> {
    Ok(match fleet {
        Fleet::Hub {
            host,
            address,
            keys,
        } => {
            let (id, key) = keys
                .get(i)
                .cloned()
                .ok_or_else(|| ("prepare", anyhow::anyhow!("no key for device {i}")))?;
            Device {
                index: i,
                id,
                address: *address,
                login: Login::Hub {
                    host: host.clone(),
                    key,
                },
            }
        }
        Fleet::Dps(dps) => {
            let registration_id = config.device_id(i);
            let assignment = dps
                .provision(
                    &dialer.for_host(&dps.host).map_err(|e| ("provision", e))?,
                    i,
                    &registration_id,
                )
                .await
                .map_err(|e| ("provision", e))?;
            bump(&stats.provisioned);
            let host = ironhub_client::host_without_port(&assignment.hub).to_owned();
            let address = tokio::net::lookup_host((host.as_str(), MQTT_PORT))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    (
                        "provision",
                        anyhow::anyhow!("cannot resolve the assigned hub {host}"),
                    )
                })?;
            Device {
                index: i,
                id: assignment.device_id,
                address,
                login: Login::Hub {
                    host,
                    key: assignment.key,
                },
            }
        }
        Fleet::Mqtt { address } => Device {
            index: i,
            id: config.device_id(i),
            address: *address,
            login: Login::Anonymous,
        },
    })
}

fn report(
    config: &Config,
    stats: &Stats,
    phase: &Phase,
    seconds: f64,
    read_events: bool,
) -> Report {
    let connected = get(&stats.connected);
    let connect_seconds = phase.connect_seconds();
    let sent = get(&stats.sent);
    Report {
        mode: if config.plain_mqtt { "mqtt" } else { "iothub" },
        devices: stats::DeviceCounts {
            requested: config.device_count as u64,
            created: get(&stats.created),
            provisioned: get(&stats.provisioned),
            connected,
        },
        duration_seconds: seconds,
        connects_per_second: if connect_seconds > 0.0 {
            connected as f64 / connect_seconds
        } else {
            0.0
        },
        messages: stats::MessageCounts {
            sent,
            acknowledged: get(&stats.acknowledged),
            in_event_stream: read_events.then(|| get(&stats.in_stream)),
            per_second: if seconds > 0.0 {
                sent as f64 / seconds
            } else {
                0.0
            },
        },
        twin: stats::TwinCounts {
            sent: get(&stats.twin_sent),
            accepted: get(&stats.twin_accepted),
        },
        c2d: stats::C2dCounts {
            received: get(&stats.c2d_received),
            completed: get(&stats.c2d_completed),
        },
        methods: stats::MethodCounts {
            received: get(&stats.methods_received),
            answered: get(&stats.methods_answered),
        },
        latency_ms: stats::Latencies {
            connect: stats.percentiles(Latency::Connect),
            publish_to_puback: stats.percentiles(Latency::Puback),
            publish_to_event_stream: stats.percentiles(Latency::Stream),
        },
        errors: stats.errors(),
        first_errors: stats.first_errors(),
    }
}
