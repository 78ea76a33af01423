//! `ironhub-bench query`: twin queries at fleet size. Generates a fleet of devices with
//! twins in the embedded store (or reuses one in `--data-dir`), then times queries through
//! the hub's domain (`Hub::query_twins`, what `POST /devices/query` calls): selective ones
//! (the first time, which builds the store's index on the queried property, and again),
//! groups and `ORDER BY … TOP` (computed by the store, and once in the hub for comparison),
//! and a full scan paged to the end, with the process's peak memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use ironhub_embedded::{LocalBus, SqliteEventLog, SqliteStore};
use ironhub_hub::{Backends, Hub};
use ironhub_store::prelude::*;
use ironhub_store::{Authentication, ConnectionState, DeviceRecord, DeviceStatus, TwinRecord};
use serde_json::{Map, Value, json};

/// `ironhub-bench query`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 1_000_000)]
    devices: usize,
    /// Where the fleet's store lives; a fleet already there (as many devices) is reused.
    /// [default: a temporary directory]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// One device in this many reports `powerState` '0' (the others '1').
    #[arg(long, default_value_t = 1000)]
    zero_every: usize,
    /// Devices written per transaction while generating.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Runs only the queries whose name or text contains one of these (repeatable; all
    /// queries when absent).
    #[arg(long)]
    only: Vec<String>,
}

fn device(i: usize) -> DeviceRecord {
    device_record(format!("dev-{i:07}"), i, Authentication::default())
}

/// An enabled, disconnected device `device_id` with `authentication`, as a generated fleet
/// holds it.
pub(crate) fn device_record(
    device_id: String,
    n: usize,
    authentication: Authentication,
) -> DeviceRecord {
    DeviceRecord {
        device_id,
        generation_id: format!("{n}"),
        etag: String::new(),
        status: DeviceStatus::Enabled,
        status_reason: None,
        status_updated_time: None,
        connection_state: ConnectionState::Disconnected,
        connection_node: None,
        connection_state_updated_time: None,
        last_activity_time: None,
        cloud_to_device_message_count: 0,
        authentication,
        iot_edge: false,
        device_scope: None,
        parent_scopes: vec![],
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn twin(i: usize, zero_every: usize) -> TwinRecord {
    let state = if i.is_multiple_of(zero_every) {
        "0"
    } else {
        "1"
    };
    TwinRecord {
        device_id: format!("dev-{i:07}"),
        version: 2,
        tags: object(json!({"site": format!("site-{}", i % 100), "floor": i % 10})),
        desired: object(json!({"interval": 30})),
        desired_version: 2,
        reported: object(json!({
            "powerState": state,
            "temperature": (i % 500) as f64 / 10.0,
            "firmware": format!("1.{}", i % 7),
        })),
        reported_version: 2,
        ..TwinRecord::default()
    }
}

/// The process's peak resident memory so far, in MiB (Linux's `VmHWM`).
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// How much of a query's answer to read, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    FirstPage,
    AllPages,
    /// Every page, without handing groups or order to the store (`Hub::query_twins_scanned`).
    AllPagesScanned,
}

/// Runs a query to its end (or its first page only): items, pages, seconds.
async fn timed(hub: &Hub, text: &str, read: Read) -> anyhow::Result<(usize, usize, f64)> {
    let start = Instant::now();
    let mut token: Option<String> = None;
    let (mut items, mut pages) = (0, 0);
    loop {
        let page = if read == Read::AllPagesScanned {
            hub.query_twins_scanned(text, token.as_deref(), Some(1000))
                .await
        } else {
            hub.query_twins(text, token.as_deref(), Some(1000)).await
        }
        .with_context(|| format!("query {text}"))?;
        items += page.items.len();
        pages += 1;
        match page.continuation {
            Some(t) if read != Read::FirstPage => token = Some(t),
            _ => break,
        }
    }
    Ok((items, pages, start.elapsed().as_secs_f64()))
}

#[allow(clippy::print_stdout)]
pub async fn main(args: Args) -> anyhow::Result<()> {
    let temp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let store = Arc::new(SqliteStore::open(&dir)?);
    let have = store.device_counts().await?.total;
    let zero_every = args.zero_every.max(1);
    if have as usize != args.devices {
        anyhow::ensure!(
            have == 0,
            "{} holds {have} devices, not {}",
            dir.display(),
            args.devices
        );
        let start = Instant::now();
        let mut i = 0;
        while i < args.devices {
            let end = (i + args.batch.max(1)).min(args.devices);
            let fleet = (i..end).map(|n| (device(n), twin(n, zero_every))).collect();
            store.load_fleet(fleet).await?;
            i = end;
        }
        println!(
            "generated {} devices with twins in {:.1} s ({:.0} devices/s)",
            args.devices,
            start.elapsed().as_secs_f64(),
            args.devices as f64 / start.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(store.path()).map_or(0, |m| m.len());
    println!(
        "store: {} ({:.0} MiB)",
        store.path().display(),
        size as f64 / 1048576.0
    );
    let backends = Backends {
        store: store.clone(),
        events: Arc::new(SqliteEventLog::open(&dir, 4)?),
        bus: Arc::new(LocalBus::new()),
    };
    let hub = Hub::open(backends, vec!["bench.ironhub".into()]).await?;
    const GROUP_FLOORS: &str =
        "SELECT tags.floor AS floor, COUNT() AS n FROM devices GROUP BY tags.floor";
    const GROUP_POWER: &str = "SELECT properties.reported.powerState AS powerState, COUNT() AS n FROM devices GROUP BY properties.reported.powerState";
    const TOP_HOTTEST: &str =
        "SELECT TOP 10 * FROM devices ORDER BY properties.reported.temperature DESC";
    const GROUP_AVG: &str = "SELECT tags.floor AS floor, AVG(properties.reported.temperature) AS t FROM devices GROUP BY tags.floor";
    const SELECTIVE: &str = "SELECT * FROM devices WHERE properties.reported.powerState = '0'";
    const SITE_RANGE: &str = "SELECT deviceId FROM devices WHERE tags.site = 'site-7' AND properties.reported.temperature > 40";
    let queries: &[(&str, &str, Read)] = &[
        (
            "selective, first time (builds the index)",
            SELECTIVE,
            Read::FirstPage,
        ),
        ("selective, again", SELECTIVE, Read::FirstPage),
        ("selective, every page", SELECTIVE, Read::AllPages),
        (
            "selective on a tag and a range, first time (two indexes)",
            SITE_RANGE,
            Read::AllPages,
        ),
        ("the same, again", SITE_RANGE, Read::AllPages),
        (
            "count of the selective set",
            "SELECT COUNT() AS n FROM devices WHERE properties.reported.powerState = '0'",
            Read::AllPages,
        ),
        (
            "count of the broad set (the index the count above built)",
            "SELECT COUNT() AS n FROM devices WHERE properties.reported.powerState = '1'",
            Read::AllPages,
        ),
        (
            "one device by id",
            "SELECT * FROM devices WHERE deviceId = 'dev-0123456'",
            Read::AllPages,
        ),
        (
            "first page of everything",
            "SELECT * FROM devices",
            Read::FirstPage,
        ),
        (
            "group by, first time (builds the index)",
            GROUP_FLOORS,
            Read::AllPages,
        ),
        ("group by, again", GROUP_FLOORS, Read::AllPages),
        (
            "group by, in the hub (reads every twin)",
            GROUP_FLOORS,
            Read::AllPagesScanned,
        ),
        (
            "group by powerState, first time (builds the index)",
            GROUP_POWER,
            Read::AllPages,
        ),
        ("group by powerState, again", GROUP_POWER, Read::AllPages),
        (
            "group by with a selective where",
            "SELECT tags.floor AS floor, COUNT() AS n FROM devices WHERE properties.reported.powerState = '0' GROUP BY tags.floor",
            Read::AllPages,
        ),
        (
            "group by with a broad where (the index the selective one built)",
            "SELECT tags.floor AS floor, COUNT() AS n FROM devices WHERE properties.reported.powerState = '1' GROUP BY tags.floor",
            Read::AllPages,
        ),
        (
            "group by with an average, first time (builds the covering index)",
            GROUP_AVG,
            Read::AllPages,
        ),
        ("group by with an average, again", GROUP_AVG, Read::AllPages),
        (
            "group by with sum, min and max (the same covering index)",
            "SELECT tags.floor AS floor, SUM(properties.reported.temperature) AS s, MIN(properties.reported.temperature) AS lo, MAX(properties.reported.temperature) AS hi FROM devices GROUP BY tags.floor",
            Read::AllPages,
        ),
        (
            "group by with an average and a selective where",
            "SELECT tags.floor AS floor, AVG(properties.reported.temperature) AS t FROM devices WHERE properties.reported.powerState = '0' GROUP BY tags.floor",
            Read::AllPages,
        ),
        (
            "group by with an average and a broad where (the same index)",
            "SELECT tags.floor AS floor, AVG(properties.reported.temperature) AS t FROM devices WHERE properties.reported.powerState = '1' GROUP BY tags.floor",
            Read::AllPages,
        ),
        (
            "count where a number equals (the first time builds the index)",
            "SELECT COUNT() AS n FROM devices WHERE tags.floor = 3",
            Read::AllPages,
        ),
        (
            "count where a range holds for most of the fleet (the ordering index's shape)",
            "SELECT COUNT() AS n FROM devices WHERE properties.reported.temperature >= 10",
            Read::AllPages,
        ),
        (
            "count where a narrow range holds (the same index)",
            "SELECT COUNT() AS n FROM devices WHERE properties.reported.temperature > 49.8",
            Read::AllPages,
        ),
        (
            "group by with a count and a range",
            "SELECT tags.floor AS floor, COUNT() AS n FROM devices WHERE properties.reported.temperature < 40 GROUP BY tags.floor",
            Read::AllPages,
        ),
        (
            "group by with an average and a range",
            "SELECT tags.floor AS floor, AVG(properties.reported.temperature) AS t FROM devices WHERE properties.reported.temperature >= 10 GROUP BY tags.floor",
            Read::AllPages,
        ),
        (
            "group by with a count and IN of mixed values",
            "SELECT properties.reported.powerState AS powerState, COUNT() AS n FROM devices WHERE tags.floor IN [1, 2, '3', 4.0] GROUP BY properties.reported.powerState",
            Read::AllPages,
        ),
        (
            "min and max where a number and a string equal",
            "SELECT MIN(properties.reported.temperature) AS lo, MAX(properties.reported.temperature) AS hi FROM devices WHERE tags.floor = 1.0 AND properties.reported.powerState = '1'",
            Read::AllPages,
        ),
        (
            "order by with top, first time (builds the index)",
            TOP_HOTTEST,
            Read::AllPages,
        ),
        ("order by with top, again", TOP_HOTTEST, Read::AllPages),
        (
            "full scan, every page",
            "SELECT * FROM devices",
            Read::AllPages,
        ),
    ];
    println!("| query | items | pages | seconds | peak MiB after |");
    println!("|---|---|---|---|---|");
    for (name, text, read) in queries {
        let picked = |o: &String| name.contains(o.as_str()) || text.contains(o.as_str());
        if !args.only.is_empty() && !args.only.iter().any(picked) {
            continue;
        }
        let (items, pages, seconds) = timed(&hub, text, *read).await?;
        println!(
            "| {name}: `{text}` | {items} | {pages} | {seconds:.3} | {:.0} |",
            peak_mib()
        );
    }
    Ok(())
}
