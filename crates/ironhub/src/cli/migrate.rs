//! `ironhub migrate`: brings a cluster's PostgreSQL schema up to date without starting a
//! server, as an operator does before rolling out nodes of a new version (`serve --store`
//! applies what is missing at start too; both take the same advisory lock, so they never
//! migrate twice). With `--from DATA_DIR` it then moves a stopped embedded hub into the
//! cluster (see `crate::hub_move` for what is copied and what changes).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use ironhub_embedded::{SqliteEventLog, SqliteEventStreams, SqliteStore};
use ironhub_store::{RegistryStore as _, Retention};

use crate::hub_move::{self, Logs, Tally};

/// `ironhub migrate`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The cluster's shared store: the `postgres://` URL `serve --store` takes (`--to` is the
    /// same flag).
    #[arg(
        long = "store",
        visible_alias = "to",
        env = "IRONHUB_STORE",
        hide_env_values = true
    )]
    pub store: String,
    /// Only report what is missing; apply nothing, and fail when the schema is not current.
    #[arg(long, conflicts_with = "from")]
    pub check: bool,
    /// Move the hub of this data directory (its server stopped) into the empty cluster:
    /// devices, twins, modules, enrollments, certificates, queued cloud-to-device messages,
    /// telemetry (with --nats), …, then count each kind in the target.
    #[arg(long, value_name = "DATA_DIR")]
    pub from: Option<PathBuf>,
    /// The hub's host name, which names its streams on NATS [default: the one the hub last
    /// served under]; give the nodes the same `--hostname`.
    #[arg(long, requires = "from")]
    pub hostname: Option<String>,
    /// Complete a move that failed midway: copy into the target that run left (it must hold
    /// the same hub), skipping what it holds already, instead of requiring an empty one.
    #[arg(long, requires = "from")]
    pub resume: bool,
    #[command(flatten)]
    pub nats: crate::nats::NatsArgs,
}

/// Runs `ironhub migrate`.
#[allow(clippy::print_stdout)]
pub async fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    let Some(options) = crate::config::store_url(Some(args.store.clone()))? else {
        anyhow::bail!("--store takes a postgres:// (or postgresql://) URL");
    };
    // Only a move uses NATS (a node's IRONHUB_NATS in the environment is no error without one).
    let nats = args
        .nats
        .clone()
        .resolve(crate::nats::NatsFile::default())?;
    // Before anything is written: a running server keeps the hub to move.
    let source = match &args.from {
        Some(dir) => Some(open_source(dir)?),
        None => None,
    };
    let pool = ironhub_postgres::connect(&options).await?;
    let newest = ironhub_postgres::MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if args.check {
        let applied = ironhub_postgres::applied_versions(&pool).await?;
        let pending = ironhub_postgres::pending(&applied)?;
        if pending.is_empty() {
            println!("the schema is current (version {newest})");
            return Ok(());
        }
        anyhow::bail!(
            "the schema lacks migration(s) {} (run `ironhub migrate` without --check)",
            versions(&pending)
        );
    }
    let applied = ironhub_postgres::migrate(&pool).await?;
    if applied.is_empty() {
        println!("the schema is current (version {newest}); nothing to apply");
    } else {
        println!(
            "applied migration(s) {}; the schema is at version {newest}",
            versions(&applied)
        );
    }
    let Some(source) = source else {
        return Ok(());
    };
    let mode = if args.resume {
        hub_move::Mode::Resume
    } else {
        hub_move::Mode::Fresh
    };
    move_hub(
        source,
        &options,
        nats.as_ref(),
        args.hostname.as_deref(),
        mode,
    )
    .await
}

/// The hub of a stopped server's data directory, locked for as long as it is held.
struct Source {
    dir: PathBuf,
    store: Arc<SqliteStore>,
    logs: Logs,
    _lock: crate::data_lock::DataDirLock,
}

/// Opens the data directory's hub, refusing while a server holds it.
fn open_source(dir: &std::path::Path) -> anyhow::Result<Source> {
    anyhow::ensure!(
        dir.join("ironhub.db").is_file(),
        "no ironhub data in {}: --from takes the --data-dir of the server whose hub moves",
        dir.display()
    );
    let lock = crate::data_lock::DataDirLock::acquire(dir)
        .context("stop the server before moving its hub")?;
    let store = Arc::new(SqliteStore::open_existing(dir)?);
    // An existing log keeps the partition count it was created with.
    let events = Arc::new(SqliteEventLog::open(dir, 1)?);
    let streams = Arc::new(SqliteEventStreams::open(&dir.join("streams"))?);
    Ok(Source {
        dir: dir.to_owned(),
        store,
        logs: Logs { events, streams },
        _lock: lock,
    })
}

/// Copies `source` into the cluster of `options` (and `nats`), prints every kind's counts and
/// fails when any disagree.
#[allow(clippy::print_stdout)]
async fn move_hub(
    source: Source,
    options: &ironhub_postgres::PgOptions,
    nats: Option<&ironhub_nats::NatsOptions>,
    hostname: Option<&str>,
    mode: hub_move::Mode,
) -> anyhow::Result<()> {
    let pg = ironhub_postgres::PgStore::open(options)
        .await
        .context("cannot open the --to database")?;
    let target_logs = match nats {
        Some(nats) => {
            let hostnames = match hostname {
                Some(h) => vec![h.to_owned()],
                None => source
                    .store
                    .endpoint()
                    .await?
                    .map(|e| e.host_names)
                    .unwrap_or_default(),
            };
            let partitions = source.logs.events.partition_count();
            let (_, _, events, streams) =
                crate::nats::open_log(nats, &hostnames, partitions, Retention::default()).await?;
            Some(Logs {
                events: Arc::new(events),
                streams: Arc::new(streams),
            })
        }
        None => None,
    };
    match mode {
        hub_move::Mode::Fresh => hub_move::ensure_empty(&pg, target_logs.as_ref()).await?,
        hub_move::Mode::Resume => hub_move::ensure_same_hub(&*source.store, &pg).await?,
    }
    println!("moving the hub of {} …", source.dir.display());
    let tallies = hub_move::copy(
        &*source.store,
        &source.logs,
        &pg,
        target_logs.as_ref(),
        mode,
    )
    .await?;
    let tls = crate::cluster::import_tls_identity(&pg, &source.dir.join("tls")).await?;
    print!("{}", report(&tallies));
    if tls {
        println!("the hub's CA (and issuing CA) is the cluster's: nodes take it at start");
    }
    if target_logs.is_none() {
        println!("telemetry was not copied: give --nats to copy it");
    }
    let wrong: Vec<&str> = tallies
        .iter()
        .filter(|t| !t.agrees())
        .map(|t| t.kind)
        .collect();
    anyhow::ensure!(
        wrong.is_empty(),
        "the counts disagree for {}: the target is incomplete (run again with --resume)",
        wrong.join(", ")
    );
    println!("moved: every count agrees");
    Ok(())
}

/// The table of counts: one line a kind.
fn report(tallies: &[Tally]) -> String {
    let mut out = format!(
        "{:<52} {:>8} {:>8} {:>8}\n",
        "kind", "read", "written", "counted"
    );
    for t in tallies {
        out.push_str(&format!(
            "{:<52} {:>8} {:>8} {:>8}{}\n",
            t.kind,
            t.read,
            t.written,
            t.counted,
            if t.agrees() { "" } else { "  MISMATCH" }
        ));
    }
    out
}

fn versions(list: &[i32]) -> String {
    list.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
