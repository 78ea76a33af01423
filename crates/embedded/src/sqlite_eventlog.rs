//! The embedded event log: its own SQLite file (`DATA_DIR/events.db`), so telemetry appends
//! never wait on registry writes. One writer thread commits appends in groups: every append is
//! on disk (`synchronous=FULL`) before its caller hears back, and concurrent appends share one
//! fsync. A batch (`append_batch`) is one item of a group, so its events share one transaction:
//! all are durable together or none is. A crash while the transaction is written leaves its
//! frames in the WAL without their commit frame, and SQLite's recovery drops them (a torn tail
//! is never read back).

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{oneshot, watch};

use ironhub_store::StoreError;
use ironhub_store::eventlog::{
    DEFAULT_CONSUMER_GROUP, Event, EventLog, NewEvent, PartitionBounds, Retention, StartPosition,
    partition_for,
};

use crate::error::Result;

type StoreResult<T> = ironhub_store::Result<T>;

const FILE_NAME: &str = "events.db";
/// Most appends (single events or batches) committed in one transaction.
const MAX_GROUP: usize = 512;

type Reply = oneshot::Sender<StoreResult<Vec<Event>>>;
/// Events to append together, each with the enqueued time it keeps when imported (`None`:
/// now).
type Append = (Vec<(NewEvent, Option<DateTime<Utc>>)>, Reply);

/// The SQLite-backed [`EventLog`].
#[derive(Debug, Clone)]
pub struct SqliteEventLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    partitions: u32,
    writer: Mutex<mpsc::Sender<Append>>,
    reader: Arc<Mutex<Connection>>,
    /// Per partition: the next sequence number (what a reader waits on).
    heads: Vec<watch::Sender<u64>>,
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteEventLog {
    /// Hands events to the writer thread and waits until they are committed together.
    async fn write(
        &self,
        events: Vec<(NewEvent, Option<DateTime<Utc>>)>,
    ) -> StoreResult<Vec<Event>> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .writer
            .lock()
            .map_err(|_| StoreError::Engine("the event log writer is gone".into()))?
            .send((events, reply))
            .map_err(|_| StoreError::Engine("the event log writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Engine("the event log writer stopped".into()))?
    }

    /// Opens (creating if needed) the log in `dir`. `partitions` applies when the log is new;
    /// an existing log keeps the count it was created with.
    pub fn open(dir: &Path, partitions: u32) -> StoreResult<Self> {
        Ok(Self::open_in(dir, partitions)?)
    }

    fn open_in(dir: &Path, partitions: u32) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let writer_conn = open_connection(&path)?;
        writer_conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS events (
                 partition INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 enqueued_ms INTEGER NOT NULL,
                 size INTEGER NOT NULL,
                 doc TEXT NOT NULL,
                 body BLOB NOT NULL,
                 PRIMARY KEY (partition, seq)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS events_time ON events (partition, enqueued_ms);
             CREATE TABLE IF NOT EXISTS consumer_groups (name TEXT PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS checkpoints (
                 grp TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
                 PRIMARY KEY (grp, partition)
             );
             INSERT OR IGNORE INTO consumer_groups (name) VALUES ('$Default');",
        )?;
        writer_conn.execute(
            "INSERT OR IGNORE INTO log_meta (key, value) VALUES ('partitions', ?1)",
            [partitions.max(1)],
        )?;
        let partitions: u32 = writer_conn.query_row(
            "SELECT value FROM log_meta WHERE key = 'partitions'",
            [],
            |r| r.get(0),
        )?;
        let mut next = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let last: Option<i64> = writer_conn.query_row(
                "SELECT MAX(seq) FROM events WHERE partition = ?1",
                [p],
                |r| r.get(0),
            )?;
            let kept: Option<i64> = writer_conn
                .query_row(
                    "SELECT value FROM log_meta WHERE key = ?1",
                    [format!("next:{p}")],
                    |r| r.get(0),
                )
                .optional()?;
            // After retention empties a partition, its numbering still continues.
            next.push(to_u64(last.map_or(0, |l| l + 1).max(kept.unwrap_or(0))));
        }
        let heads: Vec<watch::Sender<u64>> = next.iter().map(|n| watch::channel(*n).0).collect();
        let (tx, rx) = mpsc::channel();
        let thread_heads = heads.clone();
        std::thread::Builder::new()
            .name("ironhub-eventlog".into())
            .spawn(move || writer_loop(writer_conn, rx, next, thread_heads, partitions))
            .map_err(|e| StoreError::Engine(format!("cannot start the event log writer: {e}")))?;
        Ok(SqliteEventLog {
            inner: Arc::new(Inner {
                partitions,
                writer: Mutex::new(tx),
                reader: Arc::new(Mutex::new(open_connection(&path)?)),
                heads,
            }),
        })
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.inner.reader.clone();
        tokio::task::spawn_blocking(move || -> StoreResult<T> {
            let guard = conn
                .lock()
                .map_err(|_| StoreError::Engine("an event log read panicked".into()))?;
            Ok(f(&guard)?)
        })
        .await
        .map_err(|e| StoreError::Engine(e.to_string()))?
    }

    fn check_partition(&self, partition: u32) -> StoreResult<()> {
        if partition < self.inner.partitions {
            Ok(())
        } else {
            Err(StoreError::Engine(format!(
                "there is no partition {partition}"
            )))
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Append>,
    mut next: Vec<u64>,
    heads: Vec<watch::Sender<u64>>,
    partitions: u32,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        let before = next.clone();
        let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        match commit_group(&mut conn, batches, &mut next, partitions) {
            Ok(events) => {
                for (p, head) in heads.iter().enumerate() {
                    head.send_if_modified(|v| {
                        let changed = *v != next[p];
                        *v = next[p];
                        changed
                    });
                }
                let mut events = events.into_iter();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    let _ = reply.send(Ok(events.by_ref().take(size).collect()));
                }
            }
            Err(e) => {
                next = before;
                tracing::error!(error = %e, "event log append failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Engine(e.to_string())));
                }
            }
        }
    }
}

/// What the `doc` column holds: the event as [`Event`] serializes it, with an empty body
/// (the body has its own column), written from borrowed parts so that the writer thread, which
/// every append goes through, copies nothing of the event.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Doc<'a> {
    partition: u32,
    sequence_number: u64,
    enqueued_time: DateTime<Utc>,
    device_id: &'a str,
    module_id: &'a Option<String>,
    system_properties: &'a std::collections::BTreeMap<String, String>,
    application_properties: &'a std::collections::BTreeMap<String, Option<String>>,
    body: [u8; 0],
}

/// Appends the group's events in one transaction; each event moves into the [`Event`]
/// returned for it (the writer thread allocates nothing per event but its document).
fn commit_group(
    conn: &mut Connection,
    batches: Vec<Vec<(NewEvent, Option<DateTime<Utc>>)>>,
    next: &mut [u64],
    partitions: u32,
) -> Result<Vec<Event>> {
    let tx = conn.transaction()?;
    let mut events = Vec::with_capacity(batches.iter().map(Vec::len).sum());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (partition, seq, enqueued_ms, size, doc, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (new, at) in batches.into_iter().flatten() {
            let partition = partition_for(&new.device_id, partitions);
            let slot = &mut next[partition as usize];
            // Milliseconds, as stored, so an event reads back exactly as it was acknowledged.
            let at = at.unwrap_or_else(Utc::now);
            let now = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
            let doc = serde_json::to_string(&Doc {
                partition,
                sequence_number: *slot,
                enqueued_time: now,
                device_id: &new.device_id,
                module_id: &new.module_id,
                system_properties: &new.system_properties,
                application_properties: &new.application_properties,
                body: [],
            })?;
            insert.execute(params![
                partition,
                to_i64(*slot),
                ms(now),
                to_i64(new.body.len() as u64),
                doc,
                new.body
            ])?;
            events.push(Event {
                partition,
                sequence_number: *slot,
                enqueued_time: now,
                event: new,
            });
            *slot += 1;
        }
    }
    tx.commit()?;
    Ok(events)
}

/// The event a write of one appended.
fn one(events: Vec<Event>) -> StoreResult<Event> {
    events
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Engine("the event log writer lost an event".into()))
}

fn row_to_event(doc: &str, body: Vec<u8>) -> Result<Event> {
    let mut event: Event = serde_json::from_str(doc)?;
    event.event.body = body;
    Ok(event)
}

#[async_trait]
impl EventLog for SqliteEventLog {
    fn partition_count(&self) -> u32 {
        self.inner.partitions
    }

    async fn append(&self, event: NewEvent) -> StoreResult<Event> {
        one(self.write(vec![(event, None)]).await?)
    }

    async fn append_batch(&self, events: Vec<NewEvent>) -> StoreResult<Vec<Event>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.write(events.into_iter().map(|e| (e, None)).collect())
            .await
    }

    fn atomic_batches(&self) -> bool {
        true
    }

    async fn import(&self, event: Event) -> StoreResult<Event> {
        one(self
            .write(vec![(event.event, Some(event.enqueued_time))])
            .await?)
    }

    async fn read(&self, partition: u32, from: u64, max: usize) -> StoreResult<Vec<Event>> {
        self.check_partition(partition)?;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT doc, body FROM events WHERE partition = ?1 AND seq >= ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![partition, to_i64(from), max], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(|(d, b)| row_to_event(&d, b)).collect()
        })
        .await
    }

    async fn bounds(&self, partition: u32) -> StoreResult<PartitionBounds> {
        self.check_partition(partition)?;
        let next = *self.inner.heads[partition as usize].borrow();
        let first = self
            .with_reader(move |conn| {
                Ok(conn.query_row(
                    "SELECT MIN(seq) FROM events WHERE partition = ?1",
                    [partition],
                    |r| r.get::<_, Option<i64>>(0),
                )?)
            })
            .await?;
        Ok(PartitionBounds {
            first: first.map_or(next, to_u64),
            next,
        })
    }

    async fn resolve(&self, partition: u32, start: StartPosition) -> StoreResult<u64> {
        let bounds = self.bounds(partition).await?;
        Ok(match start {
            StartPosition::Earliest => bounds.first,
            StartPosition::Latest => bounds.next,
            StartPosition::Sequence(s) => s.clamp(bounds.first, bounds.next),
            StartPosition::EnqueuedTime(t) => {
                let at = ms(t);
                let found = self
                    .with_reader(move |conn| {
                        Ok(conn.query_row(
                            "SELECT MIN(seq) FROM events WHERE partition = ?1 AND enqueued_ms >= ?2",
                            params![partition, at],
                            |r| r.get::<_, Option<i64>>(0),
                        )?)
                    })
                    .await?;
                found.map_or(bounds.next, to_u64)
            }
        })
    }

    async fn wait_for(&self, partition: u32, sequence: u64, timeout: Duration) -> bool {
        let Some(head) = self.inner.heads.get(partition as usize) else {
            return false;
        };
        let mut rx = head.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|next| *next > sequence))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn consumer_groups(&self) -> StoreResult<Vec<String>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name FROM consumer_groups ORDER BY name <> '$Default', name",
            )?;
            Ok(stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn create_consumer_group(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.with_reader(move |conn| {
            Ok(conn.execute(
                "INSERT OR IGNORE INTO consumer_groups (name) VALUES (?1)",
                [name],
            )? == 1)
        })
        .await
    }

    async fn delete_consumer_group(&self, name: &str) -> StoreResult<bool> {
        if name == DEFAULT_CONSUMER_GROUP {
            return Ok(false);
        }
        let name = name.to_owned();
        self.with_reader(move |conn| {
            conn.execute("DELETE FROM checkpoints WHERE grp = ?1", [&name])?;
            Ok(conn.execute("DELETE FROM consumer_groups WHERE name = ?1", [&name])? == 1)
        })
        .await
    }

    async fn checkpoint(&self, group: &str, partition: u32) -> StoreResult<Option<u64>> {
        let group = group.to_owned();
        self.with_reader(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT next FROM checkpoints WHERE grp = ?1 AND partition = ?2",
                    params![group, partition],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .map(to_u64))
        })
        .await
    }

    async fn set_checkpoint(&self, group: &str, partition: u32, next: u64) -> StoreResult<()> {
        self.check_partition(partition)?;
        let group = group.to_owned();
        self.with_reader(move |conn| {
            conn.execute(
                "INSERT INTO checkpoints (grp, partition, next) VALUES (?1, ?2, ?3)
                 ON CONFLICT (grp, partition) DO UPDATE SET next = excluded.next",
                params![group, partition, to_i64(next)],
            )?;
            Ok(())
        })
        .await
    }

    async fn enforce_retention(&self, retention: Retention) -> StoreResult<u64> {
        let cutoff = ms(Utc::now() - retention.max_age);
        let max_bytes = to_i64(retention.max_bytes_per_partition);
        let partitions = self.inner.partitions;
        let heads: Vec<u64> = self.inner.heads.iter().map(|h| *h.borrow()).collect();
        self.with_reader(move |conn| {
            let mut dropped = 0u64;
            for p in 0..partitions {
                // Remember where numbering continues, in case the partition empties.
                conn.execute(
                    "INSERT INTO log_meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
                    params![format!("next:{p}"), to_i64(heads[p as usize])],
                )?;
                dropped += conn.execute(
                    "DELETE FROM events WHERE partition = ?1 AND enqueued_ms < ?2",
                    params![p, cutoff],
                )? as u64;
                // Oldest first, until the partition's bodies fit in max_bytes.
                dropped += conn.execute(
                    "DELETE FROM events WHERE partition = ?1 AND seq < (
                         SELECT COALESCE(MIN(seq), 0) FROM (
                             SELECT seq, SUM(size) OVER (ORDER BY seq DESC) AS newer
                             FROM events WHERE partition = ?1
                         ) WHERE newer <= ?2
                     )",
                    params![p, max_bytes],
                )? as u64;
            }
            Ok(dropped)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed document is exactly what serializing the event with an empty body gives,
    /// so rows written before and after read back alike.
    #[test]
    fn the_document_is_the_event_without_its_body() {
        let mut system = std::collections::BTreeMap::new();
        system.insert("message-id".to_owned(), "m\"1".to_owned());
        let mut application = std::collections::BTreeMap::new();
        application.insert("k".to_owned(), Some("v".to_owned()));
        application.insert("flag".to_owned(), None);
        for module_id in [None, Some("m1".to_owned())] {
            let event = Event {
                partition: 3,
                sequence_number: 42,
                enqueued_time: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
                event: NewEvent {
                    device_id: "d1".into(),
                    module_id,
                    system_properties: system.clone(),
                    application_properties: application.clone(),
                    body: Vec::new(),
                },
            };
            let doc = serde_json::to_value(Doc {
                partition: event.partition,
                sequence_number: event.sequence_number,
                enqueued_time: event.enqueued_time,
                device_id: &event.event.device_id,
                module_id: &event.event.module_id,
                system_properties: &event.event.system_properties,
                application_properties: &event.event.application_properties,
                body: [],
            })
            .unwrap();
            assert_eq!(doc, serde_json::to_value(&event).unwrap());
            assert_eq!(
                row_to_event(&doc.to_string(), b"x".to_vec())
                    .unwrap()
                    .event
                    .body,
                b"x"
            );
        }
    }
}
