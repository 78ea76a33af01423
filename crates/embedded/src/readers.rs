//! Read-only connections beside the embedded store's writers.
//!
//! In WAL mode a reader sees the last commit made before its read transaction began and never
//! waits for a writer, nor a writer for it. A pure read (a device's record at CONNECT, a DPS
//! enrollment, a session's subscriptions) therefore runs on one of these instead of queueing
//! behind the durable connection, whose every write waits for an fsync. Each call runs in a
//! transaction of its own, begun when the call starts and ended before it returns: no read
//! transaction stays open between calls, so a read issued after a write returned (on either
//! writer) sees that write, and the reads of one call see one snapshot.
//!
//! Reads that decide a write (a compare-and-swap, a read-modify-write) stay on the writer,
//! inside the write's transaction.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use rusqlite::Connection;

use crate::error::Result;

/// How many read-only connections a store opens: one a core of the machines ironhub is
/// measured on; more would only queue on the same cores.
pub(crate) const READERS: usize = 2;

/// A few read-only connections on the store's file; see the module documentation.
#[derive(Debug)]
pub(crate) struct Readers {
    conns: Vec<Mutex<Connection>>,
    /// Where the next call starts looking for a free connection.
    next: AtomicUsize,
}

impl Readers {
    /// Opens `count` read-only connections on `path` (a database whose schema is in place).
    pub(crate) fn open(path: &Path, count: usize, statement_cache: usize) -> Result<Self> {
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.pragma_update(None, "query_only", true)?;
            conn.set_prepared_statement_cache_capacity(statement_cache);
            conns.push(Mutex::new(conn));
        }
        Ok(Self {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on a free reader (or, when all are busy, waits for one) in a transaction of
    /// its own, ended before this returns. Blocks: call it off the async workers.
    pub(crate) fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = match self.free(start)? {
            Some(guard) => guard,
            None => {
                let n = self.conns.len();
                self.conns[start % n].lock().map_err(|_| poisoned())?
            }
        };
        in_transaction(&mut guard, f)
    }

    /// Runs `f` as [`Readers::run`] does when a reader is free at once; gives `f` back when
    /// none is.
    pub(crate) fn try_run<T, F>(&self, f: F) -> std::result::Result<Result<T>, F>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        match self.free(start) {
            Ok(Some(mut guard)) => Ok(in_transaction(&mut guard, f)),
            Ok(None) => Err(f),
            Err(e) => Ok(Err(e)),
        }
    }

    /// A reader nobody holds, looking from `start` on; `None` when all are busy.
    fn free(&self, start: usize) -> Result<Option<MutexGuard<'_, Connection>>> {
        let n = self.conns.len();
        for i in 0..n {
            match self.conns[(start + i) % n].try_lock() {
                Ok(guard) => return Ok(Some(guard)),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Poisoned(_)) => return Err(poisoned()),
            }
        }
        Ok(None)
    }
}

/// `f` in a deferred transaction: the snapshot starts at its first read and ends here.
fn in_transaction<T>(conn: &mut Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = conn.transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

fn poisoned() -> crate::error::Error {
    ironhub_store::StoreError::Engine("a store read panicked".into()).into()
}
