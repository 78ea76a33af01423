//! The embedded named event streams: each stream is a [`SqliteEventLog`] of its own in
//! `DATA_DIR/streams/{name}/`, opened once per process and shared by every caller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ironhub_store::streams::{MAX_STREAM_PARTITIONS, valid_stream_name};
use ironhub_store::{EventLog, EventStreams, StoreError};

use crate::SqliteEventLog;

type StoreResult<T> = ironhub_store::Result<T>;

/// The SQLite-backed [`EventStreams`].
#[derive(Debug)]
pub struct SqliteEventStreams {
    dir: PathBuf,
    open: Mutex<BTreeMap<String, Arc<SqliteEventLog>>>,
}

impl SqliteEventStreams {
    /// The streams kept under `dir` (`DATA_DIR/streams`).
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
        Ok(SqliteEventStreams {
            dir: dir.to_path_buf(),
            open: Mutex::default(),
        })
    }

    fn path(&self, name: &str) -> StoreResult<PathBuf> {
        if valid_stream_name(name) {
            Ok(self.dir.join(name))
        } else {
            Err(StoreError::Engine(format!("'{name}' cannot name a stream")))
        }
    }

    fn lock(
        &self,
    ) -> StoreResult<std::sync::MutexGuard<'_, BTreeMap<String, Arc<SqliteEventLog>>>> {
        self.open
            .lock()
            .map_err(|_| StoreError::Engine("a stream operation panicked".into()))
    }
}

#[async_trait]
impl EventStreams for SqliteEventStreams {
    async fn open_stream(&self, name: &str, partitions: u32) -> StoreResult<Arc<dyn EventLog>> {
        let path = self.path(name)?;
        let mut open = self.lock()?;
        if let Some(log) = open.get(name) {
            return Ok(log.clone());
        }
        let log = Arc::new(SqliteEventLog::open(
            &path,
            partitions.clamp(1, MAX_STREAM_PARTITIONS),
        )?);
        open.insert(name.to_owned(), log.clone());
        Ok(log)
    }

    async fn stream(&self, name: &str) -> StoreResult<Option<Arc<dyn EventLog>>> {
        let path = self.path(name)?;
        if let Some(log) = self.lock()?.get(name) {
            return Ok(Some(log.clone()));
        }
        if path.join("events.db").exists() {
            // Created before this process started: open it with the count it has.
            return self.open_stream(name, 1).await.map(Some);
        }
        Ok(None)
    }

    async fn list_streams(&self) -> StoreResult<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| StoreError::Engine(format!("cannot read {}: {e}", self.dir.display())))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("events.db").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_stream_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn delete_stream(&self, name: &str) -> StoreResult<bool> {
        let path = self.path(name)?;
        let mut open = self.lock()?;
        let known = open.remove(name).is_some();
        if !path.exists() {
            return Ok(known);
        }
        std::fs::remove_dir_all(&path)
            .map_err(|e| StoreError::Engine(format!("cannot delete {}: {e}", path.display())))?;
        Ok(true)
    }
}
