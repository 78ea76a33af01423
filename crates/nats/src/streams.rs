//! Named event streams ([`EventStreams`]) on JetStream: each stream is a [`NatsEventLog`] of
//! its own (one JetStream stream per partition, its counts and checkpoints in the hub's log
//! bucket), named `streams.{name}` on NATS so that no custom stream can meet the built-in
//! `events` log. The catalog of streams is the log bucket's `catalog.{name}` keys, so every
//! node lists the same streams.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use ironhub_store::streams::{MAX_STREAM_PARTITIONS, valid_stream_name};
use ironhub_store::{EventLog, EventStreams, Result, Retention, StoreError};
use tokio::sync::Mutex;

use crate::error::engine;
use crate::eventlog::{NatsEventLog, bucket};
use crate::names::{Names, escape};

/// The [`EventStreams`] of one hub on NATS JetStream.
#[derive(Debug)]
pub struct NatsEventStreams {
    client: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    retention: Retention,
    /// Streams opened by this node (a stream opened elsewhere is found in the catalog).
    open: Mutex<HashMap<String, Arc<NatsEventLog>>>,
}

/// The name a custom stream has among the hub's event streams on NATS.
fn nats_stream(name: &str) -> String {
    format!("streams.{name}")
}

fn catalog_key(name: &str) -> String {
    format!("catalog.{}", escape(name))
}

impl NatsEventStreams {
    /// The streams of hub `names`; new streams' JetStream limits come from `retention`.
    pub fn new(client: async_nats::Client, names: &Names, retention: Retention) -> Self {
        NatsEventStreams {
            js: jetstream::new(client.clone()),
            client,
            names: names.clone(),
            retention,
            open: Mutex::new(HashMap::new()),
        }
    }

    async fn catalog(&self) -> Result<kv::Store> {
        bucket(&self.js, &self.names.log_bucket(), self.names.replicas()).await
    }

    async fn open_log(&self, name: &str, partitions: u32) -> Result<Arc<NatsEventLog>> {
        let log = NatsEventLog::open(
            self.client.clone(),
            &self.names,
            &nats_stream(name),
            partitions,
            self.retention,
        )
        .await?;
        Ok(Arc::new(log))
    }
}

#[async_trait]
impl EventStreams for NatsEventStreams {
    async fn open_stream(&self, name: &str, partitions: u32) -> Result<Arc<dyn EventLog>> {
        if !valid_stream_name(name) {
            return Err(StoreError::Engine(format!("'{name}' cannot name a stream")));
        }
        let mut open = self.open.lock().await;
        if let Some(log) = open.get(name) {
            return Ok(log.clone());
        }
        let partitions = partitions.clamp(1, MAX_STREAM_PARTITIONS);
        // The catalog entry first: a stream whose creation fails half way is still listed,
        // so that `delete_stream` can remove what was created.
        match self
            .catalog()
            .await?
            .create(&catalog_key(name), Bytes::from(name.to_owned()))
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(engine("record a stream in the catalog", e)),
        }
        let log = self.open_log(name, partitions).await?;
        open.insert(name.to_owned(), log.clone());
        Ok(log)
    }

    async fn stream(&self, name: &str) -> Result<Option<Arc<dyn EventLog>>> {
        if let Some(log) = self.open.lock().await.get(name) {
            return Ok(Some(log.clone()));
        }
        if !valid_stream_name(name) {
            return Ok(None);
        }
        let listed = self
            .catalog()
            .await?
            .get(&catalog_key(name))
            .await
            .map_err(|e| engine("read the stream catalog", e))?
            .is_some();
        if !listed {
            return Ok(None);
        }
        // Listed by another node: open it as it was created (its partition count is kept).
        let mut open = self.open.lock().await;
        let log = match open.get(name) {
            Some(log) => log.clone(),
            None => {
                let log = self.open_log(name, 1).await?;
                open.insert(name.to_owned(), log.clone());
                log
            }
        };
        Ok(Some(log))
    }

    async fn list_streams(&self) -> Result<Vec<String>> {
        let catalog = self.catalog().await?;
        let mut keys = catalog
            .keys()
            .await
            .map_err(|e| engine("list the stream catalog", e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| engine("list the stream catalog", e))?;
            if !key.starts_with("catalog.") {
                continue;
            }
            if let Some(value) = catalog
                .get(&key)
                .await
                .map_err(|e| engine("read the stream catalog", e))?
                && let Ok(name) = String::from_utf8(value.to_vec())
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn delete_stream(&self, name: &str) -> Result<bool> {
        let catalog = self.catalog().await?;
        let listed = catalog
            .get(&catalog_key(name))
            .await
            .map_err(|e| engine("read the stream catalog", e))?
            .is_some();
        if !listed {
            return Ok(false);
        }
        let mut open = self.open.lock().await;
        open.remove(name);
        // Its partition streams (as many as its recorded count; every possible one when a
        // creation stopped before recording it), then the stream's keys (count, groups,
        // checkpoints), then its catalog entry.
        let key = escape(&nats_stream(name));
        let partitions = catalog
            .get(&format!("{key}.partitions"))
            .await
            .map_err(|e| engine("read a stream's partition count", e))?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u32>().ok())
            .unwrap_or(MAX_STREAM_PARTITIONS);
        for partition in 0..partitions {
            let stream = self.names.partition_stream(&nats_stream(name), partition);
            match self.js.delete_stream(&stream).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("not found") => {}
                Err(e) => return Err(engine(&format!("delete stream {stream}"), e)),
            }
        }
        let mut keys = catalog
            .keys()
            .await
            .map_err(|e| engine("list the log bucket", e))?;
        let prefix = format!("{key}.");
        let mut doomed = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k.map_err(|e| engine("list the log bucket", e))?;
            if k.starts_with(&prefix) {
                doomed.push(k);
            }
        }
        for k in doomed {
            catalog
                .purge(&k)
                .await
                .map_err(|e| engine("remove a stream's keys", e))?;
        }
        catalog
            .purge(&catalog_key(name))
            .await
            .map_err(|e| engine("remove a stream from the catalog", e))?;
        Ok(true)
    }
}
