//! The event log on JetStream: one stream per partition, so a partition's sequence number is
//! its stream's sequence minus one (JetStream numbers a stream's messages 1, 2, 3, … without
//! gaps, and keeps counting after messages are removed). Consumer groups and checkpoints live
//! in the hub's log KV bucket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use ironhub_store::eventlog::{
    DEFAULT_CONSUMER_GROUP, Event, EventLog, NewEvent, PartitionBounds, Retention, StartPosition,
    partition_for,
};
use ironhub_store::{Result, StoreError};

use crate::error::engine;
use crate::names::{Names, escape};

/// Reads of one partition in flight at once.
const READ_AHEAD: usize = 64;

/// The [`EventLog`] on NATS JetStream.
#[derive(Debug, Clone)]
pub struct NatsEventLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The event stream's name (`$events` for the hub's telemetry), escaped for KV keys.
    key: String,
    subjects: Vec<String>,
    streams: Vec<stream::Stream>,
    bucket: kv::Store,
    /// Per partition, the first stream sequence last seen, to report what limits dropped.
    seen_first: Mutex<Vec<u64>>,
}

/// What an event carries besides its body; stored ahead of the body in the message.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    device_id: String,
    module_id: Option<String>,
    system_properties: std::collections::BTreeMap<String, String>,
    application_properties: std::collections::BTreeMap<String, Option<String>>,
    /// The enqueued time of an imported event (`EventLog::import`), which JetStream's own
    /// time of the message cannot carry; absent for an event appended here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enqueued_time: Option<DateTime<Utc>>,
}

/// A message's payload: the length of the metadata (4 bytes, big-endian), the metadata
/// (JSON), the body.
fn encode(event: &NewEvent, enqueued_time: Option<DateTime<Utc>>) -> Result<Bytes> {
    let meta = serde_json::to_vec(&Meta {
        device_id: event.device_id.clone(),
        module_id: event.module_id.clone(),
        system_properties: event.system_properties.clone(),
        application_properties: event.application_properties.clone(),
        enqueued_time,
    })
    .map_err(|e| StoreError::Engine(e.to_string()))?;
    let len = u32::try_from(meta.len())
        .map_err(|_| StoreError::Engine("event properties too large".into()))?;
    let mut buf = BytesMut::with_capacity(4 + meta.len() + event.body.len());
    buf.put_u32(len);
    buf.put_slice(&meta);
    buf.put_slice(&event.body);
    Ok(buf.freeze())
}

fn decode(payload: &[u8]) -> Result<NewEvent> {
    let corrupt = || StoreError::Corrupt("an event in NATS is not in ironhub's format".into());
    let (len, rest) = payload.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt());
    }
    let (meta, body) = rest.split_at(len);
    let meta: Meta = serde_json::from_slice(meta).map_err(|_| corrupt())?;
    Ok(NewEvent {
        device_id: meta.device_id,
        module_id: meta.module_id,
        system_properties: meta.system_properties,
        application_properties: meta.application_properties,
        body: body.to_vec(),
    })
}

/// The enqueued time an imported event carries in its metadata, if any.
fn imported_time(payload: &[u8]) -> Option<DateTime<Utc>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Time {
        enqueued_time: Option<DateTime<Utc>>,
    }
    let (len, rest) = payload.split_first_chunk::<4>()?;
    let meta = rest.get(..u32::from_be_bytes(*len) as usize)?;
    serde_json::from_slice::<Time>(meta).ok()?.enqueued_time
}

/// The body's size in a stored message (what retention by size counts).
fn body_len(payload: &[u8]) -> u64 {
    let meta = payload
        .first_chunk::<4>()
        .map_or(0, |l| u32::from_be_bytes(*l) as usize);
    payload.len().saturating_sub(4 + meta) as u64
}

/// Opens (creating if needed) the KV bucket `name`; nodes racing here get the same bucket.
/// The bucket's stream is created here, as the KV conventions lay it out, because the
/// client's own bucket creation first reads account details nats-server 2.9 does not send.
pub(crate) async fn bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> Result<kv::Store> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    create_stream(
        js,
        stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| engine(&format!("create KV bucket {name}"), e))?;
    let mut tries = 1;
    loop {
        match js.get_key_value(name).await {
            Err(e) if tries < CREATE_TRIES => {
                tracing::warn!(bucket = name, error = %e, "NATS KV bucket not readable yet; trying again");
                tries += 1;
            }
            done => return done.map_err(|e| engine(&format!("open KV bucket {name}"), e)),
        }
    }
}

/// How many times a stream's creation (and a new bucket's first read) is tried when JetStream
/// does not answer in time, or answers that another node's identical stream is half made.
const CREATE_TRIES: u32 = 6;

/// `get_or_create_stream`, tried again when the creation raced or was slow:
/// - JetStream did not answer in time: on a JetStream cluster each new stream elects its own
///   leader among its replicas, which on busy machines may take longer than one request's
///   time-out;
/// - JetStream answered "subjects overlap" (10065): nodes starting together each look the stream
///   up, miss it and create it, and nats-server checks a new stream's subjects against the
///   streams it has before it sees that the one overlapping is the same stream, made a moment
///   earlier by another node. The next try's lookup finds that stream.
///
/// Creating is idempotent (a stream that was created meanwhile is found), so another try is
/// safe. A genuine overlap (another stream owns these subjects) fails again on every try and is
/// reported; other errors are final at once.
async fn create_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> std::result::Result<stream::Stream, jetstream::context::CreateStreamError> {
    use jetstream::context::CreateStreamErrorKind as Kind;
    let mut tries = 1;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Err(e) if tries < CREATE_TRIES && e.kind() == Kind::TimedOut => {
                tracing::warn!(stream = config.name, error = %e, "JetStream did not answer the stream's creation in time; trying again");
            }
            Err(e)
                if tries < CREATE_TRIES
                    && matches!(e.kind(), Kind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_SUBJECT_OVERLAP) =>
            {
                tracing::info!(stream = config.name, error = %e, "another node is creating the stream; looking it up again");
                // The racing creation finishes within milliseconds; a short pause lets it land.
                tokio::time::sleep(Duration::from_millis(50 * u64::from(tries))).await;
            }
            done => return done,
        }
        tries += 1;
    }
}

/// `kv::Store::create`, tried again (three times in all) when JetStream's acknowledgement
/// did not come: nodes starting together on a busy server may wait past the client's timeout,
/// and a create that did land meanwhile is then told `AlreadyExists`, as to a second node.
async fn create_key(
    bucket: &kv::Store,
    key: &str,
    value: Bytes,
) -> std::result::Result<u64, kv::CreateError> {
    let mut tries = 1;
    loop {
        match bucket.create(key, value.clone()).await {
            Err(e)
                if tries < 3
                    && matches!(
                        e.kind(),
                        kv::CreateErrorKind::Ack | kv::CreateErrorKind::Publish
                    ) =>
            {
                tracing::warn!(key, error = %e, "NATS KV create not acknowledged; trying again");
                tries += 1;
            }
            done => return done,
        }
    }
}

impl NatsEventLog {
    /// Opens event stream `stream` of hub `names` (`$events` for its telemetry), creating its
    /// partitions' JetStream streams if needed, on any node. `partitions` applies when the
    /// stream is new; an existing one keeps its count. `retention` becomes the streams'
    /// limits when they are created (JetStream then removes what they no longer keep).
    pub async fn open(
        client: async_nats::Client,
        names: &Names,
        stream: &str,
        partitions: u32,
        retention: Retention,
    ) -> Result<Self> {
        let js = jetstream::new(client.clone());
        let bucket = bucket(&js, &names.log_bucket(), names.replicas()).await?;
        let key = escape(stream);
        let count_key = format!("{key}.partitions");
        let partitions =
            match create_key(&bucket, &count_key, partitions.max(1).to_string().into()).await {
                Ok(_) => partitions.max(1),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let kept = bucket
                        .get(&count_key)
                        .await
                        .map_err(|e| engine("read the partition count", e))?
                        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok());
                    kept.ok_or_else(|| StoreError::Corrupt(format!("{count_key} in NATS")))?
                }
                Err(e) => return Err(engine("record the partition count", e)),
            };
        let group = format!("{key}.group.{}", escape(DEFAULT_CONSUMER_GROUP));
        match create_key(&bucket, &group, Bytes::from_static(b"1")).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(engine("create the $Default consumer group", e)),
        }
        let mut streams = Vec::new();
        let mut subjects = Vec::new();
        for p in 0..partitions {
            let subject = names.partition_subject(stream, p);
            let name = names.partition_stream(stream, p);
            let created = create_stream(
                &js,
                stream::Config {
                    name: name.clone(),
                    subjects: vec![subject.clone()],
                    storage: stream::StorageType::File,
                    max_age: retention.max_age.to_std().unwrap_or_default(),
                    max_bytes: i64::try_from(retention.max_bytes_per_partition).unwrap_or(i64::MAX),
                    discard: stream::DiscardPolicy::Old,
                    num_replicas: names.replicas(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| engine(&format!("create stream {name}"), e))?;
            streams.push(created);
            subjects.push(subject);
        }
        let log = NatsEventLog {
            inner: Arc::new(Inner {
                client,
                js,
                key,
                subjects,
                streams,
                bucket,
                seen_first: Mutex::new(vec![0; partitions as usize]),
            }),
        };
        let mut firsts = Vec::new();
        for p in 0..partitions {
            firsts.push(log.state(p).await?.first_sequence);
        }
        if let Ok(mut seen) = log.inner.seen_first.lock() {
            *seen = firsts;
        }
        Ok(log)
    }

    /// Appends an event to its partition; `imported` is the enqueued time it keeps (`None`:
    /// JetStream's time of the message).
    async fn publish(&self, event: NewEvent, imported: Option<DateTime<Utc>>) -> Result<Event> {
        let partition = partition_for(&event.device_id, self.partition_count());
        let payload = encode(&event, imported)?;

        let ack = self
            .inner
            .js
            .publish(self.inner.subjects[partition as usize].clone(), payload)
            .await
            .map_err(|e| engine("append an event", e))?
            .await
            .map_err(|e| engine("append an event (no acknowledgement)", e))?;
        // The ack carries no time: the stored message's is the event's enqueued time.
        let enqueued_time = match imported {
            Some(t) => t,
            None => self
                .stored(partition, ack.sequence)
                .await
                .ok()
                .flatten()
                .map_or_else(Utc::now, |(t, _)| t),
        };
        Ok(Event {
            partition,
            sequence_number: ack.sequence - 1,
            enqueued_time,
            event,
        })
    }

    fn stream(&self, partition: u32) -> Result<&stream::Stream> {
        self.inner
            .streams
            .get(partition as usize)
            .ok_or_else(|| StoreError::Engine(format!("there is no partition {partition}")))
    }

    async fn state(&self, partition: u32) -> Result<stream::State> {
        Ok(self
            .stream(partition)?
            .get_info()
            .await
            .map_err(|e| engine("read a partition's state", e))?
            .state)
    }

    /// The first stream sequence in `lo..hi` whose message was stored at or after `t` (`hi`
    /// if none): a binary search, as a stream's timestamps grow with its sequence.
    async fn first_at_or_after(
        &self,
        partition: u32,
        t: DateTime<Utc>,
        mut lo: u64,
        mut hi: u64,
    ) -> Result<u64> {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.stored(partition, mid).await? {
                Some((time, _)) if time < t => lo = mid + 1,
                Some(_) => hi = mid,
                // Removed meanwhile: it was older than anything kept.
                None => lo = mid + 1,
            }
        }
        Ok(lo)
    }

    /// A stored message's enqueued time (an imported event's own, else JetStream's) and
    /// payload.
    async fn stored(&self, partition: u32, seq: u64) -> Result<Option<(DateTime<Utc>, Bytes)>> {
        match self.stream(partition)?.get_raw_message(seq).await {
            Ok(m) => Ok(Some((
                imported_time(&m.payload).unwrap_or(m.time),
                m.payload,
            ))),
            Err(e) if matches!(e.kind(), stream::RawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(engine("read an event", e)),
        }
    }

    async fn event(&self, partition: u32, seq: u64) -> Result<Option<Event>> {
        let Some((time, payload)) = self.stored(partition, seq).await? else {
            return Ok(None);
        };
        Ok(Some(Event {
            partition,
            sequence_number: seq - 1,
            enqueued_time: time,
            event: decode(&payload)?,
        }))
    }

    fn group_key(&self, group: &str) -> String {
        format!("{}.group.{}", self.inner.key, escape(group))
    }

    fn checkpoint_key(&self, group: &str, partition: u32) -> String {
        format!(
            "{}.checkpoint.{}.{partition}",
            self.inner.key,
            escape(group)
        )
    }

    /// Removes the messages of a partition before stream sequence `keep_from`.
    async fn purge_before(&self, partition: u32, keep_from: u64) -> Result<u64> {
        let purged = self
            .stream(partition)?
            .purge()
            .sequence(keep_from)
            .await
            .map_err(|e| engine("remove old events", e))?;
        Ok(purged.purged)
    }
}

fn bounds_of(state: &stream::State) -> PartitionBounds {
    let next = state.last_sequence;
    let first = if state.messages == 0 {
        next
    } else {
        state.first_sequence.saturating_sub(1)
    };
    PartitionBounds { first, next }
}

#[async_trait]
impl EventLog for NatsEventLog {
    fn partition_count(&self) -> u32 {
        u32::try_from(self.inner.streams.len()).unwrap_or(u32::MAX)
    }

    async fn append(&self, event: NewEvent) -> Result<Event> {
        self.publish(event, None).await
    }

    async fn import(&self, event: Event) -> Result<Event> {
        self.publish(event.event, Some(event.enqueued_time)).await
    }
    async fn read(&self, partition: u32, from: u64, max: usize) -> Result<Vec<Event>> {
        let bounds = bounds_of(&self.state(partition).await?);
        let start = from.max(bounds.first);
        let end = bounds.next.min(start.saturating_add(max as u64));
        let reads = futures_util::stream::iter(start..end)
            .map(|s| self.event(partition, s + 1))
            .buffered(READ_AHEAD)
            .collect::<Vec<_>>()
            .await;
        let mut events = Vec::with_capacity(reads.len());
        for read in reads {
            if let Some(e) = read? {
                events.push(e);
            }
        }
        Ok(events)
    }

    async fn bounds(&self, partition: u32) -> Result<PartitionBounds> {
        Ok(bounds_of(&self.state(partition).await?))
    }

    async fn resolve(&self, partition: u32, start: StartPosition) -> Result<u64> {
        let bounds = self.bounds(partition).await?;
        Ok(match start {
            StartPosition::Earliest => bounds.first,
            StartPosition::Latest => bounds.next,
            StartPosition::Sequence(s) => s.clamp(bounds.first, bounds.next),
            StartPosition::EnqueuedTime(t) => {
                self.first_at_or_after(partition, t, bounds.first + 1, bounds.next + 1)
                    .await?
                    - 1
            }
        })
    }

    async fn wait_for(&self, partition: u32, sequence: u64, timeout: Duration) -> bool {
        let Some(subject) = self.inner.subjects.get(partition as usize) else {
            return false;
        };
        // Subscribed (and the server told so) before looking, so no append slips between.
        let Ok(mut appends) = self.inner.client.subscribe(subject.clone()).await else {
            return false;
        };
        if self.inner.client.flush().await.is_err() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let Ok(bounds) = self.bounds(partition).await else {
            return false;
        };
        if bounds.next > sequence {
            return true;
        }
        // Each message published on the partition's subject from now on is stored at
        // `bounds.next` or later.
        let mut needed = sequence - bounds.next + 1;
        loop {
            match tokio::time::timeout_at(deadline, appends.next()).await {
                Ok(Some(_)) => {
                    needed -= 1;
                    if needed == 0 {
                        // Published; the stream stores it in a moment. Look a few times so
                        // that the caller's read usually finds it, then say so anyway.
                        for _ in 0..3 {
                            if self
                                .bounds(partition)
                                .await
                                .is_ok_and(|b| b.next > sequence)
                            {
                                break;
                            }
                        }
                        return true;
                    }
                }
                Ok(None) | Err(_) => {
                    return self
                        .bounds(partition)
                        .await
                        .is_ok_and(|b| b.next > sequence);
                }
            }
        }
    }

    async fn consumer_groups(&self) -> Result<Vec<String>> {
        let prefix = format!("{}.group.", self.inner.key);
        let mut keys = self
            .inner
            .bucket
            .keys()
            .await
            .map_err(|e| engine("list consumer groups", e))?;
        let mut groups = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| engine("list consumer groups", e))?;
            if let Some(name) = key.strip_prefix(&prefix) {
                groups.push(unescape(name));
            }
        }
        groups.sort_by(|a, b| {
            (a != DEFAULT_CONSUMER_GROUP, a).cmp(&(b != DEFAULT_CONSUMER_GROUP, b))
        });
        Ok(groups)
    }

    async fn create_consumer_group(&self, name: &str) -> Result<bool> {
        match self
            .inner
            .bucket
            .create(self.group_key(name), Bytes::from_static(b"1"))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(engine("create a consumer group", e)),
        }
    }

    async fn delete_consumer_group(&self, name: &str) -> Result<bool> {
        if name == DEFAULT_CONSUMER_GROUP {
            return Ok(false);
        }
        let key = self.group_key(name);
        let bucket = &self.inner.bucket;
        let Some(entry) = bucket
            .entry(&key)
            .await
            .map_err(|e| engine("read a consumer group", e))?
            .filter(|e| e.operation == kv::Operation::Put)
        else {
            return Ok(false);
        };
        for p in 0..self.partition_count() {
            bucket
                .purge(self.checkpoint_key(name, p))
                .await
                .map_err(|e| engine("delete a checkpoint", e))?;
        }
        match bucket
            .delete_expect_revision(&key, Some(entry.revision))
            .await
        {
            Ok(()) => Ok(true),
            // Deleted by another node meanwhile.
            Err(_) if bucket.get(&key).await.ok().flatten().is_none() => Ok(false),
            Err(e) => Err(engine("delete a consumer group", e)),
        }
    }

    async fn checkpoint(&self, group: &str, partition: u32) -> Result<Option<u64>> {
        let value = self
            .inner
            .bucket
            .get(self.checkpoint_key(group, partition))
            .await
            .map_err(|e| engine("read a checkpoint", e))?;
        Ok(value.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    async fn set_checkpoint(&self, group: &str, partition: u32, next: u64) -> Result<()> {
        self.stream(partition)?;
        self.inner
            .bucket
            .put(
                self.checkpoint_key(group, partition),
                next.to_string().into(),
            )
            .await
            .map_err(|e| engine("store a checkpoint", e))?;
        Ok(())
    }

    async fn enforce_retention(&self, retention: Retention) -> Result<u64> {
        let mut dropped = 0;
        for p in 0..self.partition_count() {
            let state = self.state(p).await?;
            // What the streams' own limits removed since the last look.
            let seen = self
                .inner
                .seen_first
                .lock()
                .map(|s| s[p as usize])
                .unwrap_or(state.first_sequence);
            dropped += state.first_sequence.saturating_sub(seen.max(1));
            let (first, last) = (state.first_sequence.max(1), state.last_sequence);
            let mut keep_from = first;
            if state.messages > 0 {
                // A stricter age than the streams' own.
                let cutoff = Utc::now() - retention.max_age;
                // The oldest event's own time (an imported one's is older than JetStream's).
                let oldest = self
                    .stored(p, first)
                    .await?
                    .map_or(state.first_timestamp, |(t, _)| t);
                if oldest < cutoff {
                    keep_from = self.first_at_or_after(p, cutoff, first, last + 1).await?;
                }
                // A stricter size (of bodies) than the streams' own (of whole messages).
                if state.bytes > retention.max_bytes_per_partition {
                    let mut kept = 0u64;
                    let mut s = last;
                    while s >= keep_from.max(1) {
                        let size = match self.stored(p, s).await? {
                            Some((_, payload)) => body_len(&payload),
                            None => 0,
                        };
                        if kept + size > retention.max_bytes_per_partition {
                            keep_from = s + 1;
                            break;
                        }
                        kept += size;
                        s -= 1;
                    }
                }
            }
            if keep_from > first {
                dropped += self.purge_before(p, keep_from).await?;
            }
            let now_first = self.state(p).await?.first_sequence;
            if let Ok(mut seen) = self.inner.seen_first.lock() {
                seen[p as usize] = now_first;
            }
        }
        Ok(dropped)
    }
}

/// The inverse of [`escape`].
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_names_round_trip() {
        let event = NewEvent {
            device_id: "d".into(),
            module_id: None,
            system_properties: [("message-id".to_owned(), "1".to_owned())].into(),
            application_properties: [("k".to_owned(), None)].into(),
            body: b"hello".to_vec(),
        };
        let payload = encode(&event, None).unwrap();
        assert_eq!(decode(&payload).unwrap(), event);
        assert_eq!(imported_time(&payload), None);
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let payload = encode(&event, Some(at)).unwrap();
        assert_eq!(decode(&payload).unwrap(), event);
        assert_eq!(imported_time(&payload), Some(at));
        assert_eq!(body_len(&payload), 5);
        assert!(decode(b"\0\0\0\x09{}").is_err());
        assert_eq!(unescape(&escape("$Default/x.y")), "$Default/x.y");
    }
}
